"""Every trial's note, diff and log for the report, packed in chunks and kept between reports.

A chunk holds DETAILS_CHUNK trials in table order and is unpacked by the page when one of its
trials is first shown. Packing the details of 100,000 trials (their notes, diffs, JSON, gzip) took
most of a report's time, yet between two reports of a running search only the last chunk changes.
So each packed chunk is kept in `.git/skylab/report-details`, under a key made of everything it is
built from: the trials' names and commits, the blob ids of their notes and the parents they are
diffed against. A chunk whose key is known is reused as it is; any change to one of its trials
(a note rewritten, a ref moved) gives a new key. The file is derived like the history cache: safe to
delete, rebuilt when unreadable, written atomically.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from skylab.report.embed import packed, script_json
from skylab.store.gitstore import TrialStore
from skylab.store.history import Trial
from skylab.store.historycache import load_pickled, save_pickled

DETAILS_CHUNK = 1000  # trials whose details are packed together, unpacked when one is first shown
DETAILS_FORMAT = 1  # what a chunk holds; a new one makes every kept chunk unknown
KEPT_CHUNKS = 300  # chunks kept beyond those of the latest report (another tag's, an older one's)
NO_NOTE = "(no note: interrupted before its result was recorded)"


def details_chunks(store: TrialStore, trials: list[Trial], chunk: int = DETAILS_CHUNK) -> list[str]:
    """The packed details of `trials`, `chunk` trials to a chunk (see the module docstring); only
    chunks not built before are built now."""
    path = store.skylab_dir / "report-details"
    cached = load_pickled(path, DETAILS_FORMAT)
    known: dict[str, str] = cached if isinstance(cached, dict) else {}
    groups = [trials[start : start + chunk] for start in range(0, len(trials), chunk)]
    keys = _chunk_keys(store, trials, chunk)
    missing = [i for i, key in enumerate(keys) if key not in known]
    built = _build([groups[i] for i in missing], store)
    fresh = dict(zip((keys[i] for i in missing), built, strict=True))
    chunks = [fresh[key] if key in fresh else known[key] for key in keys]
    if fresh:
        _save(path, dict(zip(keys, chunks, strict=True)), known)
    return chunks


def _chunk_keys(store: TrialStore, trials: list[Trial], chunk: int) -> list[str]:
    """A key per chunk that changes whenever anything its details are built from does."""
    parts = [
        f"{trial.name} {commit} {parent} {note}"
        for trial, (commit, parent), note in zip(
            trials, store.diff_keys(trials), store.note_versions(trials), strict=True
        )
    ]
    starts = range(0, len(parts), chunk)
    texts = ("\n".join([str(DETAILS_FORMAT), *parts[start : start + chunk]]) for start in starts)
    return [hashlib.sha256(text.encode()).hexdigest() for text in texts]


def _build(groups: list[list[Trial]], store: TrialStore) -> list[str]:
    """The packed details of each group: the note as git holds it, the diff against the parent,
    the log tail and the reason it failed."""
    every = [trial for group in groups for trial in group]
    diffs = iter(store.diffs_against_parents(every))
    texts = iter(store.notes_as_written(every))
    chunks = []
    for group in groups:
        details = {}
        for trial in group:
            note, text = trial.note, next(texts)
            details[trial.name] = {
                "note": text if text is not None else NO_NOTE,
                "diff": next(diffs),
                "log": note.log_tail if note else "",
                "reason": note.reason if note else "",
            }
        chunks.append(packed(script_json(details)))
    return chunks


def _save(path: Path, used: dict[str, str], known: dict[str, str]) -> None:
    """Keep the chunks of this report, then the most recent others up to KEPT_CHUNKS."""
    kept = dict(used)
    for key, chunk in reversed(known.items()):
        if len(kept) >= len(used) + KEPT_CHUNKS:
            break
        kept.setdefault(key, chunk)
    save_pickled(path, DETAILS_FORMAT, kept)
