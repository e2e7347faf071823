"""History kept up to date commit by commit: after any sequence of ref and note changes the index
shows the history a build from nothing shows, and a store handle's repeated loads see what other
writers did (new trials, refs deleted or packed by hand) without re-reading what did not change."""

from __future__ import annotations

import pickle
import subprocess
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from unittest import mock

import pygit2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skylab.errors import StoreError
from skylab.store import reffiles
from skylab.store.derived import notechunks
from skylab.store.derived.notechunks import ChunkedNotes
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.store.historyindex import HistoryIndex, build_history, parse_trial_ref
from skylab.store.notes import Decision, Status, TrialNote
from skylab.store.reffiles import RefFiles, RefLayers, parse_packed_refs
from skylab.store.refs import TRIALS_PREFIX
from skylab.store.repository import GitRepo
from tests.factory import add_trial

COMMITS = [f"{n:040x}" for n in range(1, 7)]
ABSENT = COMMITS[5]  # named by refs and notes, but no commit here
NAMES = [f"{tag}/{n}" for tag in ("a", "b") for n in (1, 2, 3)]


def note_of(name: str, value: float) -> TrialNote:
    tag, _, number = name.partition("/")
    return TrialNote(int(number), tag, Status.SUCCESS, Decision.REVERT, "loss", value, started_at=f"t{value}")


def started(trial: Trial) -> str:
    return trial.note.started_at if trial.note else f"commit-time-{trial.commit[-1]}"


def shown(history: History) -> tuple[object, ...]:
    trials = [(t.name, t.commit, t.note, t.has_ref) for t in history.trials]
    return (trials, history.unreadable_notes, history.stray_refs)


ops = st.one_of(
    st.tuples(st.just("ref"), st.sampled_from(NAMES), st.sampled_from(COMMITS)),
    st.tuples(st.just("unref"), st.sampled_from(NAMES), st.just("")),
    st.tuples(st.just("note"), st.sampled_from(COMMITS), st.sampled_from(NAMES)),
    st.tuples(st.just("garbled"), st.sampled_from(COMMITS), st.just("")),
    st.tuples(st.just("unnote"), st.sampled_from(COMMITS), st.just("")),
    st.tuples(st.just("arrives"), st.just(ABSENT), st.just("")),
    st.tuples(st.just("pack"), st.just(""), st.just("")),
    st.tuples(st.just("save"), st.just(""), st.just("")),  # the history cache keeps an image...
    st.tuples(st.just("restore"), st.just(""), st.just("")),  # ...a later process starts from
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(ops, min_size=1, max_size=4), min_size=1, max_size=12))
@example([[("ref", "a/1", ABSENT), ("save", "", "")], [("restore", "", ""), ("arrives", ABSENT, "")]])
def test_updates_in_any_order_show_what_a_build_from_nothing_shows(
    batches: list[list[tuple[str, str, str]]],
) -> None:
    here = set(COMMITS) - {ABSENT}
    packed: dict[str, str] = {}  # as git's files backend keeps refs: packed-refs, rewritten whole...
    loose: dict[str, str] = {}  # ...and loose files over it
    notes: MutableMapping[str, TrialNote] = {}
    errors: dict[str, str] = {}
    index = HistoryIndex(lambda c: c in here, started)
    saved: tuple[bytes, set[str]] | None = None  # an image, and the notes changed since it was taken
    earlier: tuple[History, tuple[object, ...]] | None = None  # a history, and what it showed then
    for step, batch in enumerate(batches):
        changed: set[str] = set()
        for kind, target, other in batch:
            if kind == "ref":
                loose[target] = other
            elif kind == "unref":
                loose.pop(target, None)
                if target in packed:
                    packed = {n: c for n, c in packed.items() if n != target}
            elif kind == "pack":
                packed, loose = {**packed, **loose}, {}
            elif kind == "arrives":
                here.add(target)  # a fetch brought the commit; no ref or note changed
            else:
                changed.add(target)
                notes.pop(target, None)
                errors.pop(target, None)
                if kind == "note":
                    notes[target] = note_of(other, float(step))
                elif kind == "garbled":
                    errors[target] = "no 'skylab-note' line: not a Skylab note"
        if saved is not None:
            saved[1].update(changed)
        if saved is not None and ("restore", "", "") in batch:
            image = pickle.loads(saved[0])
            chunked = ChunkedNotes()  # as the cache file holds them: in chunks, read when first asked
            chunked.update(notes)
            with mock.patch.object(notechunks, "NOTES_CHUNK", 2):
                chunked = pickle.loads(pickle.dumps(chunked))
            index = HistoryIndex.restored(image, chunked, lambda c: c in here, started)
            notes = chunked  # written to from now on, as a store's are
            changed = saved[1]
        if earlier is not None:  # a history shows what it was built with, read before or after
            assert shown(earlier[0]) == earlier[1]
        index.update(RefLayers(packed, dict(loose)), notes, errors, changed)
        if ("save", "", "") in batch:
            saved = (pickle.dumps(index.image()), set())
        refs = {**packed, **loose}
        from_nothing = build_history(
            notes,
            errors,
            [r for name, commit in refs.items() if (r := parse_trial_ref(name, commit))],
            lambda c: c in here,
            started,
            None,
            None,
        )
        if step % 2 == 0:
            earlier = (index.history(None, None), shown(from_nothing))
        assert shown(index.history(None, None)) == shown(from_nothing)


