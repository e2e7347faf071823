"""Several workers on one repository: nothing lost, nothing proposed twice, one consistent kept chain."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest
from rich.console import Console

from skylab.experiment.config import load_config
from skylab.loop import Orchestrator
from skylab.loop.progress import Reporter, RunState
from skylab.runner.local import LocalRunner
from skylab.store.gitstore import TrialStore
from skylab.store.notes import Decision, Status
from skylab.store.refs import run_branch
from skylab.strategy import PendingTrial, Proposal, ProposalContext
from skylab.strategy.llm_context import build_context
from skylab.strategy.sweep import SweepStrategy
from tests.conftest import git, run_skylab
from tests.loop_experiment import make_loop_experiment
from tests.test_loop import start_run, trials, wait_for

WIDE_GRID = "X = [0, 1, 2, 3, 4, 5]\nY = [-1, 0, 1]"


def assert_consistent_chain(exp: Path, tag: str = "t") -> list[Any]:
    """Every commit of the run branch down to the start is a kept success whose note names its real
    parent, each better than the one before; best is its tip."""
    store = TrialStore.open(exp)
    history = store.load()
    by_commit = history.by_commit()
    commit = store.git.ref_target(run_branch(tag))
    chain = []
    while commit is not None and commit in by_commit:
        trial = by_commit[commit]
        assert trial.note is not None and trial.note.status is Status.SUCCESS
        assert trial.note.decision is Decision.KEEP, trial.name
        git_parent = store.git.repo[commit].peel(pygit2.Commit).parent_ids[0]
        assert trial.note.parent == str(git_parent), trial.name
        chain.append(trial)
        commit = trial.note.parent
    values = [t.value or 0.0 for t in reversed(chain)]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
    assert history.best == chain[0].commit
    return chain


def overlapped(rows: list[dict[str, Any]]) -> int:
    """How many trials ran, for part of their time at least, while another one ran too."""
    spans = []
    for row in rows:
        start = datetime.fromisoformat(row["started_at"].replace("Z", "+00:00")).timestamp()
        spans.append((start, start + (row["wall_seconds"] or 0)))
    return sum(
        any(max(s, a) < min(e, b) for j, (a, b) in enumerate(spans) if j != i)
        for i, (s, e) in enumerate(spans)
    )


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_workers_lose_nothing_and_never_propose_a_point_twice(tmp_path: Path, workers: int) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=0.6, parameters=WIDE_GRID)
    result = run_skylab("run", "--tag", "t", "--workers", str(workers), "-C", str(exp))
    assert result.returncode == 0, result.stderr
    assert f"{workers} workers" in result.stdout
    rows = trials(exp)
    refs = git("for-each-ref", "--format=%(refname)", "refs/skylab/trials/t", cwd=exp).split()
    assert len(rows) == len(refs) == 18  # the 18 grid points, baseline among them, each one trial
    assert all(r["status"] == "success" for r in rows)
    points = [(r["params"]["X"], r["params"]["Y"]) for r in rows]
    assert len(set(points)) == len(points)
    assert {r["other"].get("worker") for r in rows} == {str(i) for i in range(workers)}
    assert overlapped(rows) >= len(rows) // 2  # they really ran side by side
    chain = assert_consistent_chain(exp)
    assert chain[0].value == 1.0
    worktrees = git("worktree", "list", cwd=exp)
    assert all(f"t+{i}" in worktrees for i in range(1, workers))
    assert git("status", "--porcelain", cwd=exp / ".skylab" / "worktrees" / "t+1") == ""


@pytest.mark.slow
def test_tpe_with_four_workers_spreads_out(tmp_path: Path) -> None:
    parameters = "X = { low = -4.0, high = 8.0 }\nY = { low = -5.0, high = 3.0 }"
    exp = make_loop_experiment(tmp_path / "q", mode="tpe", SLEEP=0.3, parameters=parameters)
    result = run_skylab("run", "--tag", "t", "--workers", "4", "--max-trials", "14", "-C", str(exp))
    assert result.returncode == 0, result.stderr
    rows = trials(exp)
    assert len(rows) == 14 and all(r["status"] == "success" for r in rows)
    points = [(r["params"]["X"], r["params"]["Y"]) for r in rows]
    assert len(set(points)) == len(points)
    assert_consistent_chain(exp)


def context_for(exp: Path, pending: tuple[PendingTrial, ...]) -> ProposalContext:
    store = TrialStore.open(exp)
    config = load_config(exp)
    tip = store.start_point()
    return ProposalContext(config, store.load(), "t", tip, None, exp, pending=pending)


def test_grid_and_random_skip_points_in_flight(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    grid = SweepStrategy(load_config(exp))
    busy = (
        PendingTrial("t/1", "X=0 Y=-1", {"X": 0, "Y": -1}),
        PendingTrial("t/2", "X=0 Y=0", {"X": 0, "Y": 0}),
    )
    proposal = grid.propose(context_for(exp, busy))
    assert proposal is not None and proposal.params == {"X": 1, "Y": -1}
    git("checkout", "--", "train.py", cwd=exp)
    random_exp = make_loop_experiment(tmp_path / "r", mode="random", parameters="X = [0, 1]\nY = [0]")
    sweep = SweepStrategy(load_config(random_exp))
    only = sweep.propose(context_for(random_exp, (PendingTrial("t/1", "", {"X": 0, "Y": 0}),)))
    assert only is not None and only.params == {"X": 1, "Y": 0}


def test_llm_context_lists_the_trials_in_flight(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    busy = (PendingTrial("t/7", "halve the learning rate", {}),)
    text = build_context(context_for(exp, busy), 100_000)
    assert "Being tried right now" in text and "t/7: halve the learning rate" in text
    assert "Being tried right now" not in build_context(context_for(exp, ()), 100_000)


SEPARATED_TRAIN = """\
import time

