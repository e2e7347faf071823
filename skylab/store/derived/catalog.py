"""Every derived file Skylab keeps under `.git/skylab/`, declared once: the one place that says what
each holds, when it is thrown away and how large it may grow (see `derivedfile` for the rules all
of them follow). To add one, declare it here and add it to DERIVED_FILES; `skylab gc` then drops
it with the others.

In memory, each store handle also keeps what it derived, all of it dropped with the handle and
none of it ever written: commit -> tree ids (`GitRepo.tree_of`: a commit's tree never changes),
the parsed `packed-refs` per version of the file (`reffiles.RefFiles`), the last load's notes and
history (`loading.HistoryLoader`, brought up to date by each load) and a history's lookups
(`History.by_commit`, for that history object alone, which never changes).

What is not here is state, never dropped by `skylab gc`: the store lock, the clone's own tags
(`clone`), the measurements of a trial in progress (`measuring/`) and an import's marker
(`imports/`).
"""

from __future__ import annotations

from pathlib import Path

from skylab.store.derived.derivedfile import DerivedFile
from skylab.store.derived.notechunks import ChunkedNotes, NoteChunks
from skylab.store.derived.snapshot import NotesSnapshot
from skylab.store.historyindex import IndexImage
from skylab.store.notes import Decision, Status, TrialNote
from skylab.store.reffiles import RefLayers

GIB = 1 << 30
NOTE_SCHEMA = (TrialNote, Status, Decision)

HISTORY_CACHE = DerivedFile(
    "history-cache",
    "every note parsed, and the history built from them: a new handle parses only what changed",
    format=7,
    schema=(NotesSnapshot, ChunkedNotes, NoteChunks, IndexImage, RefLayers, *NOTE_SCHEMA),
    dropped_when="brought up to date by a tree diff when the notes ref moves; rebuilt when the notes "
    "commit it names is gone or its schema is another",
    max_bytes=8 * GIB,
)
DIFF_CACHE = DerivedFile(
    "diff-cache",
    "each trial's diff against its parent, for the report: a diff between two commits never changes",
    format=2,
    schema=(),
    dropped_when="pruned on each write to the diffs asked for then and the most recent "
    "DIFFS_KEPT_BEYOND others",
    max_bytes=2 * GIB,
)
HISTORY_JSON = DerivedFile(
    "history-json",
    "the JSON of `skylab history --json`, in chunks of trials under a key of what each shows",
    format=3,
    schema=NOTE_SCHEMA,
    dropped_when="pruned on each write to the chunks printed then and the 10 most recent others",
    max_bytes=2 * GIB,
)
REPORT_DETAILS = DerivedFile(
    "report-details",
    "the report's packed details of each trial (note, diff, log), in chunks",
    format=3,
    schema=NOTE_SCHEMA,
    dropped_when="pruned on each write to the chunks of that report and the 300 most recent others",
    max_bytes=4 * GIB,
)
REMOTE_RECORDS = DerivedFile(
    "remotes",
    "a remote's trial refs as last listed, one file per remote: a sync lists them again when stale",
    format=4,
    schema=(),
    dropped_when="replaced by each sync with that remote; listed again when it no longer matches "
    "the remote's staged refs",
    max_bytes=1 * GIB,
    per_key=True,
)

DERIVED_FILES = (HISTORY_CACHE, DIFF_CACHE, HISTORY_JSON, REPORT_DETAILS, REMOTE_RECORDS)


def drop_derived_files(skylab_dir: Path, dry_run: bool = False) -> list[tuple[DerivedFile, int]]:
    """Each derived file present under `skylab_dir`, with its bytes, removed unless `dry_run`:
    what `skylab gc` does. Safe while other commands run: a reader finds the file gone and
    rebuilds it, as it would after a crash."""
    present = [(file, file.size(skylab_dir)) for file in DERIVED_FILES if file.present(skylab_dir)]
    if not dry_run:
        present = [(file, file.drop(skylab_dir)) for file, _size in present]
    return present
