"""What a researcher does with the results: apply, branch, diff; `best` as a trial name everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from skylab.store.gitstore import TrialStore
from tests.conftest import git, run_skylab
from tests.factory import add_trial
from tests.loop_experiment import make_loop_experiment
from tests.test_loop import orchestrate, trials


def finished_run(tmp_path: Path) -> Path:
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0, 1, 2, 3]")
    orchestrate(exp)
    return exp


def test_apply_writes_the_best_into_the_checkout_as_uncommitted_changes(tmp_path: Path) -> None:
    exp = finished_run(tmp_path)
    result = run_skylab("apply", "-C", str(exp), check=True)
    assert "wrote train.py" in result.stdout and "applied trial t/4" in result.stdout
    assert "\nX = 3" in (exp / "train.py").read_text()
    assert git("status", "--porcelain", cwd=exp).split() == ["M", "train.py"]  # uncommitted, nothing else
    again = run_skylab("apply", "best", "-C", str(exp), check=True)
    assert "your files already match" in again.stdout


def test_apply_refuses_to_overwrite_local_edits_unless_forced(tmp_path: Path) -> None:
    exp = finished_run(tmp_path)
    (exp / "train.py").write_text((exp / "train.py").read_text() + "# my own edit\n")
    refused = run_skylab("apply", "t/2", "-C", str(exp))
    (line,) = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and line.startswith(
        "error: train.py has uncommitted edits that apply would"
    )
    assert "# my own edit" in (exp / "train.py").read_text()
    run_skylab("apply", "2", "--tag", "t", "--force", "-C", str(exp), check=True)
    assert (
        "# my own edit" not in (exp / "train.py").read_text() and "\nX = 1" in (exp / "train.py").read_text()
    )


def test_branch_at_a_trial_and_bad_names(tmp_path: Path) -> None:
    exp = finished_run(tmp_path)
    best = trials(exp)[-1]["commit"]
    out = run_skylab("branch", "tuned", "-C", str(exp), check=True).stdout
    assert "branch tuned at trial t/4" in out and git("rev-parse", "tuned", cwd=exp).strip() == best
    assert run_skylab("branch", "tuned", "-C", str(exp)).returncode == 2  # never moves an existing one
    bad = run_skylab("branch", "a..b", "-C", str(exp))
    assert bad.returncode == 2 and "'a..b' is not a valid branch name" in bad.stderr


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("HEAD", "is the name of a ref git keeps itself"),
        ("ORIG_HEAD", "is the name of a ref git keeps itself"),
        ("@", "reads as a revision"),
        ("refs/heads/z", "would be refs/heads/refs/heads/z"),
        ("skylab/x", "is in skylab/, where Skylab's run branches live"),
    ],
)
def test_a_branch_name_git_would_read_as_something_else_is_refused(
    experiment: Path, name: str, problem: str
) -> None:
    """`skylab branch HEAD` made refs/heads/HEAD, and git warned "refname 'HEAD' is ambiguous" on
    every command after."""
    add_trial(TrialStore.open(experiment), "run", 1.0)
    refs = git("for-each-ref", cwd=experiment)
    result = run_skylab("branch", name, "-C", str(experiment))
    assert result.returncode == 2 and result.stderr.strip().startswith(f"error: branch '{name}' {problem}")
    assert git("for-each-ref", cwd=experiment) == refs


def test_diff_of_two_non_adjacent_trials_side_by_side(tmp_path: Path) -> None:
    exp = finished_run(tmp_path)
    out = run_skylab("diff", "t/1", "skylab/best", "-C", str(exp), check=True).stdout
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "trial t/1 t/4" in lines and "val_bpb 11.000000 2.000000" in lines and "X 0 3" in lines
    assert "-X = 0" in out and "+X = 3" in out and "prepare.py" not in out


def test_best_names_the_best_trial_everywhere(tmp_path: Path) -> None:
    exp = finished_run(tmp_path)
    assert "trial t/4" in run_skylab("show", "best", "-C", str(exp), check=True).stdout
    empty = make_loop_experiment(tmp_path / "empty")
    none = run_skylab("show", "best", "-C", str(empty))
    assert none.returncode == 2 and "no best trial yet" in none.stderr


def test_training_past_the_time_budget_is_a_constraint(tmp_path: Path) -> None:
    """Nobody, an LLM included, buys a better metric with more time: the budget comes from
    experiment.toml (passed as SKYLAB_TIME_BUDGET) and a trial that trains longer is not compared."""
    exp = make_loop_experiment(tmp_path / "q", parameters="SLEEP = [0.1, 3.2]", SLEEP=0.1, OVER_BUDGET=True)
    orchestrate(exp)
    _, longer = trials(exp)
    assert longer["status"] == "constraint" and longer["decision"] == "revert"
    assert (
        TrialStoreHelper.reason(exp, 1) == "trained 3.2 s, over the 1 s time budget (5 % and 2 s are allowed)"
    )


class TrialStoreHelper:
    @staticmethod
    def reason(exp: Path, index: int) -> str:
        from skylab.store.gitstore import TrialStore

        note = TrialStore.open(exp).load().trials[index].note
        assert note is not None
        return note.reason
