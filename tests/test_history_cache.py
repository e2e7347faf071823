"""The history cache: derived from the notes, brought up to date by what changed, rebuilt silently
when it cannot be trusted, and never a different history from the one the notes say."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skylab.store.loading as loading
from skylab.store import historyindex, reffiles
from skylab.store.derived.historycache import save_due, save_snapshot
from skylab.store.derived.notechunks import ChunkedNotes
from skylab.store.derived.snapshot import NotesSnapshot
from skylab.store.gitstore import TrialStore
from skylab.store.notes import Status, TrialNote
from skylab.store.notetree import notes_tree_changes
from skylab.store.trialdiffs import TrialDiffs
from tests.factory import add_trial, rewrite_note


def shape(store: TrialStore) -> list[tuple[str, str, float | None, str]]:
    history = store.load()
    return [(t.name, t.commit, t.value, t.status.value) for t in history.trials]


def without_cache(experiment: Path) -> list[tuple[str, str, float | None, str]]:
    cache = experiment / ".git" / "skylab" / "history-cache"
    saved = cache.read_bytes() if cache.exists() else None
    cache.unlink(missing_ok=True)
    found = shape(TrialStore.open(experiment))
    cache.unlink(missing_ok=True)
    if saved is not None:
        cache.write_bytes(saved)
    return found


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every note parsed from now on (its text's first line is enough to count it)."""
    seen: list[str] = []
    original = TrialNote.parse

    def counting(text: str) -> TrialNote:
        seen.append(text)
        return original(text)

    monkeypatch.setattr(TrialNote, "parse", staticmethod(counting))
    monkeypatch.setattr(loading, "SAVE_AFTER", 1)  # save on every change, so each step is on disk
    return seen


def test_a_load_parses_only_the_notes_added_since_the_cache(
    store: TrialStore, experiment: Path, parses: list[str]
) -> None:
    for n in range(20):
        add_trial(store, "c", 3.0 - n / 100)
    TrialStore.open(experiment).load()  # builds and saves the cache
    assert (experiment / ".git" / "skylab" / "history-cache").is_file()
    for n in range(3):
        add_trial(store, "c", 2.0 + n)
    add_trial(store, "c", None, status=Status.CRASH)
    parses.clear()
    fresh = TrialStore.open(experiment)
    assert shape(fresh) == without_cache(experiment)
    assert len(parses) >= 4  # the cacheless comparison parsed all; the cached load parsed 4
    parses.clear()
    assert len(shape(TrialStore.open(experiment))) == 24 and parses == []  # nothing new: nothing parsed


