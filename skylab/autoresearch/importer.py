"""`skylab import RESULTS_TSV`: an autoresearch run's rows become the trials of one tag, in row
order, written through the store like any trial.

No row is dropped: a row whose commit is not in this repository (discards that were reset away) or
whose short hash is ambiguous becomes a trial on a placeholder commit holding its parent's files,
its note saying `imported_commit` and `commit_missing: true`. A trial's `started_at` is when its
row's commit was made (a placeholder's: the import's time). A commit cell is read as an object id
only, never as a branch or tag name. The whole file is read and checked before anything is written,
so a malformed file leaves the repository as it was.

The rows are written as one batch (trial refs, then notes, then run branch and best), behind a
marker file in `.git/skylab/imports/` that names the file: a killed import leaves the marker, history
says the run is incomplete, and importing the same file again finishes it (a file that grew since,
its first rows those imported, adds the rest the same way). The best moves only to a row that beats
the best of all runs, as it would for any trial.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from skylab.autoresearch.results_tsv import ImportFormatError, ResultRow, parse_results
from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.store.gitstore import TrialStore, trial_commit
from skylab.store.history import History, Trial
from skylab.store.notes import Decision, Status, TrialNote, iso_utc
from skylab.store.refs import TrialRef, check_tag

IMPORTED = "imported"  # the strategy name of an imported trial
MARKERS = "imports"  # under .git/skylab: one file per run whose import has not finished


@dataclass
class ImportOutcome:
    tag: str
    trials: int
    missing: int  # rows whose commit was not found: placeholders
    best: str  # the name of the trial that became the best ("" when no row beat it)
    warnings: list[str]
    already: bool = False  # the same file was imported into this tag before: nothing was written
    resumed: int = 0  # rows a killed import of the same file had written already
    best_stays: str = ""  # the best's name, when it was one before and no row beat it
    counts: dict[str, int] = field(default_factory=dict)  # rows kept, reverted, with no value


@dataclass(frozen=True)
class UnfinishedImport:
    tag: str
    path: str  # the file being imported, as given
    rows: int  # how many rows it has


def read_results(
    path: Path, metric: str, statuses: dict[str, str] | None = None, skip_bad_rows: bool = False
) -> tuple[list[ResultRow], list[str]]:
    """The file's rows, or one SkylabError naming the file (and the line) and the problem (see
    results_tsv.parse_results). Only a regular file is read: a FIFO or a device would hang the
    import or never end."""
    try:
        kind = os.stat(path).st_mode
        if not stat.S_ISREG(kind):
            raise SkylabError(f"{path}: not a regular file (a results.tsv is a text file)")
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SkylabError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise SkylabError(f"{path}: {exc.strerror or exc}") from None
    try:
        text = text.removeprefix("\ufeff")  # a BOM, as spreadsheets write
        return parse_results(text, metric, statuses, skip_bad_rows)
    except ImportFormatError as exc:
        raise ImportFormatError(f"{path}: {exc}") from None


def import_results(
    store: TrialStore,
    config: ExperimentConfig,
    path: Path,
    tag: str,
    metric: str | None = None,
    statuses: dict[str, str] | None = None,
    skip_bad_rows: bool = False,
) -> ImportOutcome:
    """Import `path` into run `tag` (see the module's docstring), its status words read through
    `statuses` (default: results_tsv.DEFAULT_STATUS_MAP): refused when `tag` holds other trials,
    a no-op when it holds this very import already, finished when it holds the start of it."""
    check_tag(tag)
    if metric is not None and metric != config.metric:
        raise SkylabError(
            f"--metric {metric}: this experiment's metric is {config.metric} (experiment.toml), and "
            "imported trials are judged against its other trials: import a column of that metric"
        )
    rows, warnings = read_results(path, config.metric, statuses, skip_bad_rows)
    if not rows:
        raise SkylabError(f"{path}: no rows to import")
    history = store.load()
    existing = sorted(history.for_tag(tag), key=lambda t: t.number)
    marker = _marker(store, tag)
    if existing and not marker.exists() and _same_import(existing, rows):
        best = history.by_commit().get(store.best() or "")
        return ImportOutcome(tag, len(rows), 0, best.name if best else "", [], already=True)
    done = _imported_prefix(existing, rows)
    if done is None:
        raise SkylabError(f"run {tag} already has {len(existing)} trials: import into a new tag (--tag)")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"path": str(path), "rows": len(rows)}) + "\n", encoding="utf-8")
    outcome = _write(store, config, history, rows, done, tag)
    marker.unlink()
    outcome.warnings = warnings
    outcome.counts = row_counts(rows)
    return outcome


def row_times(made: list[int | None], now: datetime) -> list[datetime]:
    """When each row's trial started: its commit's time (seconds since the epoch; None for a
    placeholder), made strictly increasing in row order, 1 ms apart at least, because history
    is ordered by start time and the rows' order is the run's. A placeholder starts 1 ms after
    the row before it (1 ms before the first dated row when none is before it); rows with no
    commit time at all start at `now`. Pure."""
    step = timedelta(milliseconds=1)
    dated = [None if t is None else datetime.fromtimestamp(t, timezone.utc) for t in made]
    first = next((i for i, t in enumerate(dated) if t is not None), None)
    times: list[datetime] = []
    for index, when in enumerate(dated):
        if times:
            when = max(when or times[-1], times[-1] + step)
        elif when is None:
            when = now if first is None else (dated[first] or now) - (first - index) * step
        times.append(when)
    return times


def row_counts(rows: list[ResultRow]) -> dict[str, int]:
    """How the rows import: kept, reverted (discards with a value), without a value (crashes and
    placeholders)."""
    kept = sum(row.outcome == "keep" and row.value is not None for row in rows)
    failed = sum(row.value is None for row in rows)
    return {"kept": kept, "reverted": len(rows) - kept - failed, "with no value": failed}


def unfinished_imports(store: TrialStore) -> list[UnfinishedImport]:
    """The imports of this clone that were stopped before they finished, by tag."""
    folder = store.git.skylab_dir / MARKERS
    found = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            saved = json.loads(entry.read_text(encoding="utf-8"))
            found.append(UnfinishedImport(entry.name, str(saved["path"]), int(saved["rows"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a marker we wrote
    return found


def incomplete_import_line(history: History, unfinished: UnfinishedImport) -> str:
    """What history says of a run whose import was stopped, and how to finish it."""
    recorded = sum(
        t.note is not None and t.note.strategy == IMPORTED for t in history.for_tag(unfinished.tag)
    )
    return (
        f"run {unfinished.tag} is incomplete: its import stopped with {recorded} of {unfinished.rows} "
        f"rows recorded; `skylab import {unfinished.path} --tag {unfinished.tag}` finishes it"
    )


def _marker(store: TrialStore, tag: str) -> Path:
    return store.git.skylab_dir / MARKERS / tag


def _row_key(row: ResultRow) -> tuple[str, str, float | None, str]:
    return row.commit, IMPORTED, row.value, row.description


def _note_key(note: TrialNote) -> tuple[str | None, str, float | None, str]:
    return note.other.get("imported_commit"), note.strategy, note.value, note.description


def _same_import(existing: list[Trial], rows: list[ResultRow]) -> bool:
    return len(existing) == len(rows) and all(
        t.note is not None and _note_key(t.note) == _row_key(row)
        for t, row in zip(existing, rows, strict=True)
    )


def _imported_prefix(existing: list[Trial], rows: list[ResultRow]) -> list[Trial] | None:
    """The trials of an import of `rows` that stopped before it finished: every trial of the tag,
    in order, is that row's (its note written, or not yet: no note or one that says interrupted).
    None when the tag holds anything else."""
    if len(existing) > len(rows):
        return None
    for number, (trial, row) in enumerate(zip(existing, rows, strict=False), start=1):
        if trial.number != number:
            return None
        note = trial.note
        unfinished = note is None or (note.status is Status.INTERRUPTED and note.strategy != IMPORTED)
        if not unfinished and (note is None or _note_key(note) != _row_key(row)):
            return None
    return existing


def _write(
    store: TrialStore,
    config: ExperimentConfig,
    history: History,
    rows: list[ResultRow],
    done: list[Trial],
    tag: str,
) -> ImportOutcome:
    """Every row's trial (those in `done` reused), then one batch write."""
    known = history.by_commit()
    used: set[str] = set(known) - {t.commit for t in done}
    best = store.best()
    best_value = history.value_of(best) if _same_metric(known.get(best or ""), config.metric) else None
    new_best: str | None = None
    best_name = ""
    found_commits = [store.git.commit_by_id(row.commit) for row in rows]
    made = [None if found is None else store.git.commit_time(found) for found in found_commits]
    times = row_times(made, datetime.now(timezone.utc))
    parent = store.baseline() or store.start_point()
    tip: str | None = None
    new_refs: list[TrialRef] = []
    notes: list[tuple[TrialRef, TrialNote]] = []
    missing = 0
    for index, row in enumerate(rows):
        number = index + 1
        found = found_commits[index]
        placeholder = found is None or found in used
        missing += found is None
        if index < len(done):
            ref = TrialRef(tag, number, done[index].commit)
            if placeholder:
                is_row = store.git.commit_summary(ref.commit) == (found or parent, _message(row))
            else:
                is_row = ref.commit == found
            if not is_row:
                raise SkylabError(
                    f"run {tag} holds trial {ref.name}, which is not this file's row {row.line}"
                )
        else:
            commit = found
            if placeholder or commit is None:
                tree = store.git.tree_of(found or parent)
                assert tree is not None
                commit = trial_commit(store.git, tag, number, tree, found or parent, _message(row))
            ref = TrialRef(tag, number, commit)
            new_refs.append(ref)
        used.add(ref.commit)
        written = done[index].note if index < len(done) else None
        if written is not None and written.strategy == IMPORTED:
            note = written  # a killed import wrote it: kept as it is
        else:
            note = _note(row, tag, number, config.metric, parent, times[index])
            if found is None:
                note.other["commit_missing"] = "true"
            notes.append((ref, note))
        if note.decision is Decision.KEEP:
            parent = tip = ref.commit
            if note.value is not None and config.is_better(note.value, best_value):
                best_value, new_best, best_name = note.value, ref.commit, ref.name
    store.record_batch(tag, new_refs, notes, tip, new_best)
    stays = known[best].name if new_best is None and best is not None and best in known else ""
    return ImportOutcome(tag, len(rows), missing, best_name, [], resumed=len(done), best_stays=stays)


def _same_metric(trial: Trial | None, metric: str) -> bool:
    return trial is not None and trial.note is not None and trial.note.metric == metric


def _message(row: ResultRow) -> str:
    """The summary line of a placeholder commit (as `trial_commit` strips it)."""
    return (row.description or f"imported {row.commit}").strip() or "skylab trial"


def _note(row: ResultRow, tag: str, number: int, metric: str, parent: str, started: datetime) -> TrialNote:
    note = TrialNote.begun(tag, number, metric, parent, iso_utc(started), row.description)
    note.strategy = IMPORTED
    note.peak_vram_mb = None if row.memory_gb is None else row.memory_gb * 1024
    note.summary = dict(row.extra)
    note.other["imported_commit"] = row.commit
    if row.status.lower() != row.outcome:
        note.other["imported_status"] = row.status
    if row.value is None:
        placeholder = "" if row.outcome == "crash" else " with no value (0.000000, 0.0 GB)"
        note.status, note.reason = Status.CRASH, f"imported as {row.status}{placeholder}"
    else:
        note.value, note.measurements = row.value, [row.value]
    kept = row.outcome == "keep" and row.value is not None
    note.decision = Decision.KEEP if kept else Decision.REVERT
    return note


def default_import_tag(branch: str | None) -> str:
    """`autoresearch/mar5` -> `mar5`, the way autoresearch names its runs; else `imported`."""
    name = (branch or "").removeprefix("refs/heads/")
    if name.startswith("autoresearch/") and re.fullmatch(r"[A-Za-z0-9._-]+", name.split("/", 1)[1]):
        return name.split("/", 1)[1]
    return "imported"
