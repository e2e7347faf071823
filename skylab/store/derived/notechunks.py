"""The parsed notes of the history cache, kept in pickled chunks that are unpickled when first read.

Why: unpickling 100,000 notes took 0.23 s of every new handle's load, yet most commands read a few
of them (`show`, `diff`, `apply`, the loop's judge). Here a load unpickles only where each note lies;
a note's chunk is unpickled on the first read of any note in it. A command that reads every note
(`history`, `report`) pays what it paid before, chunk by chunk.

Invariants: a chunk, once made, is never changed (`NoteChunks` is immutable), so a trial that reads
its note from a chunk later (see `history.NoteInChunk`) reads the note its history was built
with, whatever was parsed since; a key of `ChunkedNotes` is either in a chunk (`_where`) or parsed
since the chunks were made (`_fresh`), never both.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, MutableMapping, Sequence
from itertools import chain

from skylab.store.collector import collector_paused
from skylab.store.notes import TrialNote

Chunk = dict[str, TrialNote]  # annotated commit -> its note
NOTES_CHUNK = 1000  # notes to a chunk: one unpickled when a note in it is first read (about 2 ms)


class NoteChunks:
    """Chunks of pickled notes (each a dict: annotated commit -> note), unpickled on first use."""

    def __init__(self, chunks: list[bytes], unpickled: list[Chunk | None] | None = None) -> None:
        self.chunks = chunks
        self._unpickled = unpickled or [None] * len(chunks)

    def unpickled(self, at: int) -> Chunk | None:
        """Chunk `at` if it was unpickled already (None: not yet)."""
        return self._unpickled[at]

    def chunk(self, at: int) -> Chunk:
        found = self._unpickled[at]
        if found is None:
            with collector_paused():  # a thousand notes: ten thousand objects, no cycles
                found = self._unpickled[at] = pickle.loads(self.chunks[at])
        return found

    def note(self, at: int, commit: str) -> TrialNote | None:
        return self.chunk(at).get(commit)


class ChunkedNotes(MutableMapping[str, TrialNote]):
    """Annotated commit -> its parsed note: those the cache file held, in chunks, and those parsed
    since. Pickled (with the history cache) as chunks again: chunks that lost no note are kept as
    the bytes they are, and the notes parsed since are packed into new ones with those of chunks
    that did lose some or hold fewer than half a chunk, so writing the cache costs the notes that
    changed more than all of them, and chunks stay near full however often it is written."""

    def __init__(self, chunks: NoteChunks | None = None, where: dict[str, int] | None = None) -> None:
        self.chunks = chunks or NoteChunks([])
        self._where: dict[str, int] = where or {}  # commit -> the chunk its note is in
        self._fresh: dict[str, TrialNote] = {}  # notes parsed since the chunks were made
        self._emptied: set[int] = set()  # chunks with a note that is no longer theirs

    def located(self, commit: str) -> int | None:
        """The chunk `commit`'s note is in; None when it was parsed since (or there is none)."""
        return self._where.get(commit)

    def __getitem__(self, commit: str) -> TrialNote:
        if commit in self._fresh:
            return self._fresh[commit]
        at = self._where[commit]
        note = self.chunks.note(at, commit)
        assert note is not None, "a chunk holds every note `_where` says it does"
        return note

    def __setitem__(self, commit: str, note: TrialNote) -> None:
        self._forget(commit)
        self._fresh[commit] = note

    def __delitem__(self, commit: str) -> None:
        if commit in self._fresh:
            del self._fresh[commit]
        elif commit in self._where:
            self._forget(commit)
        else:
            raise KeyError(commit)

    def __contains__(self, commit: object) -> bool:
        return commit in self._fresh or commit in self._where

    def __iter__(self) -> Iterator[str]:
        return chain(self._where, self._fresh)

    def __len__(self) -> int:
        return len(self._where) + len(self._fresh)

    def _forget(self, commit: str) -> None:
        at = self._where.pop(commit, None)
        if at is not None:
            self._emptied.add(at)

    def __reduce__(self) -> tuple[object, tuple[list[bytes], dict[str, int]]]:
        self.compact()
        return (_restored, (self.chunks.chunks, self._where))

    def compact(self, order: Sequence[str] = ()) -> None:
        """Pack the notes parsed since into chunks (see the class docstring), in the order of the
        commits in `order` (history's), then the others. What was unpickled stays so; trials that
        read from the chunks before read the same notes from them still.

        Why history's order: notes unpickled together lie together in memory, and history is read
        in its order. Packed in the notes tree's order (by commit id), building the rows of
        100,000 trials took half as long again (0.8 s against 0.53 s) for the cache misses."""
        members: list[list[str]] = [[] for _ in self.chunks.chunks]
        for commit, at in self._where.items():
            members[at].append(commit)
        if not self._fresh and not self._emptied and all(len(m) >= NOTES_CHUNK // 2 for m in members):
            return
        chunks: list[bytes] = []
        unpickled: list[Chunk | None] = []
        where: dict[str, int] = {}
        loose: dict[str, TrialNote] = {}
        for at, commits in enumerate(members):
            if at in self._emptied or len(commits) < NOTES_CHUNK // 2:
                held = self.chunks.chunk(at) if commits else {}
                loose.update({commit: held[commit] for commit in commits})
                continue
            where.update(dict.fromkeys(commits, len(chunks)))
            chunks.append(self.chunks.chunks[at])
            unpickled.append(self.chunks.unpickled(at))
        loose.update(self._fresh)
        pending = [commit for commit in order if commit in loose]
        if len(pending) < len(loose):
            placed = set(pending)
            pending += [commit for commit in loose if commit not in placed]
        for start in range(0, len(pending), NOTES_CHUNK):
            held = {commit: loose[commit] for commit in pending[start : start + NOTES_CHUNK]}
            where.update(dict.fromkeys(held, len(chunks)))
            chunks.append(pickle.dumps(held, protocol=pickle.HIGHEST_PROTOCOL))
            unpickled.append(held)
        self.chunks, self._where = NoteChunks(chunks, unpickled), where
        self._fresh, self._emptied = {}, set()


def _restored(chunks: list[bytes], where: dict[str, int]) -> ChunkedNotes:
    return ChunkedNotes(NoteChunks(chunks), where)
