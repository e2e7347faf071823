"""`skylab import` against hostile and unlucky input: the best never moves down, no reserved key as
the metric, a killed import that can be finished, cells read as commit ids only, files that are not
files refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skylab.store.gitstore import TrialStore
from tests.conftest import SKYLAB, git, run_skylab
from tests.factory import add_trial

ROOT = Path(__file__).resolve().parents[1]
HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"


def rows_file(path: Path, rows: list[tuple[str, float, str]]) -> Path:
    lines = [
        f"{commit}\t{value:.6f}\t1.0\t{status}\trow {n}\n" for n, (commit, value, status) in enumerate(rows)
    ]
    path.write_text(HEADER + "".join(lines))
    return path


def history(experiment: Path, *args: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(
        run_skylab("history", "--json", *args, "-C", str(experiment), check=True).stdout
    )
    return rows


def test_an_import_never_moves_the_best_to_a_worse_trial(experiment: Path, tmp_path: Path) -> None:
    store = TrialStore.open(experiment)
    good = add_trial(store, "mine", 10.0)
    assert store.best() == good.commit
    tsv = rows_file(tmp_path / "r.tsv", [("deadbee", 60.0, "keep"), ("facade1", 50.0, "keep")])
    out = run_skylab("import", str(tsv), "--tag", "imp", "-C", str(experiment), check=True).stdout
    assert "the best stays mine/1, which no row beats" in out
    assert TrialStore.open(experiment).best() == good.commit
    # the run branch still ends at its last kept row, so `skylab run --tag imp` continues from it
    imported = history(experiment, "--tag", "imp")
    assert git("rev-parse", "skylab/imp", cwd=experiment).strip() == imported[-1]["commit"]
    better = rows_file(tmp_path / "b.tsv", [("deadbee", 9.0, "keep")])
    out = run_skylab("import", str(better), "--tag", "imp2", "-C", str(experiment), check=True).stdout
    assert "best imp2/1" in out
    assert TrialStore.open(experiment).best() == history(experiment, "--tag", "imp2")[0]["commit"]


@pytest.mark.parametrize("name", ["tag", "trial", "decision", "parent", "val bpb", "status", "loss"])
def test_the_metric_option_names_the_experiments_metric_only(
    experiment: Path, tmp_path: Path, name: str
) -> None:
    tsv = tmp_path / "r.tsv"
    tsv.write_text(f"commit\tstatus\t{name}\ndeadbee\tkeep\t3.0\n")
    result = run_skylab("import", str(tsv), "--metric", name, "-C", str(experiment))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"error: --metric {name}: this experiment's metric is val_bpb")
    assert git("for-each-ref", "refs/skylab/trials", cwd=experiment) == ""


@pytest.mark.parametrize("column", ["a: b", "esc\x1bape", "bell\x07"])
def test_a_column_that_cannot_be_a_note_key_is_refused_before_anything_is_written(
    experiment: Path, tmp_path: Path, column: str
) -> None:
    tsv = tmp_path / "r.tsv"
    tsv.write_text(f"{HEADER.strip()}\t{column}\ndeadbee\t1.0\t1.0\tkeep\tfirst\tx\n")
    refs = git("for-each-ref", cwd=experiment)
    result = run_skylab("import", str(tsv), "-C", str(experiment))
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and line.startswith(f"error: {tsv}: line 1: column ")
    assert "cannot be a note key" in line and git("for-each-ref", cwd=experiment) == refs
    tsv.write_text(f"{HEADER.strip()}\tok\ndeadbee\t1.0\t1.0\tkeep\tfirst\tx\n")  # corrected: accepted
    run_skylab("import", str(tsv), "-C", str(experiment), check=True)
    assert history(experiment)[0]["status"] == "success"


def test_a_byte_order_mark_is_read_as_none(experiment: Path, tmp_path: Path) -> None:
    tsv = rows_file(tmp_path / "r.tsv", [("deadbee", 1.0, "keep")])
    tsv.write_bytes(b"\xef\xbb\xbf" + tsv.read_bytes())
    run_skylab("import", str(tsv), "-C", str(experiment), check=True)
    assert len(history(experiment)) == 1


def test_a_commit_cell_is_an_object_id_never_a_branch_name(experiment: Path, tmp_path: Path) -> None:
    git("branch", "cafe", cwd=experiment)  # a branch whose name looks like a short hash
    tsv = rows_file(tmp_path / "r.tsv", [("cafe", 1.0, "keep")])
    run_skylab("import", str(tsv), "-C", str(experiment), check=True)
    (row,) = history(experiment)
    note = TrialStore.open(experiment).load().trials[0].note
    assert note is not None and note.other.get("commit_missing") == "true"
    assert row["commit"] != git("rev-parse", "cafe", cwd=experiment).strip()


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_file_that_is_not_a_regular_file_is_refused_in_one_line(
    experiment: Path, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "results.tsv"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path.mkdir()
    result = subprocess.run(
        [SKYLAB, "import", str(path), "-C", str(experiment)],
        capture_output=True,
        text=True,
        timeout=60,  # a FIFO nobody writes to used to hang here
    )
    assert (
        result.returncode == 2
        and result.stderr.strip() == f"error: {path}: not a regular file (a results.tsv is a text file)"
    )


# Imports `rows` rows, killing itself with SIGKILL just before its write number KILL_AT (ref
# transactions, ref writes and the marker's removal all count).
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from skylab.autoresearch import importer
    from skylab.experiment.config import load_config
    from skylab.store.gitstore import TrialStore
    from skylab.store.refwrites import RefWriter

    kill_at = int(sys.argv[3])
    writes = 0

    def counted(original):
        def write(*args, **kwargs):
            global writes
            writes += 1
            if writes == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        return write

    RefWriter.set_ref = counted(RefWriter.set_ref)
    RefWriter.transaction = counted(RefWriter.transaction)
    Path.unlink = counted(Path.unlink)
    store = TrialStore.open(sys.argv[1])
    importer.import_results(store, load_config(store.git.root), Path(sys.argv[2]), "imp")
    print("writes", writes)
    """
)


