"""An experiment copied (`cp -a`) or moved elsewhere runs where it is now: Skylab's work trees are
linked to the repository they are in, never to the old place, and the original is left as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import git, run_skylab
from tests.loop_experiment import make_loop_experiment
from tests.test_hand_commits import rows


def test_a_copied_or_moved_experiment_runs_and_burns_no_trial_number(tmp_path: Path) -> None:
    original = make_loop_experiment(tmp_path / "q")
    run_skylab("run", "--tag", "t", "--max-trials", "1", "-C", str(original), check=True)
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    moved = tmp_path / "moved"
    for experiment in (copy, moved):
        if experiment == moved:
            original.rename(moved)
        result = run_skylab("run", "--tag", "t", "--max-trials", "1", "-C", str(experiment))
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert [r["trial"] for r in rows(experiment)] == ["t/1", "t/2"]
        link = (experiment / ".skylab" / "worktrees" / "t" / ".git").read_text()
        assert link.strip() == f"gitdir: {experiment / '.git' / 'worktrees' / 't'}"
        if experiment == copy:  # the original is untouched: its tree is still its own
            assert str(original / ".skylab" / "worktrees" / "t") in git("worktree", "list", cwd=original)
    for experiment in (copy, moved):
        listed = git("worktree", "list", "--porcelain", cwd=experiment)
        assert f"worktree {experiment / '.skylab' / 'worktrees' / 't'}\n" in listed
        assert str(tmp_path / "q") not in listed
