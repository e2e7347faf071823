"""Existing autoresearch work brought into Skylab: `skylab init` adopts a checkout, `skylab import`
turns its results.tsv into trials (fixtures written here, in the formats real runs use)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skylab.autoresearch.results_tsv import ImportFormatError, parse_results
from skylab.experiment.adopt import run_command, time_budget
from skylab.store.gitstore import TrialStore
from tests.conftest import git, run_skylab

TRAIN = """\
import os
LR = 0.04
print("---")
print(f"val_bpb:          {1.0 + abs(LR - 0.05):.6f}")
print("training_seconds: 0.1")
print("peak_vram_mb:     100.0")
"""
PREPARE = '"""The frozen harness."""\nTIME_BUDGET = 60\nMAX_SEQ_LEN = 2048\n'


def checkout(tmp_path: Path) -> Path:
    """An autoresearch-style repository: train.py, prepare.py, program.md, one baseline commit."""
    repo = tmp_path / "ar"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    (repo / "prepare.py").write_text(PREPARE)
    (repo / "program.md").write_text("# the agent's instructions\n")
    git("init", "-q", "-b", "autoresearch/mar5", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-qm", "baseline", cwd=repo)
    return repo


def commit_change(repo: Path, lr: float, message: str) -> str:
    text = (
        (repo / "train.py").read_text().replace((repo / "train.py").read_text().split("\n")[1], f"LR = {lr}")
    )
    (repo / "train.py").write_text(text)
    git("commit", "-qam", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def test_init_adopts_a_checkout_and_commits_only_experiment_toml(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    (repo / "notes.txt").write_text("mine, untracked\n")
    (repo / "program.md").write_text("# edited, not committed\n")
    before = git("rev-parse", "HEAD", cwd=repo).strip()
    status = git("status", "--porcelain", cwd=repo)
    result = run_skylab("init", "-C", str(repo), check=True)
    assert 'command = "python train.py"' in result.stdout and "time_budget_seconds = 60" in result.stdout
    assert git("rev-parse", "HEAD~1", cwd=repo).strip() == before
    assert git("show", "--name-only", "--format=", "HEAD", cwd=repo).split() == ["experiment.toml"]
    assert git("status", "--porcelain", cwd=repo) == status  # nothing else touched
    toml = (repo / "experiment.toml").read_text()
    assert 'editable_files = ["train.py"]' in toml and 'frozen_files = ["prepare.py"]' in toml
    assert run_skylab("init", "-C", str(repo), check=True).stdout.strip().endswith("nothing to do")


def test_what_the_checkout_runs_and_for_how_long(tmp_path: Path) -> None:
    assert time_budget("TIME_BUDGET = 300\n") == 300 and time_budget("TIME_BUDGET: float = 90.5\n") == 90.5
    assert time_budget("import os\nTIME_BUDGET = int(os.environ['B'])\n") == 300  # not a literal
    assert time_budget("X = (\n") == 300 and time_budget("") == 300
    (tmp_path / "uv.lock").write_text("")
    with_uv, without_uv = (lambda name: f"/opt/bin/{name}"), (lambda name: None)
    assert run_command(tmp_path, with_uv) == "uv run train.py"
    # A uv project on a machine without uv (`/bin/sh: 1: uv: not found` was the starting point's
    # "crash"): its own virtual environment, else plain python.
    assert run_command(tmp_path, without_uv) == "python train.py"
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    assert run_command(tmp_path, without_uv) == ".venv/bin/python train.py"
    (tmp_path / "uv.lock").unlink()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert run_command(tmp_path, with_uv) == "python train.py"


def autoresearch_run(tmp_path: Path) -> tuple[Path, list[str]]:
    """An adopted checkout with a run: baseline, two keeps, discards reset away (their hashes are
    gone), one discard kept as a commit and reverted, a crash."""
    repo = checkout(tmp_path)
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    keep1 = commit_change(repo, 0.045, "raise LR")
    discard = commit_change(repo, 0.09, "LR way up")
    git("revert", "--no-edit", "HEAD", cwd=repo)
    keep2 = commit_change(repo, 0.05, "LR to 0.05")
    run_skylab("init", "-C", str(repo), check=True)
    return repo, [base, keep1, discard, keep2]


def five_columns(hashes: list[str]) -> str:
    base, keep1, discard, keep2 = hashes
    rows = [
        ("commit", "val_bpb", "memory_gb", "status", "description"),
        (base[:7], "1.010000", "44.0", "keep", "baseline"),
        (keep1[:7], "1.005000", "44.2", "keep", "raise LR"),
        ("deadbee", "1.020000", "44.1", "discard", "switch to GeLU"),  # reset away
        (discard[:7], "1.040000", "44.2", "discard", "LR way up"),  # kept as a revert commit
        ("0badc0d", "0.000000", "0.0", "crash", "double the width (OOM)"),
        (keep2[:7], "1.000000", "44.3", "keep", "LR to 0.05"),
        ("facade1", "1.003000", "44.3", "discard", "warmdown 0.6"),
    ]
    return "\n".join("\t".join(row) for row in rows) + "\n"


def test_import_turns_every_row_into_a_trial_and_round_trips(tmp_path: Path) -> None:
    repo, hashes = autoresearch_run(tmp_path)
    tsv = tmp_path / "results.tsv"
    tsv.write_text(five_columns(hashes))
    out = run_skylab("import", str(tsv), "-C", str(repo), check=True).stdout
    assert "imported 7 rows into run mar5" in out and "3 commits not found" in out
    rows = json.loads(run_skylab("history", "--json", "-C", str(repo), check=True).stdout)
    assert [r["trial"] for r in rows] == [f"mar5/{n}" for n in range(1, 8)]
    assert [(r["status"], r["decision"]) for r in rows] == [
        ("success", "keep"),
        ("success", "keep"),
        ("success", "revert"),
        ("success", "revert"),
        ("crash", "revert"),
        ("success", "keep"),
        ("success", "revert"),
    ]
    assert rows[5]["is_best"] and rows[4]["value"] is None
    assert rows[1]["commit"] == hashes[1] and rows[3]["commit"] == hashes[2]  # found, used as they are
    store = TrialStore.open(repo)
    history = store.load()
    missing = history.trials[2]
    assert missing.note is not None and missing.note.other == {
        "imported_commit": "deadbee",
        "commit_missing": "true",
    }
    assert store.git.tree_of(missing.commit) == store.git.tree_of(hashes[1])  # its parent's files
    assert missing.note.strategy == "imported" and missing.note.parent == hashes[1]
    assert git("rev-parse", "skylab/mar5", cwd=repo).strip() == hashes[3]  # the last kept commit
    assert history.trials[1].note is not None and history.trials[1].note.peak_vram_mb == 44.2 * 1024
    exported = tmp_path / "again.tsv"
    run_skylab("history", "--export", str(exported), "-C", str(repo), check=True)
    assert exported.read_text() == five_columns(hashes)  # the same rows back
    # show and report read it like any run
    assert "imported_commit: deadbee" in run_skylab("show", "mar5/3", "-C", str(repo), check=True).stdout
    run_skylab("report", "--tag", "mar5", "-C", str(repo), check=True)


def test_importing_twice_changes_nothing_and_a_used_tag_is_refused(tmp_path: Path) -> None:
    repo, hashes = autoresearch_run(tmp_path)
    tsv = tmp_path / "results.tsv"
    tsv.write_text(five_columns(hashes))
    run_skylab("import", str(tsv), "-C", str(repo), check=True)
    refs = git("for-each-ref", cwd=repo)
    again = run_skylab("import", str(tsv), "-C", str(repo), check=True)
    assert "already imported" in again.stdout and git("for-each-ref", cwd=repo) == refs
    tsv.write_text(five_columns(hashes).replace("warmdown 0.6", "warmdown 0.7"))
    refused = run_skylab("import", str(tsv), "-C", str(repo))
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: run mar5 already has 7 trials: import into a new tag (--tag)"
    )


def test_real_files_vary_columns_line_ends_comments_and_statuses(tmp_path: Path) -> None:
    repo, hashes = autoresearch_run(tmp_path)
    long = "tried " + "a much longer description with many words " * 6
    columns = (
        "status commit description val_loss val_bpb memory_gb mfu tok_per_sec num_steps final_loss notes"
    )
    header = "\t".join(columns.split())
    lines = [
        "# exported from my fork",
        header,
        f"keep\t{hashes[0][:7]}\tbaseline\t2.1\t1.010000\t44.0\t38.5\t1592885\t921\t2.95\t",
        "",
        f"keep\t{hashes[1][:8]}\t{long}\t2.0\t1.005000\t44.2\t38.6\t1590000\t920\t2.9\tfast",
        f"skipped\t{hashes[2][:7]}\tduplicate idea\t2.2\t1.040000\t44.2\t38.1\t1580000\t919\t3.1\t",
    ]
    tsv = tmp_path / "results.tsv"
    tsv.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    # A metric other than the experiment's is refused: its values would be judged against val_bpb's.
    refused = run_skylab("import", str(tsv), "--tag", "fork", "--metric", "val_loss", "-C", str(repo))
    assert refused.returncode == 2 and "this experiment's metric is val_bpb" in refused.stderr
    assert TrialStore.open(repo).load().for_tag("fork") == []
    toml = repo / "experiment.toml"
    toml.write_text(toml.read_text().replace('metric = "val_bpb"', 'metric = "val_loss"'))
    git("commit", "-qam", "this fork is judged by val_loss", cwd=repo)
    result = run_skylab(
        "import", str(tsv), "--tag", "fork", "--metric", "val_loss", "-C", str(repo), check=True
    )
    assert "unknown status 'skipped' on line 6: imported as a discard" in result.stderr
    trials = TrialStore.open(repo).load().for_tag("fork")
    first, second, third = (t.note for t in trials)
    assert first is not None and first.value == 2.1 and first.metric == "val_loss"
    assert first.summary == {"val_bpb": 1.01, "mfu": 38.5, "tok_per_sec": 1592885, "num_steps": 921,
                             "final_loss": 2.95, "notes": ""}  # fmt: skip
    assert second is not None and second.description == long.strip() and second.summary["notes"] == "fast"
    assert (
        third is not None and third.decision.value == "revert" and third.other["imported_status"] == "skipped"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("commit\tval_bpb\tstatus\nabc1234\t1.0\n", "line 2: 2 fields, but the header has 3"),
        ("commit\tmemory_gb\tstatus\nabc1234\t1.0\tkeep\n", "line 1: the header has no val_bpb column"),
        ("commit\tval_bpb\tstatus\nabc1234\tfast\tkeep\n", "line 2: val_bpb 'fast' is not a number"),
        ("commit\tval_bpb\tstatus\nnot-a-hash\t1.0\tkeep\n", "line 2: commit 'not-a-hash' is not a git hash"),
        ("# nothing but a comment\n\n", "no header line"),
    ],
)
def test_a_malformed_file_is_one_line_and_writes_nothing(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ImportFormatError, match=problem):
        parse_results(text)
    repo = checkout(tmp_path)
    run_skylab("init", "-C", str(repo), check=True)
    refs = git("for-each-ref", cwd=repo)
    tsv = tmp_path / "results.tsv"
    tsv.write_text(text)
    result = run_skylab("import", str(tsv), "-C", str(repo))
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and line.startswith(f"error: {tsv}: {problem}")
    assert git("for-each-ref", cwd=repo) == refs


def test_a_run_continues_from_the_imported_best(tmp_path: Path) -> None:
    repo, hashes = autoresearch_run(tmp_path)
    tsv = tmp_path / "results.tsv"
    tsv.write_text(five_columns(hashes))
    run_skylab("import", str(tsv), "-C", str(repo), check=True)
    config = repo / "experiment.toml"
    config.write_text(config.read_text() + '\n[sweep]\nmode = "grid"\n[sweep.parameters]\nLR = [0.06]\n')
    result = run_skylab("run", "--tag", "mar5", "--max-trials", "1", "-C", str(repo))
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    rows = json.loads(run_skylab("history", "--json", "--tag", "mar5", "-C", str(repo), check=True).stdout)
    *_, trial, fresh = rows  # the new trial, then the best (selected by the imported run) on fresh seeds
    assert len(rows) == 9 and trial["parent"] == hashes[3] and trial["params"] == {"LR": 0.06}
    assert fresh["strategy"] == "fresh" and fresh["parent"] == hashes[3]
