from __future__ import annotations

import json
from pathlib import Path

from skylab.store.gitstore import TrialStore
from skylab.store.notes import Status
from tests.conftest import run_skylab
from tests.factory import add_trial


def populate(store: TrialStore) -> None:
    add_trial(store, "mar28", 1.50, description="baseline rerun", params={"LR": 0.1})
    add_trial(store, "mar28", 1.60, description="higher LR", params={"LR": 0.3})
    add_trial(store, "mar28", None, status=Status.CRASH, description="DEPTH=64\tOOM")
    add_trial(store, "mar28", 1.25, description="lower LR", params={"LR": 0.05})


def test_history_table_shows_every_trial(store: TrialStore, experiment: Path) -> None:
    populate(store)
    out = run_skylab("history", "-C", str(experiment), check=True).stdout
    for text in (
        "mar28/1",
        "mar28/4",
        "crash",
        "revert",
        "keep",
        "1.600000",
        "+0.100000",
        "-0.250000",
        "lower LR",
    ):
        assert text in out
    assert "★ mar28/4" in out
    assert "4 trials, 2 kept" in out


def test_history_json_is_complete_and_parseable(store: TrialStore, experiment: Path) -> None:
    populate(store)
    rows = json.loads(run_skylab("history", "--json", "-C", str(experiment), check=True).stdout)
    assert [r["trial"] for r in rows] == ["mar28/1", "mar28/2", "mar28/3", "mar28/4"]
    assert rows[1]["delta"] == 1.60 - 1.50
    assert rows[2]["status"] == "crash" and rows[2]["value"] is None
    assert rows[3]["is_best"] and rows[3]["params"] == {"LR": 0.05}
    assert rows[0]["peak_vram_mb"] == 1234.5


def test_history_best_shows_the_kept_chain(store: TrialStore, experiment: Path) -> None:
    populate(store)
    rows = json.loads(run_skylab("history", "--best", "--json", "-C", str(experiment), check=True).stdout)
    assert [r["trial"] for r in rows] == ["mar28/1", "mar28/4"]


def test_history_filters_by_tag(store: TrialStore, experiment: Path) -> None:
    populate(store)
    add_trial(store, "apr01", 1.2)
    rows = json.loads(
        run_skylab("history", "--tag", "apr01", "--json", "-C", str(experiment), check=True).stdout
    )
    assert [r["trial"] for r in rows] == ["apr01/1"]


def test_export_writes_legacy_results_tsv(store: TrialStore, experiment: Path, tmp_path: Path) -> None:
    populate(store)
    target = tmp_path / "results.tsv"
    run_skylab("history", "--export", str(target), "-C", str(experiment), check=True)
    lines = target.read_text().splitlines()
    assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    assert len(lines) == 5
    fields = [line.split("\t") for line in lines[1:]]
    assert all(len(f) == 5 for f in fields)
    assert [f[3] for f in fields] == ["keep", "discard", "crash", "keep"]
    assert fields[2][1] == "0.000000" and fields[2][4] == "DEPTH=64 OOM"
    assert fields[0][1] == "1.500000" and fields[0][2] == "1.2" and len(fields[0][0]) == 7


def test_empty_history_says_so(experiment: Path) -> None:
    assert "No trials" in run_skylab("history", "-C", str(experiment), check=True).stdout


def test_show_prints_note_and_diff(store: TrialStore, experiment: Path) -> None:
    add_trial(store, "mar28", 1.5, description="<script>x</script> change", files={"train.py": "LR = 0.5\n"})
    out = run_skylab("show", "mar28/1", "-C", str(experiment), check=True).stdout
    assert "description: <script>x</script> change" in out
    assert "+LR = 0.5" in out and "--- a/train.py" in out


def test_show_unknown_trial_is_one_clear_line(experiment: Path) -> None:
    result = run_skylab("show", "nope/3", "-C", str(experiment))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no trial named 'nope/3' (try `skylab history`)"


def test_history_outside_a_repo(tmp_path: Path) -> None:
    result = run_skylab("history", "-C", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "not in a git repository" in result.stderr


def strict_json(text: str) -> object:
    """Parse as RFC 8259 JSON: no NaN or Infinity."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_history_json_is_valid_json_whatever_the_notes_hold(store: TrialStore, experiment: Path) -> None:
    add_trial(store, "huge", float("nan"), status=Status.CRASH, params={"HUGE": 10**30, "LR": float("inf")})
    add_trial(store, "inf", 1.5, params={"LR": float("-inf")})
    everything = run_skylab("history", "--json", "-C", str(experiment), check=True).stdout
    rows = strict_json(everything)  # (an integer beyond 64 bits: the standard library encodes it)
    assert isinstance(rows, list)
    assert [(r["value"], r["params"]) for r in rows] == [
        (None, {"HUGE": 10**30, "LR": None}),
        (1.5, {"LR": None}),
    ]
    one_run = run_skylab("history", "--tag", "inf", "--json", "-C", str(experiment), check=True).stdout
    assert strict_json(one_run) == rows[1:]
