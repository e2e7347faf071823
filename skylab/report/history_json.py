"""`skylab history --json` at scale: the rows' JSON built in chunks and kept between commands.

Building a row for each of 100,000 trials, then their JSON, took most of the command's time (rows
0.55 s, JSON 0.35 s, and reading every note 0.4 s, on a 2-core machine), yet between two calls of a
running search only the last chunk of trials changes. So the JSON of each chunk is kept in
`.git/skylab/history-json` (see `chunkcache`), under a key of what its rows show: each trial's
name, commit, note (its blob id), whether it is the best and why its note is unreadable. A row also
shows its change against its parent's value, which lies in the parent's note: the parents a chunk
was built with are kept beside it with the blob ids their notes had, and a chunk is built again
when one of them changed. What is printed is the bytes an uncached build prints.
"""

from __future__ import annotations

from dataclasses import fields

from skylab.jsontext import json_bytes
from skylab.report.history_view import HistoryRow, history_rows, rows_as_json
from skylab.store.derived.catalog import HISTORY_JSON
from skylab.store.derived.chunkcache import chunk_keys, reused_chunks
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial

HISTORY_JSON_CHUNK = 1000  # trials whose rows' JSON is built and kept together
KEPT_BEYOND = 10  # chunks kept beyond those printed: 600 kB each at most, for another tag's rows
NOT_A_TRIAL = "-"  # the version of a parent that is no trial of this history

JsonChunk = tuple[bytes, tuple[tuple[str, str], ...]]  # the rows' JSON, and (parent, its version)


def history_json(
    store: TrialStore, history: History, trials: list[Trial], chunk: int = HISTORY_JSON_CHUNK
) -> bytes:
    """`json_bytes(rows_as_json(history_rows(history, trials)))`, from the chunks kept where they
    still hold (see the module docstring)."""
    if not trials:
        return json_bytes([])
    best, unreadable = history.best, history.unreadable_notes
    note_versions, in_history = store.notes.note_versions_by_commit(), history.by_commit()

    def version(commit: str) -> str:
        return note_versions.get(commit, "") if commit in in_history else NOT_A_TRIAL

    commits = [trial.commit for trial in trials]
    flags = [  # the best, and why a note is unreadable: on few trials, if any
        ("best " if commit == best else "") + (repr(unreadable[commit]) if commit in unreadable else "")
        for commit in commits
    ]
    row_fields = " ".join(f.name for f in fields(HistoryRow))
    columns = [[trial.name for trial in trials], commits, store.notes.note_versions(trials), flags]
    keys = chunk_keys(f"{HISTORY_JSON.format} {row_fields}", columns, chunk)  # see HISTORY_JSON

    def build(missing: list[int]) -> list[JsonChunk]:
        groups = [trials[at * chunk : (at + 1) * chunk] for at in missing]
        rows = iter(history_rows(history, [trial for group in groups for trial in group]))
        built = []
        for group in groups:
            part = [next(rows) for _ in group]
            parents = {row.parent for row in part if row.parent}
            text = json_bytes(rows_as_json(part))[1:-1]  # the rows, without the array's brackets
            built.append((text, tuple((parent, version(parent)) for parent in sorted(parents))))
        return built

    def still_valid(kept: JsonChunk) -> bool:
        return all(version(parent) == was for parent, was in kept[1])

    chunks = reused_chunks(HISTORY_JSON, store.git.skylab_dir, keys, build, still_valid, KEPT_BEYOND)
    parts = [b"["]
    for text, _parents in chunks:
        parts += (text, b",")
    parts[-1] = b"]"  # in place of the last comma: 60 MB at 100,000 trials is copied once
    return b"".join(parts)
