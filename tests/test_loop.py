"""The research loop end to end on a cheap experiment: decisions, strategies, failures, resume."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from skylab.errors import SkylabError
from skylab.experiment.config import load_config
from skylab.loop import Orchestrator
from skylab.loop.progress import Reporter, RunState
from skylab.runner.local import LocalRunner
from skylab.store.gitstore import TrialStore
from skylab.store.refs import run_branch
from skylab.strategy import Proposal, ProposalContext, make_strategy
from skylab.strategy.sweep import SweepStrategy
from tests.conftest import SKYLAB, ctrl_c_reaches_it, git, run_skylab
from tests.loop_experiment import make_loop_experiment


def orchestrate(directory: Path, strategy: object = "sweep", **options: object) -> tuple[Orchestrator, str]:
    store = TrialStore.open(directory)
    config = load_config(directory)
    chosen = make_strategy(strategy, config) if isinstance(strategy, str) else strategy
    output = io.StringIO()
    reporter = Reporter(Console(file=output, width=200), RunState("t", "sweep", "val_bpb", None))
    orchestrator = Orchestrator(store, config, chosen, LocalRunner(kill_grace=1.0), "t", reporter, **options)  # type: ignore[arg-type]
    orchestrator.run()
    return orchestrator, output.getvalue()


def trials(directory: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        run_skylab("history", "--json", "-C", str(directory), check=True).stdout
    )
    return rows


def test_grid_search_keeps_improvements_and_stops_when_exhausted(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    _, log = orchestrate(exp)
    rows = trials(exp)
    points = [(r["params"]["X"], r["params"]["Y"]) for r in rows]
    assert points[0] == (0, 0) and rows[0]["description"].startswith("baseline")
    assert sorted(points) == sorted((x, y) for x in range(4) for y in (-1, 0))  # each point once
    assert [r["value"] for r in rows][:2] == [11.0, 10.0]
    best = min(rows, key=lambda r: r["value"])
    assert best["params"] == {"X": 3, "Y": -1} and best["is_best"] and best["value"] == 1.0
    # Kept = strictly better than the run's best so far; the run branch is exactly that chain.
    running, kept = None, []
    for r in rows:
        if running is None or r["value"] < running:
            running = r["value"]
            kept.append(r["commit"])
        assert (r["decision"] == "keep") == (r["commit"] in kept)
    chain = git("log", "--first-parent", "--format=%H", "skylab/t", cwd=exp).split()
    assert chain[: len(kept)] == kept[::-1]
    assert "nothing left to propose" in log or "stopped" not in log
    assert rows[1]["parent"] == rows[0]["commit"]  # a trial's parent is the best when it started


def test_maximize_keeps_higher_values(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", direction="maximize")
    orchestrate(exp, max_trials=4)
    rows = trials(exp)
    running = None
    for r in rows:
        assert (r["decision"] == "keep") == (running is None or r["value"] > running)
        if r["decision"] == "keep":
            running = r["value"]


def test_resumed_grid_skips_points_already_tried(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    orchestrate(exp, max_trials=3)
    assert len(trials(exp)) == 3
    run_skylab("run", "--tag", "t", "--max-trials", "20", "-C", str(exp), check=True)
    rows = trials(exp)
    assert len(rows) == 8 and len({(r["params"]["X"], r["params"]["Y"]) for r in rows}) == 8


def test_random_search_is_reproducible_from_its_seed(tmp_path: Path) -> None:
    sequences = []
    for name in ("a", "b"):
        exp = make_loop_experiment(tmp_path / name, mode="random")
        orchestrate(exp, max_trials=5)
        sequences.append([(r["params"]["X"], r["params"]["Y"]) for r in trials(exp)])
    assert sequences[0] == sequences[1]
    assert len(set(sequences[0])) == 5  # no point twice


def test_tpe_study_is_rebuilt_from_history(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", mode="tpe")
    orchestrate(exp, max_trials=4)
    store = TrialStore.open(exp)
    config = load_config(exp)
    fresh = SweepStrategy(config)  # a new process: nothing in memory
    history = store.load()
    tip = store.git.ref_target(run_branch("t"))
    assert tip is not None
    worktree = exp / ".skylab" / "worktrees" / "t"
    proposal = fresh.propose(ProposalContext(config, history, "t", tip, history.by_commit()[tip], worktree))
    assert proposal is not None and set(proposal.params) == {"X", "Y"}
    complete = [t for t in fresh._study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert sorted(t.value for t in complete) == sorted(r["value"] for r in trials(exp))


def test_crash_is_recorded_with_its_log_tail_and_not_kept(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", CRASH=True)
    with pytest.raises(SkylabError, match=r"starting point .* does not train"):  # nothing to start from
        orchestrate(exp, max_trials=1)
    (row,) = trials(exp)
    assert row["status"] == "crash" and row["decision"] == "revert"
    note = TrialStore.open(exp).load().trials[0].note
    assert (
        note is not None and "CUDA out of memory" in note.log_tail and "exited with status 1" in note.reason
    )
    assert TrialStore.open(exp).best() is None
    assert "CUDA out of memory" in (exp / note.other["log"]).read_text()


def child_alive() -> bool:
    return subprocess.run(["pgrep", "-f", "sleep 301.25"], capture_output=True).returncode == 0


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=60.0, SPAWN_CHILD=True, wall=2)
    started = time.monotonic()
    with pytest.raises(SkylabError, match="does not train"):
        orchestrate(exp, max_trials=1)
    assert time.monotonic() - started < 15
    (row,) = trials(exp)
    assert row["status"] == "timeout" and row["decision"] == "revert"
    time.sleep(0.2)
    assert not child_alive(), "a child of the trial outlived its timeout"


def test_vram_over_the_limit_is_a_reverted_constraint_violation(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", VRAM_MB=20_000.0)
    with pytest.raises(SkylabError, match="does not train"):
        orchestrate(exp, max_trials=1)
    (row,) = trials(exp)
    assert row["status"] == "constraint" and row["decision"] == "revert" and row["value"] == 11.0
    note = TrialStore.open(exp).load().trials[0].note
    assert note is not None and "max_vram_gb = 10" in note.reason


class ScriptedStrategy:
    """A real strategy that writes whatever text it is given into train.py (or another file)."""

    name = "scripted"

    def __init__(self, edits: list[tuple[str, str]]) -> None:
        self.edits = edits

    def propose(self, context: ProposalContext) -> Proposal | None:
        if not self.edits:
            return None
        path, text = self.edits.pop(0)
        (context.workdir / path).write_text(text)
        return Proposal(f"edit {path}")


def test_bad_proposals_are_recorded_without_training(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    same = (exp / "train.py").read_text()
    edits = [("train.py", same), ("train.py", "X = (\n"), ("prepare.py", "# sneaky\n")]
    orchestrator, log = orchestrate(exp, ScriptedStrategy(edits))
    rows = trials(exp)
    assert [r["status"] for r in rows] == ["success", "noop", "crash"]
    note = TrialStore.open(exp).load().trials[2].note
    assert note is not None and "train.py:1" in note.reason and "not run" in note.reason
    assert not (exp / ".skylab" / "logs" / "t" / "2.log").exists()  # nothing trained
    assert "discarded a proposal that changed non-editable files: prepare.py" in log
    assert (orchestrator.worktree.path / "prepare.py").read_text() != "# sneaky\n"


def test_hand_commit_on_a_run_branch_is_trained_once(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    orchestrate(exp, max_trials=1)
    git("checkout", "-q", "skylab/t", cwd=exp)
    (exp / "train.py").write_text((exp / "train.py").read_text().replace("\nX = 0\n", "\nX = 2\n"))
    result = subprocess.run(["git", "commit", "-qam", "X=2 by hand"], cwd=exp, capture_output=True, text=True)
    assert "in the background" in result.stderr
    commit = git("rev-parse", "HEAD", cwd=exp).strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = trials(exp)
        if len(rows) == 2 and rows[1]["status"] != "interrupted":
            break
        time.sleep(0.3)
    rows = trials(exp)
    assert len(rows) == 2 and rows[1]["commit"] == commit and rows[1]["strategy"] == "manual"
    assert rows[1]["value"] == 3.0 and rows[1]["decision"] == "keep"  # (2-3)^2 + 1 + 1 beats 11
    assert git("rev-parse", "skylab/t", cwd=exp).strip() == commit
    # The hook never trains one commit twice.
    subprocess.run([SKYLAB, "hook", "post-commit", "-C", str(exp)], check=True, capture_output=True)
    time.sleep(1.0)
    assert len(trials(exp)) == 2


def test_reverted_hand_commit_moves_branch_and_checkout_back(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    orchestrate(exp, max_trials=1)
    git("checkout", "-q", "skylab/t", cwd=exp)
    before = git("rev-parse", "HEAD", cwd=exp).strip()
    (exp / "train.py").write_text((exp / "train.py").read_text().replace("\nY = 0\n", "\nY = 5\n"))
    git("commit", "-qam", "worse by hand", cwd=exp)
    worse = git("rev-parse", "HEAD", cwd=exp).strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(trials(exp)) < 2:
        time.sleep(0.3)
    time.sleep(1.0)
    rows = trials(exp)
    assert rows[1]["commit"] == worse and rows[1]["decision"] == "revert"
    assert git("rev-parse", "skylab/t", cwd=exp).strip() == before
    assert git("status", "--porcelain", cwd=exp) == ""
    assert "\nY = 0\n" in (exp / "train.py").read_text()
    assert git("cat-file", "-t", worse, cwd=exp).strip() == "commit"  # kept as a trial


def test_uncommitted_edit_refuses_to_start(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    (exp / "train.py").write_text((exp / "train.py").read_text() + "\n# wip\n")
    result = run_skylab("run", "--max-trials", "1", "-C", str(exp))
    assert result.returncode == 2
    assert "train.py has uncommitted changes" in result.stderr and "Traceback" not in result.stderr
    # Committing them on the checkout's branch does not make them part of the run: the message says
    # so, and a run after `git commit -am` starts from the baseline as it says.
    assert "never from your branch" in result.stderr and "git switch skylab/<tag>" in result.stderr
    git("commit", "-qam", "wip on main", cwd=exp)
    run_skylab("run", "--max-trials", "1", "--tag", "w", "-C", str(exp), check=True)
    baseline = git("rev-parse", "refs/skylab/baseline", cwd=exp).strip()
    first = git("rev-parse", "refs/skylab/trials/w/1", cwd=exp).strip()
    assert git("rev-parse", f"{first}^", cwd=exp).strip() == baseline
    assert "# wip" not in git("show", f"{first}:train.py", cwd=exp)


def test_budget_too_small_for_a_trial_starts_nothing(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    result = run_skylab("run", "--budget", "10s", "--tag", "b", "-C", str(exp), check=True)
    assert "budget left is shorter than a trial" in result.stdout
    assert trials(exp) == []
    assert "budget" in run_skylab("run", "--budget", "soon", "-C", str(exp)).stderr


def start_run(exp: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200"}
    command = [SKYLAB, "run", "--tag", "t", "-C", str(exp), *args]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=ctrl_c_reaches_it,
    )


def wait_for(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_second_run_refuses_and_a_dead_runs_lock_is_taken_over(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=30.0)
    first = start_run(exp)
    log_dir = exp / ".skylab" / "logs" / "t"
    wait_for(lambda: (log_dir / "1.log").exists())
    second = run_skylab("run", "--tag", "other", "--max-trials", "1", "-C", str(exp))
    assert second.returncode == 2
    assert f"another skylab run (pid {first.pid}) is active" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()
    # SIGKILL left the trial's process group running: it dies by the run's own wall limit, but the
    # lock was the dead process's and is free at once.
    subprocess.run(["pkill", "-9", "-f", f"{exp}/.skylab/worktrees"], check=False)
    # A budget too short for any trial: it takes the lock, repairs, and stops.
    third = run_skylab("run", "--tag", "t", "--budget", "1s", "-C", str(exp))
    assert third.returncode == 0, third.stderr
    assert "trial t/1 had no result: recorded as interrupted" in third.stdout


def test_ctrl_c_records_the_trial_and_leaves_no_training_behind(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=60.0, SPAWN_CHILD=True)
    run = start_run(exp)
    wait_for(lambda: (exp / ".skylab" / "logs" / "t" / "1.log").exists() and child_alive())
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    run.wait(timeout=30)
    assert run.returncode == 130, run.stderr.read() if run.stderr else ""
    (row,) = trials(exp)
    assert row["status"] == "interrupted"
    assert not child_alive()


@pytest.mark.parametrize("kill_after", [0.3, 1.4, 2.9])
def test_kill_9_at_any_moment_loses_no_finished_trial(tmp_path: Path, kill_after: float) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=0.6)
    run = start_run(exp)
    time.sleep(kill_after)
    finished_before = {r["commit"]: r for r in trials(exp) if r["status"] != "interrupted"}
    run.send_signal(signal.SIGKILL)
    run.wait()
    subprocess.run(["pkill", "-9", "-f", f"{exp}/.skylab/worktrees"], check=False)
    after_kill = {r["commit"]: r for r in trials(exp)}
    for commit, row in finished_before.items():  # the run may have gone on to a new best: all else stays
        assert {**after_kill[commit], "is_best": None} == {**row, "is_best": None}
    again = run_skylab("run", "--tag", "t", "--max-trials", "2", "-C", str(exp))
    assert again.returncode == 0, again.stderr
    rows = trials(exp)
    store = TrialStore.open(exp)
    assert all(t.note is not None for t in store.load().trials)
    kept = [r for r in rows if r["decision"] == "keep"]
    assert kept and store.best() == min(kept, key=lambda r: r["value"])["commit"]
    assert store.git.ref_target(run_branch("t")) == kept[-1]["commit"]
    assert git("-C", str(exp / ".skylab" / "worktrees" / "t"), "status", "--porcelain", cwd=exp) == ""
    successes = [r for r in rows if r["status"] == "success"]
    assert len(successes) >= len([r for r in finished_before.values() if r["status"] == "success"]) + 2


def test_sweep_over_a_missing_constant_is_a_clear_error(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", parameters="WIDTH = [1, 2]")
    result = run_skylab("run", "--max-trials", "1", "-C", str(exp))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "WIDTH not found as a literal module-level constant in train.py" in result.stderr
