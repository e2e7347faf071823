"""`skylab import RESULTS_TSV`: an autoresearch run's rows become the trials of one tag, in row
order, written through the store like any trial.

No row is dropped: a row whose commit is not in this repository (discards that were reset away) or
whose short hash is ambiguous becomes a trial on a placeholder commit holding its parent's files,
its note saying `imported_commit` and `commit_missing: true`. The whole file is read and checked
before anything is written, so a malformed file leaves the repository as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from skylab.autoresearch.results_tsv import KNOWN_STATUSES, ImportFormatError, ResultRow, parse_results
from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.store.gitstore import TrialStore
from skylab.store.history import History
from skylab.store.notes import Decision, Status, TrialNote, iso_utc
from skylab.store.refs import check_tag

IMPORTED = "imported"  # the strategy name of an imported trial


@dataclass
class ImportOutcome:
    tag: str
    trials: int
    missing: int  # rows whose commit was not found: placeholders
    best: str  # the best trial's name ("" when no row was kept)
    warnings: list[str]
    already: bool = False  # the same file was imported into this tag before: nothing was written


def read_results(path: Path, metric: str) -> tuple[list[ResultRow], list[str]]:
    """The file's rows, or one SkylabError naming the file (and the line) and the problem."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SkylabError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise SkylabError(f"{path}: {exc.strerror or exc}") from None
    try:
        return parse_results(text, metric)
    except ImportFormatError as exc:
        raise ImportFormatError(f"{path}: {exc}") from None


def import_results(
    store: TrialStore, config: ExperimentConfig, path: Path, tag: str, metric: str | None = None
) -> ImportOutcome:
    """Import `path` into run `tag` (see the module's docstring); refused when `tag` holds other
    trials, a no-op when it holds this very import already."""
    check_tag(tag)
    rows, warnings = read_results(path, metric or config.metric)
    history = store.load()
    existing = history.for_tag(tag)
    if existing:
        if _same_import(history, tag, rows):
            best = history.by_commit().get(store.best() or "")
            return ImportOutcome(tag, len(rows), 0, best.name if best else "", [], already=True)
        raise SkylabError(f"run {tag} already has {len(existing)} trials: import into a new tag (--tag)")
    if not rows:
        raise SkylabError(f"{path}: no rows to import")
    return _write(store, config, rows, warnings, tag, metric or config.metric)


def _same_import(history: History, tag: str, rows: list[ResultRow]) -> bool:
    notes = [t.note for t in history.for_tag(tag)]
    written = [
        (n.other.get("imported_commit"), n.strategy, n.value, n.description) if n else None for n in notes
    ]
    return written == [(row.commit, IMPORTED, row.value, row.description) for row in rows]


def _write(
    store: TrialStore,
    config: ExperimentConfig,
    rows: list[ResultRow],
    warnings: list[str],
    tag: str,
    metric: str,
) -> ImportOutcome:
    known = store.load().by_commit()
    used: set[str] = set(known)
    started = datetime.now(timezone.utc)
    best_value: float | None = None
    best_name = ""
    parent = store.baseline() or store.start_point()
    missing = 0
    for index, row in enumerate(rows):
        found = store.resolve_commit(row.commit)
        placeholder = found is None or found in used
        if found is None:
            missing += 1
        if placeholder:
            tree = store.tree_of(found or parent)
            assert tree is not None
            ref = store.create_trial(tag, tree, found or parent, row.description or f"imported {row.commit}")
        else:
            assert found is not None
            ref = store.begin_trial(tag, found)
        used.add(ref.commit)
        note = TrialNote.begun(
            tag, ref.number, metric, parent, iso_utc(started + timedelta(milliseconds=index)), row.description
        )
        note.strategy = IMPORTED
        note.peak_vram_mb = None if row.memory_gb is None else row.memory_gb * 1024
        note.summary = dict(row.extra)
        note.other["imported_commit"] = row.commit
        if found is None:
            note.other["commit_missing"] = "true"
        word = row.status.lower()
        if word not in KNOWN_STATUSES:
            note.other["imported_status"] = row.status
        if row.value is None:
            note.status, note.reason = Status.CRASH, f"imported as {row.status}"
        else:
            note.value, note.measurements = row.value, [row.value]
        kept = word == "keep" and row.value is not None
        note.decision = Decision.KEEP if kept else Decision.REVERT
        new_best = kept and row.value is not None and config.is_better(row.value, best_value)
        store.finish_trial(ref, note, new_best=new_best)
        if kept:
            parent = ref.commit
        if new_best:
            best_value, best_name = row.value, ref.name
    return ImportOutcome(tag, len(rows), missing, best_name, warnings)
