"""The history cache's notes, in chunks unpickled when first read: the mapping holds what a dict
given the same writes holds, across any number of cache writes and reads, and a trial restored from
the chunks reads the note its history was built with, whatever was written after."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from skylab.store import loading
from skylab.store.derived import notechunks
from skylab.store.derived.historycache import load_snapshot
from skylab.store.derived.notechunks import ChunkedNotes, NoteChunks
from skylab.store.gitstore import TrialStore
from skylab.store.history import NoteInChunk, Trial, read_deferred_notes
from skylab.store.notes import Decision, Status, TrialNote
from tests.factory import add_trial

COMMITS = [f"{n:040x}" for n in range(1, 6)]


def note(commit: str, value: float) -> TrialNote:
    return TrialNote(int(commit, 16), "t", Status.SUCCESS, Decision.REVERT, "loss", value)


ops = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(COMMITS)),
    st.tuples(st.just("del"), st.sampled_from(COMMITS)),
    st.tuples(st.just("save"), st.just("")),  # written to the cache file and read back
    st.tuples(st.just("defer"), st.sampled_from(COMMITS)),  # a trial restored now reads it later
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40))
@example([("set", COMMITS[0]), ("save", ""), ("defer", COMMITS[0]), ("set", COMMITS[0])])
def test_chunked_notes_hold_what_a_dict_holds_and_deferred_notes_never_change(
    steps: list[tuple[str, str]],
) -> None:
    with mock.patch.object(notechunks, "NOTES_CHUNK", 3):  # chunks kept, emptied and repacked
        notes, model = ChunkedNotes(), dict[str, TrialNote]()
        deferred: list[tuple[Trial, Trial]] = []  # (restored, as it must read)
        for step, (kind, commit) in enumerate(steps):
            if kind == "set":
                notes[commit] = model[commit] = note(commit, float(step))
            elif kind == "del" and commit in model:
                del notes[commit], model[commit]
            elif kind == "save":
                notes = pickle.loads(pickle.dumps(notes))
            elif kind == "defer" and (at := notes.located(commit)) is not None:
                restored = Trial("t", 1, commit, NoteInChunk(notes.chunks, at))
                deferred.append((restored, Trial("t", 1, commit, model[commit])))
            assert dict(notes) == model and len(notes) == len(model)
            assert all(c in notes for c in model) and all(c not in notes for c in set(COMMITS) - model.keys())
            assert all(pickle.loads(chunk) for chunk in notes.chunks.chunks)  # none written empty
        # Read only now, after whatever was written since each was restored: every other one at
        # once, as the report reads them, the rest one by one.
        read_deferred_notes([restored for restored, _expected in deferred[::2]])
        assert all(restored == expected for restored, expected in deferred)


def test_a_new_handle_unpickles_a_note_only_with_the_chunk_it_is_in(
    store: TrialStore, experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notechunks, "NOTES_CHUNK", 4)
    monkeypatch.setattr(loading, "SAVE_AFTER", 1)  # the cache is written by every load that parsed
    for n in range(12):
        add_trial(store, "c", 3.0 - n / 100)
    built = [(t.name, t.note) for t in TrialStore.open(experiment).load().trials]
    saved = load_snapshot(experiment / ".git" / "skylab")
    assert saved is not None and len(saved.notes) == 12
    chunks = saved.notes.chunks.chunks
    assert 3 <= len(chunks) <= 6  # chunks of 2 to 4 notes: written after every trial, repacked
    unpickled: list[int] = []  # the chunks unpickled, by their place in the file
    real = pickle.loads

    def counted(data: bytes, *args: Any, **kwargs: Any) -> Any:
        if data in chunks:
            unpickled.append(chunks.index(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(pickle, "loads", counted)
    history = TrialStore.open(experiment).load()
    assert unpickled == []  # restored: no note unpickled
    fifth = next(t for t in history.trials if t.name == "c/5")
    assert fifth.note is not None and fifth.note.value == 3.0 - 4 / 100
    assert len(unpickled) == 1
    assert [(t.name, t.note) for t in history.trials] == built
    assert sorted(unpickled) == list(range(len(chunks)))  # each chunk once


def test_notes_are_packed_in_history_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Notes unpickled together lie together in memory, and history is read in its order."""
    monkeypatch.setattr(notechunks, "NOTES_CHUNK", 2)
    history_order = [COMMITS[3], COMMITS[0], COMMITS[4], COMMITS[1]]
    notes = ChunkedNotes()
    for commit in COMMITS:  # parsed in the notes tree's order (by commit id)
        notes[commit] = note(commit, 1.0)
    notes.compact(history_order)
    packed = [list(pickle.loads(chunk)) for chunk in notes.chunks.chunks]
    assert packed == [[COMMITS[3], COMMITS[0]], [COMMITS[4], COMMITS[1]], [COMMITS[2]]]


def test_two_threads_read_a_deferred_note_at_once() -> None:
    """A loop's threads may share one handle's history: a second reader arriving while the first
    is still reading the chunk gets the note too, not an AttributeError."""

    class Gate(NoteChunks):
        barrier = threading.Barrier(2, timeout=5)

        def note(self, at: int, commit: str) -> TrialNote | None:
            self.barrier.wait()  # both readers inside at once
            return super().note(at, commit)

    notes = ChunkedNotes()
    notes[COMMITS[0]] = note(COMMITS[0], 1.5)
    notes = pickle.loads(pickle.dumps(notes))
    at = notes.located(COMMITS[0])
    assert at is not None
    trial = Trial("t", 1, COMMITS[0], NoteInChunk(Gate(notes.chunks.chunks), at))
    read: list[object] = []

    def reader() -> None:
        try:
            read.append(trial.note)
        except AttributeError as exc:  # what a reader saw when the first had taken the deferral
            read.append(exc)

    first = threading.Thread(target=reader)
    first.start()
    while Gate.barrier.n_waiting == 0:
        time.sleep(0.001)
    reader()  # the second, while the first waits inside the read
    first.join()
    assert read == [note(COMMITS[0], 1.5)] * 2
