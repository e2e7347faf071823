"""`skylab history`: the trials a researcher asked for (a run, the kept chain), their rows or their
JSON, and the warnings to show beside them; the command line only prints what this returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from skylab.autoresearch.importer import incomplete_import_line, unfinished_imports
from skylab.report.history_json import history_json
from skylab.report.history_view import HistoryRow, history_rows, write_legacy_tsv
from skylab.store.collector import collector_paused
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.store.refs import run_branch
from skylab.studies.fresh import FreshEstimate, fresh_estimate


@dataclass
class HistoryListing:
    """What `skylab history` prints: `json` (with --json), else the table of `rows` under `title`
    (or `empty` when there are none), with `warnings` on stderr and `exported` once --export wrote
    the file."""

    title: str
    rows: list[HistoryRow] = field(default_factory=list)
    json: bytes | None = None
    warnings: list[str] = field(default_factory=list)
    exported: str = ""
    empty: str = ""
    fresh: FreshEstimate | None = None  # the best's selected and fresh means, when both are listed


def history_listing(
    store: TrialStore, tag: str | None, best: bool, as_json: bool, export: Path | None
) -> HistoryListing:
    """The trials of run `tag` (every run's when None), or with `best` only the kept chain to the
    best (of the run, with a tag). A StoreError for a tag no run has.

    A command ends once its output is out, so what it builds (100,000 trials: many small objects,
    no cycles) is frozen out of the garbage collector's sight (see collector_paused)."""
    with collector_paused(freeze=True):
        loaded = store.load()
        loaded.require_tag(tag)
        if best:
            trials = loaded.kept_chain(store.git.ref_target(run_branch(tag)) if tag else loaded.best)
        else:
            trials = loaded.for_tag(tag)
        title = f"{'Kept chain' if best else 'Trials'}{f' of {tag}' if tag else ''}"
        listing = HistoryListing(title)
        listing.warnings += [
            incomplete_import_line(loaded, unfinished)
            for unfinished in unfinished_imports(store)
            if tag in (None, unfinished.tag)
        ]
        if export is not None:
            write_legacy_tsv(history_rows(loaded, trials), export)
            listing.exported = f"wrote {len(trials)} trials to {export}"
        if as_json:  # the rows' JSON, kept between calls (see history_json)
            listing.json = history_json(store, loaded, trials)
            return listing
        if export is not None:
            return listing
        listing.rows = history_rows(loaded, trials)
        listing.warnings += [
            f"note on {c[:10]} is unreadable: {why}" for c, why in loaded.unreadable_notes.items()
        ]
        listing.warnings += [f"{ref} is left out of history: {why}" for ref, why in loaded.stray_refs.items()]
        listing.fresh = fresh_of_best(loaded, trials)
        listing.title += f" ({len(listing.rows)})"
        what = f"run '{tag}'" if tag else "this repository"
        listing.empty = f"No trials in {what} yet. Start one with `skylab run`."
        return listing


def fresh_of_best(history: History, trials: list[Trial]) -> FreshEstimate | None:
    """The best's selected mean beside its latest measurement on fresh seeds, when `trials` hold
    both (see studies.fresh)."""
    best = history.by_commit().get(history.best or "")
    if best is None or all(t.commit != best.commit for t in trials):
        return None
    return fresh_estimate(trials, best)
