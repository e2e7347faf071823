"""The loop under odd train.py behaviour and a careless user: results stay true, nothing runs on."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from skylab.store.gitstore import TrialStore
from tests.conftest import SKYLAB, git, run_skylab
from tests.loop_experiment import make_loop_experiment


def rows(directory: Path) -> list[dict[str, Any]]:
    result = run_skylab("history", "--json", "-C", str(directory), check=True)
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("printed", ["nan", "-inf", "inf"])
def test_a_non_finite_metric_is_a_crash_never_the_best(tmp_path: Path, printed: str) -> None:
    exp = make_loop_experiment(tmp_path / "q", METRIC_TEXT=printed)
    run_skylab("run", "--max-trials", "1", "--tag", "n", "-C", str(exp))
    [row] = rows(exp)
    assert row["status"] == "crash" and row["decision"] == "revert"
    note = git("notes", "--ref=skylab", "show", row["commit"], cwd=exp)
    assert "not a finite number" in note
    assert TrialStore.open(exp).best() is None


@pytest.mark.slow
def test_a_closed_display_pipe_changes_no_trial_and_no_log(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=1.5)
    shell = f"'{SKYLAB}' run --max-trials 2 --tag p -C '{exp}' | head -2"
    subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    found = rows(exp)
    assert [r["status"] for r in found] == ["success", "success"]
    log = (exp / ".skylab" / "logs" / "p" / "1.log").read_text()
    assert "val_bpb:" in log and "step 00002" in log


def test_a_starting_point_that_crashes_stops_the_run_at_once(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", CRASH=True)
    result = run_skylab("run", "--max-trials", "20", "--tag", "c", "-C", str(exp))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not train" in result.stderr and "CUDA out of memory" in result.stderr
    assert len(rows(exp)) == 1


@pytest.mark.slow
def test_trials_failing_the_same_way_in_a_row_stop_the_run(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", CRASH_ABOVE=0, parameters="X = [1, 2, 3, 4, 5, 6, 7, 8]")
    result = run_skylab("run", "--max-trials", "20", "--tag", "s", "-C", str(exp))
    assert result.returncode == 2 and "5 trials in a row failed the same way" in result.stderr
    statuses = [r["status"] for r in rows(exp)]
    assert statuses == ["success"] + ["crash"] * 5


@pytest.mark.slow
def test_a_process_that_left_the_trials_session_does_not_outlive_it(tmp_path: Path) -> None:
    def alive() -> bool:
        return subprocess.run(["pgrep", "-f", "sleep 302.75"], capture_output=True).returncode == 0

    exp = make_loop_experiment(tmp_path / "q", DAEMON_CHILD=True)
    run_skylab("run", "--max-trials", "1", "--tag", "d", "-C", str(exp), check=True)
    assert not alive()  # after a normal end
    slow = make_loop_experiment(tmp_path / "r", DAEMON_CHILD=True, SLEEP=60.0, wall=2)
    run_skylab("run", "--max-trials", "1", "--tag", "d", "-C", str(slow))
    assert rows(slow)[0]["status"] == "timeout" and not alive()  # after a timeout


def test_a_stale_index_lock_in_the_trial_work_tree_is_cleared(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    run_skylab("run", "--max-trials", "1", "--tag", "l", "-C", str(exp), check=True)
    lock = exp / ".git" / "worktrees" / "l" / "index.lock"
    assert lock.parent.is_dir()
    lock.write_text("")
    result = run_skylab("run", "--max-trials", "1", "--tag", "l", "-C", str(exp))
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in rows(exp)] == ["success", "success"]


@pytest.mark.slow
def test_a_checkout_of_the_run_branch_follows_the_kept_trials(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [1, 2, 3]")
    run_skylab("run", "--max-trials", "1", "--tag", "h", "-C", str(exp), check=True)
    git("switch", "-q", "skylab/h", cwd=exp)  # the README's hand-commit workflow
    run_skylab("run", "--max-trials", "3", "--tag", "h", "-C", str(exp), check=True)
    assert any(r["decision"] == "keep" for r in rows(exp)[1:])
    assert git("status", "--porcelain", "--untracked-files=no", cwd=exp) == ""
    tip = git("rev-parse", "skylab/h", cwd=exp).strip()
    assert (exp / "train.py").read_text() == git("show", f"{tip}:train.py", cwd=exp)


@pytest.mark.slow
def test_a_huge_output_line_leaves_a_small_note_and_the_full_log(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", HUGE_LINE=3_000_000, CRASH=True)
    run_skylab("run", "--max-trials", "1", "--tag", "b", "-C", str(exp))
    [row] = rows(exp)
    note = git("notes", "--ref=skylab", "show", row["commit"], cwd=exp)
    assert row["status"] == "crash" and len(note) < 8000
    assert "CUDA out of memory" in note
    assert (exp / ".skylab" / "logs" / "b" / "1.log").stat().st_size > 3_000_000
