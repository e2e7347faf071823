"""A writer killed (SIGKILL) between any two of its writes leaves a state the next start repairs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skylab.store.gitstore import TrialStore
from skylab.store.notes import Decision, Status
from skylab.store.refs import run_branch

ROOT = Path(__file__).resolve().parents[1]

# Three trials: kept, reverted, kept. The child counts every ref write the store makes and kills
# itself with SIGKILL just before write number KILL_AT.
WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from skylab.store.gitstore import TrialStore
    from skylab.store.refwrites import RefWriter
    from tests.factory import add_trial

    kill_at = int(sys.argv[2])
    writes = 0
    original = RefWriter.set_ref

    def counting_set_ref(self, *args, **kwargs):
        global writes
        writes += 1
        if writes == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    RefWriter.set_ref = counting_set_ref
    store = TrialStore.open(sys.argv[1])
    for value in (1.0, 2.0, 0.5):
        add_trial(store, "run", value)
    print("writes", writes)
    """
)


def run_writer(experiment: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    script = experiment.parent / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    return subprocess.run(
        [sys.executable, str(script), str(experiment), str(kill_at)], capture_output=True, text=True
    )


def total_writes(experiment: Path) -> int:
    result = run_writer(experiment, kill_at=10_000)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def is_lower(a: float, b: float | None) -> bool:
    return b is None or a < b


def test_kill_between_every_pair_of_writes(tmp_path: Path) -> None:
    from skylab.experiment.scaffold import init_experiment

    reference = tmp_path / "reference"
    init_experiment(reference, template="tiny-bigram")
    writes = total_writes(reference)
    assert writes >= 10  # run branch, then per trial: trial ref, note, (branch, best when kept)

    for kill_at in range(1, writes + 1):
        experiment = tmp_path / f"kill-{kill_at}"
        init_experiment(experiment, template="tiny-bigram")
        result = run_writer(experiment, kill_at)
        assert result.returncode == -9, f"write {kill_at}: {result.stderr}"

        store = TrialStore.open(experiment)
        history = store.load()
        noted = {t.commit: t for t in history.trials if t.note is not None}
        # Best and the run branch never point at a trial whose note is missing.
        best = store.best()
        assert best is None or (best in noted and noted[best].kept), f"write {kill_at}"
        tip = store.git.ref_target(run_branch("run"))
        assert tip in (None, store.baseline()) or (tip in noted and noted[tip].kept), f"write {kill_at}"
        # A trial ref without a note shows as interrupted.
        for trial in history.trials:
            if trial.note is None:
                assert trial.status is Status.INTERRUPTED

        fixed = store.repair("val_bpb", is_lower)
        repaired = store.load()
        assert all(t.note is not None for t in repaired.trials), f"write {kill_at}"
        assert {c: t.note for c, t in noted.items()} == {
            t.commit: t.note for t in repaired.trials if t.commit in noted
        }, "a finished trial changed or was lost"
        kept = [t for t in repaired.trials if t.kept and t.value is not None]
        if kept:
            assert store.best() == min(kept, key=lambda t: t.value or 0).commit
            assert store.git.ref_target(run_branch("run")) == kept[-1].commit
        for trial in repaired.trials:
            if trial.commit not in noted:
                assert trial.status is Status.INTERRUPTED and trial.note is not None
                assert trial.note.decision is Decision.REVERT
        assert store.repair("val_bpb", is_lower) == [], "repair is not idempotent"
        if fixed:
            assert all(isinstance(line, str) for line in fixed)

        # And the next run carries on from there with fresh numbers.
        from tests.factory import add_trial

        nxt = add_trial(store, "run", 0.1)
        assert nxt.number == len(repaired.trials) + 1
        assert store.best() == nxt.commit


def test_stale_ref_lock_left_by_a_killed_writer_is_cleared_by_repair(
    store: TrialStore, experiment: Path
) -> None:
    from tests.factory import add_trial

    add_trial(store, "run", 1.0)
    lock = Path(store.git.repo.path) / "refs" / "skylab" / "best.lock"
    lock.write_text("")
    fixed = store.repair("val_bpb", is_lower)
    assert not lock.exists()
    assert any("lock" in line for line in fixed)
    add_trial(store, "run", 0.5)  # would fail on the stale lock


@pytest.mark.parametrize("kill_at", [3, 7])
def test_history_cli_reports_interrupted_trial(tmp_path: Path, kill_at: int) -> None:
    from skylab.experiment.scaffold import init_experiment
    from tests.conftest import run_skylab

    experiment = tmp_path / "exp"
    init_experiment(experiment, template="tiny-bigram")
    run_writer(experiment, kill_at)
    result = run_skylab("history", "-C", str(experiment), check=True)
    assert "interrupted" in result.stdout
