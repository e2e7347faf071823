"""Every trial's note, diff and log for the report, packed in chunks and kept between reports.

A chunk holds DETAILS_CHUNK trials in table order and is unpacked by the page when one of its
trials is first shown. Packing the details of 100,000 trials (their notes, diffs, JSON, gzip) took
most of a report's time, yet between two reports of a running search only the last chunk changes.
So each packed chunk is kept in `.git/skylab/report-details` (see `chunkcache`), under a key made of
everything it is built from: the trials' names and commits, the blob ids of their notes and the
parents they are diffed against. Any change to one of its trials (a note rewritten, a ref moved)
gives a new key.
"""

from __future__ import annotations

from skylab.report.analysis import page_text
from skylab.report.embed import packed, script_json
from skylab.store.derived.catalog import REPORT_DETAILS
from skylab.store.derived.chunkcache import chunk_keys, reused_chunks
from skylab.store.gitstore import TrialStore
from skylab.store.history import Trial

DETAILS_CHUNK = 1000  # trials whose details are packed together, unpacked when one is first shown
NO_NOTE = "(no note: interrupted before its result was recorded)"


def details_chunks(store: TrialStore, trials: list[Trial], chunk: int = DETAILS_CHUNK) -> list[str]:
    """The packed details of `trials`, `chunk` trials to a chunk (see the module docstring); only
    chunks not built before are built now."""
    groups = [trials[start : start + chunk] for start in range(0, len(trials), chunk)]
    commits, parents = zip(*store.diffs.keys(trials), strict=True) if trials else ((), ())
    columns = [
        [trial.name for trial in trials],
        list(commits),
        list(parents),
        store.notes.note_versions(trials),
    ]
    keys = chunk_keys(str(REPORT_DETAILS.format), columns, chunk)

    def build(missing: list[int]) -> list[str]:
        return _build([groups[at] for at in missing], store)

    return reused_chunks(REPORT_DETAILS, store.git.skylab_dir, keys, build)


def _build(groups: list[list[Trial]], store: TrialStore) -> list[str]:
    """The packed details of each group: the note as git holds it, the diff against the parent,
    the log tail and the reason it failed."""
    every = [trial for group in groups for trial in group]
    diffs = iter(store.diffs.against_parents(every))
    texts = iter(store.notes.notes_as_written(every))
    chunks = []
    for group in groups:
        details = {}
        for trial in group:
            note, text = trial.note, next(texts)
            details[trial.name] = {
                "note": text if text is not None else NO_NOTE,
                "diff": next(diffs),
                "log": note.log_tail if note else "",
                "reason": page_text(note.reason) if note else "",
            }
        chunks.append(packed(script_json(details)))
    return chunks