X = 0
# X and Y are far apart, so that changes to each merge cleanly.


Y = 0


SLOW = 0
time.sleep(SLOW)
print("---")
print(f"val_bpb: {10 - X - Y:.6f}")
"""


class Scripted:
    """Proposes the given constant edits in order, then stops."""

    name = "scripted"

    def __init__(self, edits: list[dict[str, str]]) -> None:
        self.edits = list(edits)

    def propose(self, context: ProposalContext) -> Proposal | None:
        if not self.edits:
            return None
        edit = self.edits.pop(0)
        path = context.workdir / "train.py"
        text = path.read_text()
        for name, value in edit.items():
            text = text.replace(f"\n{name} = 0", f"\n{name} = {value}", 1)
        path.write_text(text)
        return Proposal(" ".join(f"{k}={v}" for k, v in edit.items()))


def test_a_kept_trial_that_overtook_the_best_carries_it_forward(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    (exp / "train.py").write_text(SEPARATED_TRAIN)
    git("commit", "-qam", "separated constants", cwd=exp)
    store = TrialStore.open(exp)
    store.set_baseline(git("rev-parse", "HEAD", cwd=exp).strip())
    config = load_config(exp)
    output = io.StringIO()
    reporter = Reporter(Console(file=output, width=200), RunState("t", "scripted", "val_bpb", None))
    # t/2 (X=1, fast) is kept first; t/3 (Y=3, slow) started from the same parent and beats it.
    strategy = Scripted([{"X": "1"}, {"Y": "3", "SLOW": "1.5"}])
    runners = [LocalRunner(kill_grace=1.0), LocalRunner(kill_grace=1.0)]
    Orchestrator(store, config, strategy, runners, "t", reporter).run()
    rows = {r["trial"]: r for r in trials(exp)}
    assert [rows[n]["value"] for n in ("t/1", "t/2", "t/3", "t/4")] == [10.0, 9.0, 7.0, 6.0]
    assert rows["t/2"]["decision"] == rows["t/3"]["decision"] == rows["t/4"]["decision"] == "keep"
    assert rows["t/3"]["parent"] == rows["t/1"]["commit"]  # its real parent, not the best it overtook
    assert rows["t/3"]["other"]["overtook"] == "t/2"
    assert rows["t/4"]["strategy"] == "merge-forward" and rows["t/4"]["other"]["merged_from"] == "t/2"
    assert rows["t/4"]["parent"] == rows["t/3"]["commit"]
    merged = git("show", f"{rows['t/4']['commit']}:train.py", cwd=exp)
    assert "X = 1" in merged and "Y = 3" in merged
    chain = assert_consistent_chain(exp)
    assert [t.name for t in reversed(chain)] == ["t/1", "t/3", "t/4"]
    assert "merge forward: t/2's change onto t/3" in output.getvalue()


def test_kill_9_then_resume_cleans_worktrees_and_leftover_training(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=60.0, SPAWN_CHILD=True, parameters=WIDE_GRID)
    (exp / "train.py").write_text((exp / "train.py").read_text().replace("301.25", "301.5"))
    git("commit", "-qam", "a child of its own", cwd=exp)
    TrialStore.open(exp).set_baseline(git("rev-parse", "HEAD", cwd=exp).strip())
    run = start_run(exp, "--workers", "3")
    logs = exp / ".skylab" / "logs" / "t"
    wait_for(lambda: (logs / "1.log").exists())  # the baseline first, alone
    run.send_signal(signal.SIGKILL)
    run.wait()

    def leftovers() -> bool:
        found = subprocess.run(["pgrep", "-f", "sleep 301.5"], capture_output=True, text=True).stdout
        return bool(found.split())

    wait_for(leftovers)
    # A bigger run was killed: now resume with a single worker and a budget too short for a trial.
    resumed = run_skylab("run", "--tag", "t", "--workers", "1", "--budget", "1s", "-C", str(exp))
    assert resumed.returncode == 0, resumed.stderr
    assert "recorded as interrupted" in resumed.stdout
    assert "removed the work tree of a worker this run does not have: t+1" in resumed.stdout
    wait_for(lambda: not leftovers(), timeout=10)
    assert not (exp / ".skylab" / "worktrees" / "t+1").exists()
    assert "t+1" not in git("worktree", "list", cwd=exp)
    assert git("status", "--porcelain", cwd=exp / ".skylab" / "worktrees" / "t") == ""


@pytest.mark.slow
def test_kill_9_with_all_workers_busy_loses_no_trial(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=2.0, parameters=WIDE_GRID)
    run = start_run(exp, "--workers", "3")
    logs = exp / ".skylab" / "logs" / "t"
    wait_for(lambda: all((logs / f"{n}.log").exists() for n in (2, 3, 4)))
    time.sleep(0.3)
    run.send_signal(signal.SIGKILL)
    run.wait()
    subprocess.run(["pkill", "-9", "-f", f"{exp}/.skylab/worktrees"], check=False)
    resumed = run_skylab("run", "--tag", "t", "--workers", "3", "--max-trials", "3", "-C", str(exp))
    assert resumed.returncode == 0, resumed.stderr
    rows = trials(exp)
    refs = git("for-each-ref", "--format=%(refname)", "refs/skylab/trials/t", cwd=exp).split()
    assert len(rows) == len(refs)
    statuses = [r["status"] for r in rows]
    assert statuses.count("interrupted") >= 3 and statuses.count("success") >= 4
    assert_consistent_chain(exp)


def test_gpus_pin_one_worker_to_each(tmp_path: Path) -> None:
    from skylab.runner.gpus import parse_gpus
    from skylab.runner.registry import local_pins

    assert local_pins(None, parse_gpus("0,1,2,3")) == ["0", "1", "2", "3"]
    assert local_pins(4, parse_gpus("0,1")) == ["0", "1", "0", "1"]
    assert local_pins(3, []) == [None, None, None]
    exp = make_loop_experiment(tmp_path / "q")
    bad = run_skylab("run", "--gpus", "0,zero", "-C", str(exp))
    assert bad.returncode == 2 and "--gpus: expected GPU ids like 0,1,2,3" in bad.stderr
    single = run_skylab("run", "--gpu", "0", "-C", str(exp))  # one option for GPUs: --gpus 0 pins one
    assert single.returncode == 2 and "No such option: --gpu" in single.stderr


@pytest.mark.slow
def test_teammates_share_one_remote_and_continue_from_the_shared_best(tmp_path: Path) -> None:
    alice = make_loop_experiment(tmp_path / "alice", SLEEP=0.1)
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    git("config", "user.email", "alice@example.com", cwd=alice)
    git("remote", "add", "origin", str(remote), cwd=alice)
    git("push", "-q", "origin", "HEAD:main", cwd=alice)
    run_skylab("run", "--max-trials", "3", "-C", str(alice), check=True)
    run_skylab("push", "-C", str(alice), check=True)

    bob = tmp_path / "bob"
    git("clone", "-q", str(remote), str(bob), cwd=tmp_path)
    git("config", "user.email", "bob@example.com", cwd=bob)
    git("config", "user.name", "Bob", cwd=bob)
    run_skylab("init", str(bob), check=True)
    run_skylab("pull", "-C", str(bob), check=True)
    shared_best = TrialStore.open(bob).best()
    run_skylab("run", "--max-trials", "2", "-C", str(bob), check=True)
    run_skylab("push", "-C", str(bob), check=True)
    run_skylab("pull", "-C", str(alice), check=True)

    rows = trials(alice)
    tags = {r["tag"] for r in rows}
    assert len(tags) == 2 and all(re.search(r"-(alice|bob)-[0-9a-f]{4}$", t) for t in tags)  # no collisions
    bobs = [r for r in rows if "-bob-" in r["tag"]]
    assert len(bobs) == 2 and bobs[0]["parent"] == shared_best  # bob went on from alice's best
    assert {r["ran_by"].split("@")[0] for r in rows} == {git("config", "user.name", cwd=alice).strip(), "Bob"}
    table = run_skylab("history", "-C", str(alice), check=True).stdout
    assert "ran by" in table and "Bob@" in table
