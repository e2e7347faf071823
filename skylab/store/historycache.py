"""The parsed notes, kept between loads: `.git/skylab/history-cache`.

Like git's own commit-graph it is derived, never the source of truth: it names the notes commit it
was built from, a load whose notes ref points elsewhere brings it up to date by parsing only the
notes that changed between the two notes trees (a tree diff), and anything it cannot trust — a
missing or unreadable file, another format version, a notes commit that is gone — is rebuilt from
the notes silently. It is written whole to a temporary file and renamed into place, so a kill -9
mid-write leaves the old cache or the new one, never half of one. Safe to delete at any time.

Beside the notes it holds an image of the history built from them (`historyindex.IndexImage`),
written in the same file so the two always match; a new handle starts from it and applies the
history rules only to the commits whose refs or notes changed since.
"""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skylab.store.historyindex import IndexImage
from skylab.store.notechunks import ChunkedNotes
from skylab.store.regularfile import read_regular_file

# 2: keys and repeated values interned; 3: note blob ids; 4: the index's image; 5: notes in chunks;
# 6: in a checksummed file (see save_pickled)
CACHE_FORMAT = 6
SAVE_AFTER = 200  # notes parsed since the last save before the cache file is rewritten...
SAVE_SHARE = 100  # ...or one in this many of all notes, when that is more


def save_due(unsaved: int, notes: int, least: int = SAVE_AFTER) -> bool:
    """Whether to rewrite the cache file, `unsaved` of its `notes` parsed since it was written.
    Writing it costs time in proportion to all notes (1.4 s at 100,000), so it is written after a
    share of them rather than a fixed count: each new note then pays a constant share of a write
    however long the history, and a new handle parses at most that share (1 % of them) again."""
    return unsaved >= max(least, notes // SAVE_SHARE)


@dataclass
class NotesSnapshot:
    """The notes of one notes commit, parsed: what `TrialStore.load` builds history from."""

    notes_commit: str | None
    notes: ChunkedNotes = field(default_factory=ChunkedNotes)  # annotated commit -> its note
    blob_ids: dict[str, str] = field(default_factory=dict)  # annotated commit -> its note's blob id
    unreadable: dict[str, str] = field(default_factory=dict)  # annotated commit -> why not
    commits: set[str] = field(default_factory=set)  # trial commits known to be in the repository
    unsaved: int = 0  # notes parsed since this snapshot was last written
    image: IndexImage | None = None  # history as built from these notes, when the file was written

    # Pickled as bytes of their own and unpickled when first used: a load with nothing new uses
    # neither, and unpickling them took 80 ms of 0.3 s at 100,000 trials.
    ON_FIRST_USE = ("blob_ids", "commits")

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        pending: dict[str, bytes] = dict(state.pop("_pending", {}))
        for name in self.ON_FIRST_USE:
            if name in state:  # used since: pickled anew; else the bytes it came as
                pending[name] = pickle.dumps(state.pop(name), protocol=pickle.HIGHEST_PROTOCOL)
        state["_pending"] = pending
        return state

    if not TYPE_CHECKING:  # hidden from mypy, which would otherwise take any attribute as valid

        def __getattr__(self, name):
            pending = self.__dict__.get("_pending", {})
            if name in self.ON_FIRST_USE and name in pending:
                value = self.__dict__[name] = pickle.loads(pending[name])
                pending.pop(name, None)
                return value
            if name in self.ON_FIRST_USE and name in self.__dict__:  # read by another thread meanwhile
                return self.__dict__[name]
            raise AttributeError(name)


def load_snapshot(path: Path) -> NotesSnapshot | None:
    """The cached snapshot, or None when there is none this version can trust."""
    snapshot = load_pickled(path, CACHE_FORMAT)
    return snapshot if isinstance(snapshot, NotesSnapshot) else None


def save_snapshot(path: Path, snapshot: NotesSnapshot, image: IndexImage | None = None) -> None:
    """Write `snapshot`, with the image of the history built from it (kept in the file only)."""
    snapshot.unsaved, snapshot.image = 0, image
    snapshot.notes.compact(image.commits if image is not None else ())
    try:
        save_pickled(path, CACHE_FORMAT, snapshot)
    finally:
        snapshot.image = None


FILE_MAGIC = b"skylab derived file\n"  # then the format version and the payload's CRC-32, then the payload
HEADER = struct.Struct("<II")
# What reading a derived file can raise: missing or unreadable, not a pickle, or a pickle of what
# this version does not define.
UNREADABLE = (
    OSError,
    ValueError,
    EOFError,
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
    IndexError,
    TypeError,
)


def load_pickled(path: Path, version: int) -> object | None:
    """What `save_pickled` wrote to `path` with this `version`; None when the file is missing,
    unreadable, of another version, or damaged: a payload that does not match its checksum is not
    unpickled, since a changed byte inside it can read as another value (a note, a commit id, a
    line of JSON) rather than fail. (Read, not mapped: a file cut short by someone else while
    mapped would kill the process with SIGBUS. Only a regular file is read: see regularfile.)"""
    try:
        data = read_regular_file(path)
        if data is None:
            return None
        start = len(FILE_MAGIC) + HEADER.size
        if not data.startswith(FILE_MAGIC) or len(data) < start:
            return None
        stored_version, crc = HEADER.unpack_from(data, len(FILE_MAGIC))
        if stored_version != version:
            return None
        with memoryview(data) as view, view[start:] as payload:
            if zlib.crc32(payload) != crc:
                return None
            value: object = pickle.loads(payload)
            return value
    except UNREADABLE:
        return None


def save_pickled(path: Path, version: int, value: object) -> None:
    """Write `value` atomically (a temporary file renamed over the old), behind a header of its
    format version and checksum; a failure to write (a read-only repository) only costs the next
    reader its speed."""
    try:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(FILE_MAGIC + HEADER.pack(version, zlib.crc32(payload)))
            out.write(payload)
        os.replace(temporary, path)
    except OSError:
        return
