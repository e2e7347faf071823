"""The loop's checks before compute is spent, unit-tested directly."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from skylab.loop.checks import same_change, static_problem
from skylab.store.history import History
from skylab.store.notes import Status
from skylab.strategy import PendingTrial


def test_static_problems(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("X = (\n")
    (tmp_path / "ok.py").write_text("X = 1\n")
    assert static_problem(["train.py"], tmp_path, ["prepare.py"], False) == (
        Status.CRASH,
        "changes files that are not editable: prepare.py",
    )
    assert static_problem(["train.py"], tmp_path, [], False) == (Status.NOOP, "the proposal changed nothing")
    assert static_problem(["train.py"], tmp_path, [], True) is None  # the unchanged starting point trains
    status, reason = static_problem(["train.py"], tmp_path, ["train.py"], False) or (None, "")
    assert status is Status.CRASH and reason.startswith("train.py:1:")
    assert static_problem(["ok.py"], tmp_path, ["ok.py"], False) is None


def test_the_same_change_in_flight_or_judged_is_a_duplicate(experiment: Path) -> None:
    from skylab.store.gitstore import TrialStore
    from tests.factory import add_trial

    store = TrialStore.open(experiment)
    judged = add_trial(store, "t", 1.0)
    interrupted = add_trial(store, "t", None, status=Status.INTERRUPTED, description="other")
    history = store.load()
    tree_of = store.git.tree_of
    with_tree = partial(store.git.commits_with_tree, commits=[t.commit for t in history.trials])
    assert same_change(history, [], tree_of(judged.commit) or "", with_tree) == (
        Status.DUPLICATE,
        "the same change as trial t/1: not trained again",
    )
    assert same_change(history, [], tree_of(interrupted.commit) or "", with_tree) is None  # deserves its run
    in_flight = [(PendingTrial("t/9", "x", {}), "abc")]
    assert same_change(History([], None, None, {}), in_flight, "abc", with_tree) == (
        Status.DUPLICATE,
        "the same change as trial t/9, in flight: not trained",
    )
    # A later trial with the same files: the earlier one is named, and only trials of this history.
    again = add_trial(store, "t", 0.5, description="again", files={"train.py": "# trial of t\nVALUE = 1.0\n"})
    assert tree_of(again.commit) == tree_of(judged.commit)
    later = store.load()
    later_with_tree = partial(store.git.commits_with_tree, commits=[t.commit for t in later.trials])
    found = same_change(later, [], tree_of(judged.commit) or "", later_with_tree)
    assert found == (Status.DUPLICATE, "the same change as trial t/1: not trained again")
    assert same_change(History([], None, None, {}), [], tree_of(judged.commit) or "", later_with_tree) is None