@pytest.mark.slow
def test_a_killed_import_says_it_is_incomplete_and_a_second_import_finishes_it(tmp_path: Path) -> None:
    from skylab.experiment.scaffold import init_experiment

    rows = [(f"{n:07x}", 5.0 - n / 100, "keep" if n % 3 == 0 else "discard") for n in range(1, 41)]
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(root=str(ROOT)))

    def attempt(directory: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
        tsv = rows_file(directory.parent / f"{directory.name}.tsv", rows)
        command = [sys.executable, str(script), str(directory), str(tsv), str(kill_at)]
        return subprocess.run(command, capture_output=True, text=True)

    reference = tmp_path / "reference"
    init_experiment(reference, template="tiny-bigram")
    done = attempt(reference, 10_000)
    assert done.returncode == 0, done.stderr
    writes = int(done.stdout.split()[-1])
    assert writes >= 4  # trial refs, notes, run branch, best, marker
    expected = [(r["trial"], r["value"], r["decision"], r["is_best"]) for r in history(reference)]
    tip = git("rev-parse", "skylab/imp", cwd=reference).strip()

    for kill_at in range(1, writes + 1):
        experiment = tmp_path / f"kill-{kill_at}"
        init_experiment(experiment, template="tiny-bigram")
        assert attempt(experiment, kill_at).returncode == -9
        tsv = experiment.parent / f"{experiment.name}.tsv"
        shown = run_skylab("history", "-C", str(experiment))
        assert "run imp is incomplete: its import stopped with" in shown.stderr
        assert f"skylab import {tsv} --tag imp` finishes it" in shown.stderr
        if kill_at == 1:  # a run on top of a half-imported run is refused until it is finished
            refused = run_skylab("run", "--tag", "imp", "--max-trials", "1", "-C", str(experiment))
            assert refused.returncode == 2 and "run imp is incomplete" in refused.stderr
        run_skylab("import", str(tsv), "--tag", "imp", "-C", str(experiment), check=True)
        assert "incomplete" not in run_skylab("history", "-C", str(experiment), check=True).stderr
        got = [(r["trial"], r["value"], r["decision"], r["is_best"]) for r in history(experiment)]
        assert got == expected, f"killed before write {kill_at}"
        # the same commits as an import that was never killed (placeholders hold the same tree)
        assert git("rev-parse", "skylab/imp^{tree}", cwd=experiment) == git(
            "rev-parse", f"{tip}^{{tree}}", cwd=reference
        )
        assert (
            "already imported" in run_skylab("import", str(tsv), "--tag", "imp", "-C", str(experiment)).stdout
        )


def test_a_results_file_that_grew_adds_its_new_rows(experiment: Path, tmp_path: Path) -> None:
    rows = [("deadbee", 3.0, "keep"), ("facade1", 2.5, "discard"), ("c0ffee1", 2.0, "keep")]
    tsv = rows_file(tmp_path / "r.tsv", rows)
    run_skylab("import", str(tsv), "--tag", "ar", "-C", str(experiment), check=True)
    before = history(experiment)
    rows_file(tsv, [*rows, ("bada551", 1.5, "keep"), ("0ddba11", 1.9, "discard")])  # the run went on
    out = run_skylab("import", str(tsv), "--tag", "ar", "-C", str(experiment), check=True).stdout
    assert "imported 5 rows into run ar (3 of them there from before): 3 kept, 2 reverted, 0 with" in out
    after = history(experiment)
    assert [r["commit"] for r in after[:3]] == [r["commit"] for r in before]
    assert [r["value"] for r in after] == [3.0, 2.5, 2.0, 1.5, 1.9] and after[3]["is_best"]
    rows_file(tsv, [("deadbee", 3.0, "keep"), ("feedbac", 9.0, "keep")])  # not what was imported
    refused = run_skylab("import", str(tsv), "--tag", "ar", "-C", str(experiment))
    assert refused.returncode == 2 and "run ar already has 5 trials" in refused.stderr


def test_a_forks_status_words_and_placeholder_rows_import_as_they_mean(
    experiment: Path, tmp_path: Path
) -> None:
    tsv = tmp_path / "fork.tsv"
    tsv.write_text(
        HEADER
        + "a1b2c3d\t3.000000\t40.1\tbaseline\tthe baseline\n"
        + "b2c3d4e\t0.000000\t0.0\tdiscard\taborted at step 20\n"
        + "c3d4e5f\t2.900000\t40.2\ttentative\tlooked good once\n"
        + "d4e5f6a\t2.800000\t40.3\tbest\tbetter\n"
        + "e5f6a7b\t2.700000\t40.3\tmaybe\tone\n"
        + "f6a7b8c\t2.750000\t40.3\tmaybe\ttwo\n"
    )
    result = run_skylab("import", str(tsv), "--tag", "fork", "-C", str(experiment), check=True)
    assert result.stderr.count("unknown status 'maybe'") == 1, result.stderr
    assert "unknown status 'maybe' on lines 6, 7: imported as a discard" in result.stderr
    assert ": 2 kept, 3 reverted, 1 with no value" in result.stdout and "best fork/4" in result.stdout
    rows = history(experiment, "--tag", "fork")
    assert [(r["status"], r["decision"]) for r in rows] == [
        ("success", "keep"),
        ("crash", "revert"),
        ("success", "revert"),
        ("success", "keep"),
        ("success", "revert"),
        ("success", "revert"),
    ]
    assert rows[1]["value"] is None  # 0.000000 with 0.0 GB: no value, whatever its status says
    assert git("rev-parse", "skylab/fork", cwd=experiment).strip() == rows[3]["commit"]

    mapped = run_skylab(
        "import", str(tsv), "--tag", "fork2", "--status", "tentative=keep", "--status", "MAYBE=crash",
        "-C", str(experiment), check=True,
    )  # fmt: skip
    assert "unknown status" not in mapped.stderr and ": 3 kept, 0 reverted, 3 with no value" in mapped.stdout
    bad = run_skylab("import", str(tsv), "--tag", "fork3", "--status", "maybe=great", "-C", str(experiment))
    assert bad.returncode == 2 and "expected WORD=keep, WORD=discard or WORD=crash" in bad.stderr


def test_skip_bad_rows_imports_the_rest_and_lists_each_skipped_line(experiment: Path, tmp_path: Path) -> None:
    tsv = tmp_path / "r.tsv"
    tsv.write_text(
        HEADER
        + "a1b2c3d\t3.000000\t40.1\tkeep\tfine\n"
        + "b2c3d4e\t2.9\tkeep\tone field short\n"
        + "not-a-hash\t2.8\t40.0\tkeep\tbad hash\n"
        + "c3d4e5f\t2.7x\t40.0\tkeep\tbad number\n"
        + "d4e5f6a\t2.600000\t40.3\tkeep\tfine too\n"
    )
    refused = run_skylab("import", str(tsv), "--tag", "r", "-C", str(experiment))
    assert refused.returncode == 2 and "line 3: 4 fields, but the header has 5" in refused.stderr
    assert "--skip-bad-rows" in refused.stderr and "Traceback" not in refused.stderr
    done = run_skylab("import", str(tsv), "--tag", "r", "--skip-bad-rows", "-C", str(experiment), check=True)
    skipped = [line for line in done.stderr.splitlines() if "skipped line" in line]
    assert [line.split(":")[1].strip() for line in skipped] == [
        "skipped line 3",
        "skipped line 4",
        "skipped line 5",
    ]
    assert "imported 2 rows into run r: 2 kept" in done.stdout
    assert [r["description"] for r in history(experiment, "--tag", "r")] == ["fine", "fine too"]


def test_an_imported_trial_started_when_its_commit_was_made(experiment: Path, tmp_path: Path) -> None:
    (experiment / "notes.txt").write_text("an autoresearch change\n")
    git("add", "notes.txt", cwd=experiment)
    dated = {**os.environ, "GIT_COMMITTER_DATE": "2026-03-05T10:00:00+00:00"}
    subprocess.run(["git", "commit", "-qm", "try"], cwd=experiment, env=dated, check=True)
    commit = git("rev-parse", "HEAD", cwd=experiment).strip()
    tsv = rows_file(tmp_path / "r.tsv", [(commit[:7], 3.0, "keep"), ("deadbee", 2.9, "discard")])
    run_skylab("import", str(tsv), "--tag", "mar5", "-C", str(experiment), check=True)
    first, missing = TrialStore.open(experiment).load().for_tag("mar5")
    assert first.note is not None and first.note.started_at.startswith("2026-03-05T10:00:00")
    assert missing.note is not None and missing.note.started_at == "2026-03-05T10:00:00.001Z"  # just after


def test_row_times_follow_the_rows_order_whatever_the_commits_say() -> None:
    from datetime import datetime, timedelta, timezone

    from skylab.autoresearch.importer import row_times

    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    t = 1_772_700_000  # 2026-03-05
    times = row_times([None, t, None, t - 60, t + 60], now)
    assert times == sorted(times) and len(set(times)) == 5  # history's order is the rows'
    assert times[1] == datetime.fromtimestamp(t, timezone.utc) and times[4].timestamp() == t + 60
    assert times[0] == times[1] - timedelta(milliseconds=1)
    assert row_times([None, None], now) == [now, now + timedelta(milliseconds=1)]