def test_a_handle_sees_other_writers_trials_deleted_refs_and_packed_refs(
    store: TrialStore, experiment: Path
) -> None:
    reader = TrialStore.open(experiment)
    assert reader.load().trials == []
    for n in range(5):
        add_trial(store, "c", 3.0 - n / 10)
    assert [t.name for t in reader.load().trials] == [f"c/{n}" for n in range(1, 6)]
    subprocess.run(["git", "-C", str(experiment), "pack-refs", "--all"], check=True)
    add_trial(store, "c", 9.0)
    assert len(reader.load().trials) == 6
    subprocess.run(["git", "-C", str(experiment), "update-ref", "-d", TRIALS_PREFIX + "c/6"], check=True)
    six = reader.load().by_commit()
    fresh = TrialStore.open(experiment).load()
    assert [(t.name, t.has_ref) for t in reader.load().trials] == [(t.name, t.has_ref) for t in fresh.trials]
    assert [t.has_ref for t in six.values()].count(False) == 1  # c/6's note still shows it, without a ref


def test_ref_files_list_what_git_lists(experiment: Path, store: TrialStore) -> None:
    first = add_trial(store, "c", 3.0)
    second = add_trial(store, "c", 2.0)
    git = ["git", "-C", str(experiment)]
    subprocess.run([*git, "pack-refs", "--all"], check=True)
    subprocess.run(
        [*git, "update-ref", TRIALS_PREFIX + "c/1", second.commit], check=True
    )  # loose over packed
    subprocess.run([*git, "update-ref", TRIALS_PREFIX + "deep/tag/7", first.commit], check=True)
    subprocess.run([*git, "symbolic-ref", TRIALS_PREFIX + "link", "refs/heads/skylab/c"], check=True)
    (experiment / ".git" / "refs" / "skylab" / "trials" / "c" / "9.lock").write_text(first.commit + "\n")
    listed = subprocess.run(
        [*git, "for-each-ref", "--format=%(refname) %(objectname) %(symref)", TRIALS_PREFIX],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    expected = {
        line.split()[0][len(TRIALS_PREFIX) :]: line.split()[1] for line in listed if len(line.split()) == 2
    }
    assert expected == {"c/1": second.commit, "c/2": second.commit, "deep/tag/7": first.commit}
    read = RefFiles(experiment / ".git").under(TRIALS_PREFIX)
    assert read is not None and read.merged() == expected
    assert dict(GitRepo(pygit2.Repository(str(experiment))).refs_under(TRIALS_PREFIX)) == expected
    worktree = experiment.parent / "worktree"
    subprocess.run([*git, "worktree", "add", "-q", "--detach", str(worktree)], check=True)
    assert dict(GitRepo(pygit2.Repository(str(worktree))).refs_under(TRIALS_PREFIX)) == expected


def test_packed_refs_parse_skips_the_header_and_peeled_lines() -> None:
    text = (
        "# pack-refs with: peeled fully-peeled sorted \n"
        f"{'a' * 40} refs/skylab/trials/c/1\n"
        f"^{'b' * 40}\n"
        f"{'c' * 40} refs/heads/main\n"
        f"{'d' * 64} refs/skylab/trials/c/2\n"
        "garbage line\n"
    )
    assert parse_packed_refs(text, TRIALS_PREFIX) == {"c/1": "a" * 40, "c/2": "d" * 64}


ref_names = st.lists(
    st.lists(
        st.sampled_from(["refs", "skylab", "trials", "heads", "a", "b", "1", "10"]), min_size=2, max_size=4
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ref_names, st.lists(st.sampled_from(["refs", "skylab", "trials", "heads", "a", "1"]), max_size=3))
def test_a_sorted_packed_refs_file_reads_as_a_full_scan_does(
    names: list[list[str]], prefix: list[str]
) -> None:
    refs = sorted({"/".join(parts) for parts in names})
    body = "".join(
        f"{n:040x} {name}\n" + (f"^{n + 1:040x}\n" if n % 3 == 0 else "") for n, name in enumerate(refs)
    )
    folder = "/".join(prefix) + "/" if prefix else "refs/"
    unsorted = parse_packed_refs("# pack-refs with: peeled \n" + body, folder)
    assert parse_packed_refs("# pack-refs with: peeled fully-peeled sorted \n" + body, folder) == unsorted
    assert unsorted == {
        name[len(folder) :]: f"{n:040x}" for n, name in enumerate(refs) if name.startswith(folder)
    }


def test_maintenance_packs_refs_once_too_many_lie_loose(store: TrialStore, experiment: Path) -> None:
    for n in range(6):
        add_trial(store, "c", 3.0 - n / 10)
    before = store.load()
    files = RefFiles(experiment / ".git")
    assert files.loose_count(TRIALS_PREFIX) == 6
    store.maintain(loose_refs_limit=10)
    assert files.loose_count(TRIALS_PREFIX) == 6  # under the limit: left alone
    store.maintain(loose_refs_limit=3)
    assert files.loose_count(TRIALS_PREFIX) == 0
    assert [(t.name, t.commit) for t in store.load().trials] == [(t.name, t.commit) for t in before.trials]
    assert [(t.name, t.commit) for t in TrialStore.open(experiment).load().trials] == [
        (t.name, t.commit) for t in before.trials
    ]


def test_maintenance_packs_objects_in_the_foreground_under_the_store_lock(
    store: TrialStore, experiment: Path
) -> None:
    git = ["git", "-C", str(experiment)]
    subprocess.run([*git, "config", "gc.auto", "256"], check=True)  # git's default: 6,700 loose objects

    def loose_objects() -> int:
        counted = subprocess.run([*git, "count-objects"], capture_output=True, text=True, check=True)
        return int(counted.stdout.split()[0])

    for n in range(8):
        add_trial(store, "c", 3.0 - n / 100)
    # git estimates the loose objects from those in objects/17/: put a few there
    sample, n = experiment / ".git" / "objects" / "17", 0
    while len(list(sample.glob("*"))) < 3 if sample.is_dir() else True:
        store.git.repo.create_blob(f"filler {n}".encode())
        n += 1
    before = loose_objects()
    store.maintain()
    assert loose_objects() <= before - 8 * 3  # the trials' commits, trees and blobs are packed now,
    assert not (experiment / ".git" / "gc.log").exists()  # not by a detached gc later


def test_adopting_trial_refs_is_all_or_none_and_never_moves_one(store: TrialStore, experiment: Path) -> None:
    first, second = add_trial(store, "c", 3.0), add_trial(store, "c", 2.0)
    store.team.adopt_trial_refs({"mate/1": first.commit, "mate/2": second.commit})
    refs = dict(store.git.refs_under(TRIALS_PREFIX))
    assert refs["mate/1"] == first.commit and refs["mate/2"] == second.commit
    try:
        store.team.adopt_trial_refs({"mate/3": first.commit, "c/1": second.commit})  # c/1 exists
    except StoreError as exc:
        assert "c/1" in str(exc)
    else:
        raise AssertionError("an existing trial ref was not refused")
    after = dict(store.git.refs_under(TRIALS_PREFIX))
    assert after["c/1"] == first.commit and "mate/3" not in after


def test_ref_writes_are_what_git_reads_with_reflogs_and_locks(store: TrialStore, experiment: Path) -> None:
    git = ["git", "-C", str(experiment)]
    first = add_trial(store, "c", 3.0)
    second = add_trial(store, "c", 2.0)

    def run(*args: str) -> str:
        return subprocess.run([*git, *args], capture_output=True, text=True, check=True).stdout

    assert run("rev-parse", TRIALS_PREFIX + "c/2").strip() == second.commit
    assert run("reflog", "show", "--format=%gs", "refs/notes/skylab").splitlines()[:2] == [
        "skylab: trial c/2 success",
        "skylab: trial c/1 success",
    ]
    assert run("fsck", "--no-dangling") == ""
    run("pack-refs", "--all")
    try:  # packed now, but still there: never created twice
        store.team.adopt_trial_refs({"c/1": second.commit})
    except StoreError as exc:
        assert "exists" in str(exc)
    else:
        raise AssertionError("a packed trial ref was created again")
    store.set_best(first.commit, "test")  # a packed ref moved: a loose one overrides it
    assert run("rev-parse", "refs/skylab/best").strip() == first.commit
    lock = experiment / ".git" / "refs" / "skylab" / "best.lock"
    lock.write_text("")  # another git process is writing it
    try:
        store.set_best(second.commit, "test")
    except StoreError as exc:
        assert "locked" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("a locked ref was written")
    lock.unlink()
    assert run("rev-parse", "refs/skylab/best").strip() == first.commit


def test_loose_ref_files_are_read_again_only_when_git_rewrote_them(
    experiment: Path, store: TrialStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = add_trial(store, "c", 3.0)
    second = add_trial(store, "c", 2.0)
    opened: list[str] = []
    real_open = open

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(reffiles, "open", counting, raising=False)
    files = RefFiles(experiment / ".git")
    read = files.under(TRIALS_PREFIX)
    assert read is not None and read.loose == {"c/1": first.commit, "c/2": second.commit}
    assert len(opened) == 2
    opened.clear()
    assert files.under(TRIALS_PREFIX) == read and opened == []  # unchanged: stat, not read
    subprocess.run(
        ["git", "-C", str(experiment), "update-ref", TRIALS_PREFIX + "c/1", second.commit], check=True
    )
    moved = files.under(TRIALS_PREFIX)
    assert moved is not None and moved.loose["c/1"] == second.commit
    assert [Path(p).name for p in opened] == ["1"]
