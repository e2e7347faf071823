from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest

from skylab.errors import StoreError
from skylab.store.gitstore import TrialStore
from skylab.store.notes import Status
from skylab.store.refs import BEST_REF, NOTES_REF, check_tag
from tests.conftest import git
from tests.factory import add_trial, tree_with


def test_a_trial_is_a_commit_on_its_start_point_with_its_own_ref(store: TrialStore, experiment: Path) -> None:
    baseline = store.baseline()
    ref = add_trial(store, "mar28", 1.5, description="first")
    commit = store.git.repo[ref.commit].peel(pygit2.Commit)
    assert [str(p) for p in commit.parent_ids] == [baseline]
    assert store.git.ref_target("refs/skylab/trials/mar28/1") == ref.commit
    assert "Skylab-Trial: mar28/1" in commit.message


def test_keep_advances_run_branch_and_best_revert_leaves_them(store: TrialStore, experiment: Path) -> None:
    first = add_trial(store, "mar28", 1.5)
    second = add_trial(store, "mar28", 1.7)  # worse: reverted
    third = add_trial(store, "mar28", 1.2)
    assert store.best() == third.commit
    chain = git("log", "--format=%H", "skylab/mar28", cwd=experiment).split()
    assert chain[:2] == [third.commit, first.commit]
    assert second.commit not in chain
    history = store.load()
    assert [t.number for t in history.trials] == [1, 2, 3]
    assert [t.kept for t in history.trials] == [True, False, True]
    assert [t.name for t in history.kept_chain()] == ["mar28/1", "mar28/3"]


def test_same_change_twice_still_gives_two_trials(store: TrialStore) -> None:
    files = {"train.py": "LR = 1\n"}
    a = add_trial(store, "t", 1.0, files=files, keep=False)
    b = add_trial(store, "t", 1.0, files=files, keep=False)
    assert a.commit != b.commit
    assert len(store.load().trials) == 2


def test_reverted_trials_survive_gc(store: TrialStore, experiment: Path) -> None:
    add_trial(store, "t", 1.0)
    reverted = add_trial(store, "t", 2.0)
    subprocess.run(["git", "gc", "--prune=now", "-q"], cwd=experiment, check=True)
    reopened = TrialStore.open(experiment)
    assert reopened.git.repo.get(reverted.commit) is not None
    assert reopened.load().by_commit()[reverted.commit].value == 2.0


def test_notes_use_a_fanout_tree_that_git_itself_reads(store: TrialStore, experiment: Path) -> None:
    ref = add_trial(store, "t", 0.75, description="fan-out")
    listing = git("ls-tree", "-r", "--name-only", NOTES_REF, cwd=experiment).split()
    assert listing == [f"{ref.commit[:2]}/{ref.commit[2:]}"]
    shown = git("notes", "--ref", "skylab", "show", ref.commit, cwd=experiment)
    assert "val_bpb: 0.75" in shown and "description: fan-out" in shown
    # init set notes.displayRef, so a plain `git log` shows the result.
    assert "val_bpb: 0.75" in git("log", "-1", ref.commit, cwd=experiment)


def test_a_note_git_wrote_flat_is_read_and_then_replaced(store: TrialStore, experiment: Path) -> None:
    ref = add_trial(store, "t", 0.5)
    text = git("notes", "--ref", "skylab", "show", ref.commit, cwd=experiment)
    # Rewrite the notes ref as git would (flat tree), then write another trial through the store.
    git("update-ref", "-d", NOTES_REF, cwd=experiment)
    subprocess.run(
        ["git", "notes", "--ref", "skylab", "add", "-F", "-", ref.commit],
        cwd=experiment,
        input=text,
        text=True,
        check=True,
    )
    assert git("ls-tree", "--name-only", NOTES_REF, cwd=experiment).split() == [ref.commit]
    assert store.load().by_commit()[ref.commit].value == 0.5
    second = add_trial(store, "t", 0.4)
    assert {t.commit for t in store.load().trials} == {ref.commit, second.commit}


def test_trial_numbers_are_per_tag_and_never_reused(store: TrialStore, experiment: Path) -> None:
    add_trial(store, "a", 1.0)
    add_trial(store, "b", 1.0)
    add_trial(store, "a", 1.0)
    names = [t.name for t in store.load().trials]
    assert names == ["a/1", "b/1", "a/2"]
    # A fresh process counts from the refs, not from memory.
    ref = add_trial(TrialStore.open(experiment), "a", 1.0)
    assert ref.number == 3


def test_hand_commit_becomes_a_trial_once(store: TrialStore, experiment: Path) -> None:
    parent = store.start_point()
    tree = tree_with(store, parent, {"train.py": "X = 2\n"})
    sig = store.git.signature()
    commit = str(store.git.repo.create_commit(None, sig, sig, "by hand", tree, [pygit2.Oid(hex=parent)]))
    ref = store.begin_trial("t", commit)
    assert ref.number == 1 and ref.commit == commit
    with pytest.raises(StoreError, match="already a trial"):
        store.begin_trial("t", commit)


@pytest.mark.parametrize("tag", ["", "a/b", "..", "-x", "x.lock", "a b", "x" * 65, "ü"])
def test_bad_tags_are_refused(tag: str) -> None:
    with pytest.raises(StoreError, match="not a valid run tag"):
        check_tag(tag)


def test_crashed_trial_is_recorded_and_never_best(store: TrialStore) -> None:
    add_trial(store, "t", 1.0)
    add_trial(store, "t", None, status=Status.CRASH, description="OOM")
    history = store.load()
    assert history.trials[-1].status is Status.CRASH
    assert store.best() == history.trials[0].commit


def test_resolve_trial_by_name_number_and_commit(store: TrialStore) -> None:
    a1 = add_trial(store, "a", 1.0)
    add_trial(store, "b", 1.0)
    assert store.resolve_trial("a/1").commit == a1.commit
    assert store.resolve_trial(a1.commit[:8]).commit == a1.commit
    assert store.resolve_trial("1", tag="a").commit == a1.commit
    with pytest.raises(StoreError, match="ambiguous"):
        store.resolve_trial("1")
    with pytest.raises(StoreError, match="no trial named"):
        store.resolve_trial("a/9")


def test_best_survives_reopening(store: TrialStore, experiment: Path) -> None:
    ref = add_trial(store, "t", 0.9)
    assert TrialStore.open(experiment).git.ref_target(BEST_REF) == ref.commit


def test_open_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not in a git repository"):
        TrialStore.open(tmp_path)


def test_concurrent_writers_never_collide(store: TrialStore, experiment: Path) -> None:
    """Threads sharing one store and threads with stores of their own (as separate processes would
    have): every trial gets its own number, note and commit."""
    import threading

    errors: list[BaseException] = []

    def writer(own_store: bool) -> None:
        try:
            target = TrialStore.open(experiment) if own_store else store
            for _ in range(25):
                add_trial(target, "par", 1.0, keep=False)
        except BaseException as exc:  # reported below, with the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    trials = store.load().trials
    assert sorted(t.number for t in trials) == list(range(1, 101))
    assert all(t.note is not None for t in trials) and len({t.commit for t in trials}) == 100
