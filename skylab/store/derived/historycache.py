"""The parsed notes, kept between loads: `.git/skylab/history-cache`.

Like git's own commit-graph it is derived, never the source of truth: it names the notes commit it
was built from, a load whose notes ref points elsewhere brings it up to date by parsing only the
notes that changed between the two notes trees (a tree diff), and anything it cannot trust — a
missing or unreadable file, another schema, a notes commit that is gone — is rebuilt from the
notes silently (see `derivedfile`). Safe to delete at any time.

Beside the notes it holds an image of the history built from them (`historyindex.IndexImage`),
written in the same file so the two always match; a new handle starts from it and applies the
history rules only to the commits whose refs or notes changed since.
"""

from __future__ import annotations

from pathlib import Path

from skylab.store.derived.catalog import HISTORY_CACHE
from skylab.store.derived.snapshot import NotesSnapshot
from skylab.store.historyindex import IndexImage

SAVE_AFTER = 200  # notes parsed since the last save before the cache file is rewritten...
SAVE_SHARE = 100  # ...or one in this many of all notes, when that is more


def save_due(unsaved: int, notes: int, least: int = SAVE_AFTER) -> bool:
    """Whether to rewrite the cache file, `unsaved` of its `notes` parsed since it was written.
    Writing it costs time in proportion to all notes (1.4 s at 100,000), so it is written after a
    share of them rather than a fixed count: each new note then pays a constant share of a write
    however long the history, and a new handle parses at most that share (1 % of them) again."""
    return unsaved >= max(least, notes // SAVE_SHARE)


def load_snapshot(skylab_dir: Path) -> NotesSnapshot | None:
    """The cached snapshot, or None when there is none this version can trust."""
    snapshot = HISTORY_CACHE.load(skylab_dir)
    return snapshot if isinstance(snapshot, NotesSnapshot) else None


def save_snapshot(skylab_dir: Path, snapshot: NotesSnapshot, image: IndexImage | None = None) -> None:
    """Write `snapshot`, with the image of the history built from it (kept in the file only)."""
    snapshot.unsaved, snapshot.image = 0, image
    snapshot.notes.compact(image.commits if image is not None else ())
    try:
        HISTORY_CACHE.save(skylab_dir, snapshot)
    finally:
        snapshot.image = None
