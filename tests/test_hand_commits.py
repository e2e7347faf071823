"""Hand commits on a run branch, through the real post-commit hook: whatever the interleaving of
hand commits, Skylab's reverts and runs, the run branch is a chain of kept trials, and a reverted
change is never carried into what the run builds on."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from skylab.store.gitstore import TrialStore
from skylab.store.runlock import RunLock
from tests.conftest import git, run_skylab
from tests.loop_experiment import make_loop_experiment


def set_constants(exp: Path, **values: int) -> None:
    text = (exp / "train.py").read_text()
    for name, value in values.items():
        lines = text.split("\n")
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
        lines[at] = f"{name} = {value}"
        text = "\n".join(lines)
    (exp / "train.py").write_text(text)


def settle(exp: Path, timeout: float = 120) -> None:
    """Wait until no run holds the lock, then train whatever the queue still holds (as the next
    `skylab run` would), until the queue is empty and no run is active."""
    store = TrialStore.open(exp)
    queue = store.git.skylab_dir / "queue"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if RunLock(store.git.git_dir).try_acquire_and_release():
            waiting = [p for p in queue.iterdir() if not p.name.startswith(".")] if queue.is_dir() else []
            if not waiting:
                return
            run_skylab("run", "--tag", "t", "--queued-only", "-C", str(exp))
        time.sleep(0.2)
    raise AssertionError("the run branch's queue never drained")


def rows(exp: Path) -> list[dict[str, Any]]:
    out = run_skylab("history", "--json", "--tag", "t", "-C", str(exp), check=True).stdout
    found: list[dict[str, Any]] = json.loads(out)
    return found


def assert_chain_of_kept_trials(exp: Path) -> list[str]:
    """Every commit of the run branch above the baseline is a kept, measured trial; returns them."""
    by_commit = {r["commit"]: r for r in rows(exp)}
    baseline = git("rev-parse", "refs/skylab/baseline", cwd=exp).strip()
    chain = git("rev-list", "--first-parent", "skylab/t", cwd=exp).split()
    above = chain[: chain.index(baseline)]
    for commit in above:
        row = by_commit.get(commit)
        assert row is not None, f"{commit[:10]} on the run branch is no trial"
        assert row["decision"] == "keep" and row["status"] == "success", f"{row['trial']} is not kept"
    return above


def hand_commit(exp: Path, message: str, **values: int) -> subprocess.CompletedProcess[str]:
    set_constants(exp, **values)
    return subprocess.run(["git", "commit", "-qam", message], cwd=exp, capture_output=True, text=True)


def started(tmp: Path) -> Path:
    exp = make_loop_experiment(tmp / "q", SLEEP=1.0)
    run_skylab("run", "--tag", "t", "--max-trials", "1", "-C", str(exp), check=True)
    git("checkout", "-q", "skylab/t", cwd=exp)
    return exp


def test_two_quick_reverted_hand_commits_leave_the_branch_on_the_kept_trial(tmp_path: Path) -> None:
    exp = started(tmp_path)
    start = git("rev-parse", "HEAD", cwd=exp).strip()
    hand_commit(exp, "Z by hand", Z=1)  # no effect: 11 ties the best, reverted
    hand_commit(exp, "worse X by hand", X=-5)  # on top of it, before it is judged: (-8)^2 + 1 + 1
    settle(exp)
    assert [r["decision"] for r in rows(exp)] == ["keep", "revert", "revert"]
    assert git("rev-parse", "skylab/t", cwd=exp).strip() == start
    assert_chain_of_kept_trials(exp)
    # The second is measured without the first's reverted change: X=-5 on the kept Z=0.
    second = rows(exp)[2]
    assert "without reverted t/2" in second["description"] and second["value"] == 66.0
    text = git("show", f"{second['commit']}:train.py", cwd=exp)
    assert "\nX = -5\n" in text and "\nZ = 0 " in text
    assert git("status", "--porcelain", cwd=exp) == ""


def test_a_good_commit_on_a_reverted_one_is_kept_without_its_change(tmp_path: Path) -> None:
    exp = started(tmp_path)
    hand_commit(exp, "Z by hand", Z=1)
    researcher = hand_commit(exp, "X to 3 by hand", X=3)  # (3-3)^2 + (0+1)^2 + 1 = 2
    assert researcher.returncode == 0, researcher.stderr
    mine = git("rev-parse", "HEAD", cwd=exp).strip()
    settle(exp)
    first, reverted, kept = rows(exp)
    assert reverted["decision"] == "revert" and kept["decision"] == "keep" and kept["value"] == 2.0
    assert kept["parent"] == first["commit"]
    note = TrialStore.open(exp).load().for_tag("t")[2].note
    assert note is not None and note.other["hand_commit"] == mine
    assert assert_chain_of_kept_trials(exp)[0] == kept["commit"]
    assert "\nZ = 0 " in git("show", "skylab/t:train.py", cwd=exp)


@pytest.mark.slow
def test_a_commit_that_needs_the_reverted_change_carries_it_and_says_so(tmp_path: Path) -> None:
    exp = started(tmp_path)
    hand_commit(exp, "worse Y by hand", Y=5)  # (0-3)^2 + (5+1)^2 + 1 = 46
    hand_commit(exp, "X next to it", X=1)  # the line beside Y's: without Y=5 it conflicts
    settle(exp)
    second = rows(exp)[2]
    assert "carries reverted t/2, as its change conflicts in train.py without it" in second["description"]
    assert second["value"] == 4 + 36 + 1 and second["decision"] == "revert"
    assert_chain_of_kept_trials(exp)


@pytest.mark.slow
def test_a_storm_of_hand_commits_ends_on_a_chain_of_kept_trials(tmp_path: Path) -> None:
    exp = started(tmp_path)
    for n in range(12):
        hand_commit(exp, f"storm {n}", X=(n * 5) % 7 - 2, Y=(n * 3) % 5 - 3)
    settle(exp, timeout=300)
    assert len(rows(exp)) == 13
    assert_chain_of_kept_trials(exp)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(-2, 5), st.integers(-3, 3)),
        st.tuples(st.just("git revert"), st.just(0), st.just(0)),
        st.tuples(st.just("run"), st.just(0), st.just(0)),
        st.tuples(st.just("wait"), st.just(0), st.just(0)),
    ),
    min_size=2,
    max_size=6,
)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
@example(ops=[("commit", 0, 5), ("commit", -2, 5)])  # two quick commits, both reverted
@example(ops=[("commit", 5, 3), ("run", 0, 0), ("commit", 3, -1), ("git revert", 0, 0), ("wait", 0, 0)])
def test_any_interleaving_of_hand_commits_reverts_and_runs_keeps_the_branch_a_kept_chain(
    ops: list[tuple[str, int, int]],
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="skylab-hand-"))
    try:
        exp = started(tmp)
        for op, x, y in ops:
            clean = git("status", "--porcelain", cwd=exp) == ""
            if op == "commit" and clean:
                hand_commit(exp, f"X={x} Y={y}", X=x, Y=y)
            elif (
                op == "git revert"
                and clean
                and git("rev-parse", "HEAD", cwd=exp) != git("rev-parse", "refs/skylab/baseline", cwd=exp)
            ):
                subprocess.run(["git", "revert", "--no-edit", "HEAD"], cwd=exp, capture_output=True)
            elif op == "run":
                settle(exp)
                run_skylab("run", "--tag", "t", "--max-trials", "1", "-C", str(exp))
            else:
                time.sleep(0.5)
        settle(exp, timeout=300)
        assert_chain_of_kept_trials(exp)
    finally:
        settle_quietly(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def settle_quietly(tmp: Path) -> None:
    with contextlib.suppress(Exception):  # the test's own failure is the one to report
        settle(tmp / "q")