def test_a_new_handle_starts_from_the_history_in_the_cache(
    store: TrialStore, experiment: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[str] = []  # commits the history rules were applied to
    rule = historyindex.commit_part

    def counting(commit: str, *rest: Any) -> historyindex.CommitPart:
        applied.append(commit)
        return rule(commit, *rest)

    monkeypatch.setattr(historyindex, "commit_part", counting)
    packed_reads: list[str] = []
    parse_packed = reffiles.parse_packed_refs

    def counted(text: str, prefix: str) -> dict[str, str]:
        packed_reads.append(prefix)
        return parse_packed(text, prefix)

    monkeypatch.setattr(reffiles, "parse_packed_refs", counted)
    for n in range(12):
        add_trial(store, "c", 3.0 - n / 100)
    subprocess.run(["git", "-C", str(experiment), "pack-refs", "--all"], check=True)
    TrialStore.open(experiment).load()  # builds history and saves it with the notes
    applied.clear()
    packed_reads.clear()
    assert shape(TrialStore.open(experiment)) == without_cache(experiment)
    assert len(applied) == 12  # all of them, but by the cacheless build alone
    applied.clear()
    packed_reads.clear()
    assert len(shape(TrialStore.open(experiment))) == 12
    assert applied == [] and packed_reads == []  # restored: no rule applied, packed-refs not parsed
    newer = add_trial(store, "c", 1.0)
    applied.clear()
    assert shape(TrialStore.open(experiment))[-1][1] == newer.commit
    assert set(applied) <= {newer.commit}  # the cache is a note behind at most: the new trial alone


def test_a_cache_that_cannot_be_trusted_is_rebuilt_silently(store: TrialStore, experiment: Path) -> None:
    for n in range(5):
        add_trial(store, "c", 3.0 - n / 100)
    truth = without_cache(experiment)
    cache = experiment / ".git" / "skylab" / "history-cache"
    for damage in (b"", b"not a pickle", b"\x80\x05garbage"):
        cache.write_bytes(damage)
        assert shape(TrialStore.open(experiment)) == truth
    # A cache built from a notes commit this repository does not have: rebuilt, never trusted.
    save_snapshot(cache.parent, NotesSnapshot("0" * 40, notes=ChunkedNotes(), commits=set()))
    assert shape(TrialStore.open(experiment)) == truth
    # A cache that claims the current notes commit but holds other notes would be wrong: the file is
    # derived, so deleting it is always safe.
    cache.unlink()
    assert shape(TrialStore.open(experiment)) == truth


def test_a_byte_changed_inside_the_cached_notes_is_caught(
    store: TrialStore, experiment: Path, parses: list[str]
) -> None:
    """The notes are unpickled only when first read, too late to rebuild from: a checksum per chunk
    fails the file when it is read, so a changed note never shows (nor a traceback later)."""
    for n in range(5):
        add_trial(store, "c", 3.0 - n / 100, description=f"step {n}")
    TrialStore.open(experiment).load()
    cache = experiment / ".git" / "skylab" / "history-cache"
    damaged = cache.read_bytes().replace(b"step 3", b"step 9")
    assert damaged != cache.read_bytes()  # the note's text lies in the file as it is
    cache.write_bytes(damaged)
    history = TrialStore.open(experiment).load()
    assert [t.note.description for t in history.trials if t.note] == [f"step {n}" for n in range(5)]


def test_a_note_rewritten_or_replaced_is_seen(store: TrialStore, experiment: Path, parses: list[str]) -> None:
    ref = add_trial(store, "c", 3.0)
    TrialStore.open(experiment).load()
    note = TrialStore.open(experiment).note_for(ref.commit)
    assert note is not None
    note.description = "rewritten"
    rewrite_note(store, ref.commit, note)
    history = TrialStore.open(experiment).load()
    assert history.trials[0].note is not None and history.trials[0].note.description == "rewritten"


def test_diffs_are_computed_once_and_a_damaged_diff_cache_is_rebuilt(
    store: TrialStore, experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(4):
        add_trial(store, "c", 3.0 - n / 10)
    trials = store.load().trials
    expected = [store.diffs.against_parent(t) for t in trials]
    assert all("VALUE" in diff for diff in expected)
    computed: list[str] = []
    original = TrialDiffs._diff

    def counting(self: TrialDiffs, commit: str, named: str) -> str:
        computed.append(commit)
        return original(self, commit, named)

    monkeypatch.setattr(TrialDiffs, "_diff", counting)
    assert TrialStore.open(experiment).diffs.against_parents(trials) == expected
    assert len(computed) == 4
    computed.clear()
    assert TrialStore.open(experiment).diffs.against_parents(trials) == expected
    assert computed == []  # all from the cache
    cache = experiment / ".git" / "skylab" / "diff-cache"
    cache.write_bytes(b"\x80\x05garbage")
    assert TrialStore.open(experiment).diffs.against_parents(trials) == expected
    assert len(computed) == 4
    # A changed byte inside it would show as a changed diff: the file's checksum fails it.
    damaged = cache.read_bytes().replace(b"+VALUE = 2.9", b"+VALUE = 9.9")
    assert damaged != cache.read_bytes()
    cache.write_bytes(damaged)
    assert TrialStore.open(experiment).diffs.against_parents(trials) == expected


NOTE_NAMES = [p + f"{n:038x}" for p in ("aa", "ab") for n in range(3)]  # two fan-out folders


def fanned_out(repo: pygit2.Repository, notes: dict[str, str], odd: str) -> pygit2.Tree:
    """A notes tree with `notes` (commit -> text) under 2-character folders, plus one `odd` note:
    flat at the top, one level deeper, or none."""
    folders: dict[str, pygit2.TreeBuilder] = {}
    for commit, text in notes.items():
        sub = folders.setdefault(commit[:2], repo.TreeBuilder())
        sub.insert(commit[2:], repo.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB)
    root = repo.TreeBuilder()
    if odd == "deep":
        deeper = repo.TreeBuilder()
        deeper.insert("cc", repo.create_blob(b"deep"), pygit2.GIT_FILEMODE_BLOB)
        folder = folders.setdefault("ac", repo.TreeBuilder())
        folder.insert("c" * 38, deeper.write(), pygit2.GIT_FILEMODE_TREE)
    for prefix, sub in folders.items():
        root.insert(prefix, sub.write(), pygit2.GIT_FILEMODE_TREE)
    if odd == "flat":
        root.insert("d" * 40, repo.create_blob(b"flat"), pygit2.GIT_FILEMODE_BLOB)
    tree = repo[root.write()]
    assert isinstance(tree, pygit2.Tree)
    return tree


def changes_by_full_diff(old: pygit2.Tree, new: pygit2.Tree) -> dict[str, str | None] | None:
    """What libgit2's diff of the two whole trees says changed (the way it was read before)."""
    changed: dict[str, str | None] = {}
    for delta in old.diff_to_tree(new).deltas:
        head, _, rest = (delta.new_file.path or delta.old_file.path).partition("/")
        if len(head) != 2 or "/" in rest or len(head + rest) not in (40, 64):
            return None
        removed = delta.status == pygit2.enums.DeltaStatus.DELETED
        changed[head + rest] = None if removed else str(delta.new_file.id)
    return changed


notes_states = st.dictionaries(st.sampled_from(NOTE_NAMES), st.sampled_from(["x", "y", "z"]))
odd_notes = st.sampled_from(["", "flat", "deep"])


@settings(max_examples=200, deadline=None)
@given(notes_states, odd_notes, notes_states, odd_notes)
def test_notes_that_changed_are_what_a_diff_of_the_whole_trees_says(
    tmp_path_factory: pytest.TempPathFactory,
    old_notes: dict[str, str],
    old_odd: str,
    new_notes: dict[str, str],
    new_odd: str,
) -> None:
    repo = pygit2.init_repository(str(tmp_path_factory.mktemp("notes")), bare=True)
    old, new = fanned_out(repo, old_notes, old_odd), fanned_out(repo, new_notes, new_odd)
    changed = notes_tree_changes(old, new)
    found = None if changed is None else {c: None if b is None else str(b.id) for c, b in changed.items()}
    assert found == changes_by_full_diff(old, new)


def test_the_cache_is_rewritten_after_a_share_of_the_notes_not_a_fixed_count() -> None:
    assert not save_due(199, 1_000) and save_due(200, 1_000) and save_due(200, 20_000)
    assert not save_due(200, 100_000) and not save_due(999, 100_000) and save_due(1_000, 100_000)


def test_blob_ids_and_known_commits_are_unpickled_when_first_used() -> None:
    snapshot = NotesSnapshot("c" * 40, blob_ids={"a" * 40: "b" * 40}, commits={"a" * 40})
    restored = pickle.loads(pickle.dumps(snapshot))
    assert restored.unpickled() == []  # a load needs neither
    assert restored.commits == {"a" * 40}
    again = pickle.loads(pickle.dumps(restored))  # blob ids still as the bytes they came as
    again.blob_ids["d" * 40] = "e" * 40
    assert pickle.loads(pickle.dumps(again)).blob_ids == {"a" * 40: "b" * 40, "d" * 40: "e" * 40}
    assert pickle.loads(pickle.dumps(again)).commits == {"a" * 40}
