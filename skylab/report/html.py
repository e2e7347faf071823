"""`skylab report`: one self-contained HTML file, rendered from the notes with Jinja2.

No network at view time: CSS, the SVG chart and the script are inline. Everything that comes from
trials (descriptions, diffs, logs, often written by an LLM) reaches the page either through Jinja's
autoescaping or as JSON that the script puts into the page with textContent, never as markup.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.experiment.durations import format_duration
from skylab.experiment.resources import resource_dir
from skylab.loop.judge import rules_for
from skylab.report.analysis import (
    FAILED,
    changed_params,
    chart_data,
    importances,
    page_text,
    param_names,
    table_rows,
    unchanged,
)
from skylab.report.details import DETAILS_CHUNK, details_chunks
from skylab.report.embed import packed, script_json
from skylab.report.history_view import HistoryRow, history_rows
from skylab.report.listing import fresh_of_best
from skylab.store.collector import collector_paused
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial, read_deferred_notes
from skylab.store.notes import Decision, Status
from skylab.strategy.research import ledger
from skylab.studies.ablation import Contribution, contributions
from skylab.studies.common import ABLATION, CONFIRM, FRESH, studied_trial
from skylab.studies.confirmation import ScaleCheck, scale_checks
from skylab.studies.fresh import FreshEstimate

FILLED_LISTS = 5000  # more trials, and the compare lists are filled when first used
COMPARE_TRIALS = 500  # up to this many trials, the report carries their files for comparing any two


@dataclass
class Headline:
    best: float | None
    best_trial: str
    baseline: float | None
    improvement: float | None
    improvement_pct: float | None
    trials: int
    kept: int
    reverted: int
    failed: int
    gpu_seconds: float
    llm_tokens: int
    best_sem: float | None = None  # the standard error of the best's mean (None: one measurement)
    best_n: int = 1  # measurements behind the best
    z: float | None = None  # the improvement over the baseline in standard errors (None: σ unknown)
    within_noise: bool = False  # z does not clear the experiment's `sigmas`
    fresh: str = ""  # the best's selected mean beside its mean on fresh seeds (see studies.fresh)


@dataclass
class ReportData:
    title: str
    metric: str
    direction: str
    tag: str | None
    generated_at: str
    live: bool
    headline: Headline
    chart_json: str  # the chart's data (analysis.chart_data), drawn by the page's script
    rows_json: str  # the trial table's rows as compact data (analysis.table_rows), paged by the script
    rows: list[HistoryRow]
    chain: list[dict[str, Any]]
    details_chunks: list[str]  # every trial's note, diff and log, DETAILS_CHUNK trials a chunk (see packed)
    details_chunk: int  # trials to a chunk of details_chunks (DETAILS_CHUNK)
    filled_lists: int  # up to this many trials the compare lists are filled at opening (FILLED_LISTS)
    extra: dict[str, Any] = field(default_factory=dict)
    ledger: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # the LLM's predictions, scored
    ablations: list[tuple[str, list[Contribution]]] = field(default_factory=list)  # trial -> its changes
    confirmations: list[ScaleCheck] = field(default_factory=list)
    params: list[str] = field(default_factory=list)  # the parameter columns of the trial table
    importances: dict[str, float] = field(default_factory=dict)  # parameter -> importance, largest first
    show_vram: bool = True  # False when no trial reports any VRAM (a CPU experiment)
    trial_width: int = 8  # characters of the longest trial name: its column is never cut
    files_json: str = "null"  # the editable files of every trial, deduplicated, for comparing two
    unchanged: dict[str, list[str]] = field(default_factory=dict)  # trial -> parameters as its parent's


def build_report_data(
    store: TrialStore, config: ExperimentConfig, tag: str | None = None, live: bool = False
) -> ReportData:
    history = store.load()
    read_deferred_notes(history.trials)  # the report reads every note: at once is faster
    trials = history.for_tag(tag)
    rows = history_rows(history, trials)
    searched = [row for row in rows if row.strategy not in STUDIES]  # a study's trials are no search
    rules = rules_for(config)
    studied = _studied(trials)
    params, same = param_names(rows), unchanged(rows)
    return ReportData(
        title=f"{config.name}{f' · {tag}' if tag else ''}",
        metric=config.metric,
        direction=config.direction,
        tag=tag,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        live=live,
        headline=_headline(searched, config, fresh_of_best(history, trials)),
        chart_json=script_json(chart_data(searched, config, latest_sigma(searched))),
        rows_json=script_json(table_rows(rows, params, same)),
        rows=rows,
        chain=_chain(history, trials, config),
        details_chunks=details_chunks(store, trials, DETAILS_CHUNK),
        details_chunk=DETAILS_CHUNK,
        filled_lists=FILLED_LISTS,
        ledger=ledger(history, tag),
        ablations=[(t.name, contributions(history, t, rules)) for t in studied[ABLATION]],
        confirmations=[check for t in studied[CONFIRM] for check in scale_checks(history, t, rules)],
        params=params,
        unchanged=same,
        importances=importances(searched, config),
        show_vram=any(r.peak_vram_mb for r in rows),
        trial_width=max((len(r.trial) for r in rows), default=8) + 3,
        files_json=_files_json(store, config, trials) if len(trials) <= COMPARE_TRIALS else "null",
    )


STUDIES = (ABLATION, CONFIRM, FRESH)


def _studied(trials: list[Trial]) -> dict[str, list[Trial]]:
    """The trials each kind of study was about (its notes' `ablation_of` / `confirmation_of`), in
    the order they were first studied."""
    by_name = {t.name: t for t in trials}
    found: dict[str, dict[str, Trial]] = {kind: {} for kind in STUDIES}
    for trial in trials:
        about = studied_trial(trial.note)
        if trial.note is not None and about in by_name:
            found[trial.note.strategy].setdefault(about, by_name[about])
    return {kind: list(studied.values()) for kind, studied in found.items()}


def latest_sigma(rows: list[HistoryRow]) -> float | None:
    """The σ the latest judged trial knew: the sharpest estimate of the noise in these rows."""
    return next((r.sigma for r in reversed(rows) if r.sigma is not None), None)


def _headline(rows: list[HistoryRow], config: ExperimentConfig, fresh: FreshEstimate | None) -> Headline:
    """The report's cards. With `fresh` (the best measured on fresh seeds), the gain over the
    baseline in standard errors is the fresh mean's: the selected one overstates it."""
    measured = [r for r in rows if r.value is not None and r.status == Status.SUCCESS.value]
    # The best is what was kept, never a lucky measurement the judge reverted: the best of all runs
    # when it is among these trials, else the best kept one.
    kept = [r for r in measured if r.decision == Decision.KEEP.value]
    best_row = next((r for r in kept if r.is_best), None)
    for row in kept if best_row is None else []:
        if best_row is None or config.is_better(row.value or 0.0, best_row.value):
            best_row = row
    baseline = measured[0].value if measured else None
    best = best_row.value if best_row else None
    improvement = pct = None
    if best is not None and baseline is not None:
        improvement = baseline - best if config.direction == "minimize" else best - baseline
        pct = 100 * improvement / abs(baseline) if baseline else None
    tokens = sum(r.llm_tokens for r in rows)
    z = None
    sigma = latest_sigma(rows)
    fresh = fresh if fresh is not None and best_row is not None and fresh.trial == best_row.trial else None
    if improvement is not None and best_row is not None and sigma and measured and baseline is not None:
        gain, n_best = improvement, len(best_row.measurements)
        if fresh is not None:
            gain = baseline - fresh.fresh if config.direction == "minimize" else fresh.fresh - baseline
            n_best = fresh.fresh_n
        spread = math.sqrt(1 / max(1, n_best) + 1 / max(1, len(measured[0].measurements)))
        z = gain / (sigma * spread)
    return Headline(
        best=best,
        best_trial=best_row.trial if best_row else "",
        baseline=baseline,
        improvement=improvement,
        improvement_pct=pct,
        trials=len(rows),
        kept=sum(r.decision == Decision.KEEP.value for r in rows),
        reverted=sum(r.decision == Decision.REVERT.value and r.status not in FAILED for r in rows),
        failed=sum(r.status in FAILED for r in rows),
        gpu_seconds=sum(r.wall_seconds or 0.0 for r in rows),
        llm_tokens=tokens,
        best_sem=best_row.sem if best_row is not None and len(best_row.measurements) > 1 else None,
        best_n=len(best_row.measurements) if best_row is not None else 1,
        z=z,
        within_noise=z is not None and z <= config.decision.sigmas,
        fresh=fresh.text() if fresh is not None else "",
    )


def _chain(history: History, trials: list[Trial], config: ExperimentConfig) -> list[dict[str, Any]]:
    tags = {t.tag for t in trials}
    tip = history.best
    if len(tags) == 1:
        kept = [t for t in trials if t.kept]
        tip = kept[-1].commit if kept else None
    story: list[dict[str, Any]] = []
    previous: float | None = None
    params: dict[str, Any] | None = None
    for trial in history.kept_chain(tip):
        delta = None if previous is None or trial.value is None else trial.value - previous
        now = dict(trial.note.params) if trial.note else {}
        story.append(
            {
                "trial": trial.name,
                "value": trial.value,
                "delta": delta,
                "description": page_text(trial.note.description) if trial.note else "",
                "changed": [] if params is None else changed_params(params, now),
            }
        )
        previous, params = trial.value, now
    return story


def _files_json(store: TrialStore, config: ExperimentConfig, trials: list[Trial]) -> str:
    """{"texts": [file text, ...], "trials": {trial: {path: index into texts}}}: every trial's editable
    files, each distinct text once, for the page to diff any two trials."""
    texts: dict[str, int] = {}
    by_trial: dict[str, dict[str, int]] = {}
    for trial in trials:
        files = {}
        for path in config.editable_files:
            content = store.changes.file_at(trial.commit, path)
            if content is None:
                continue
            text = content.decode("utf-8", "replace")
            files[path] = texts.setdefault(text, len(texts))
        by_trial[trial.name] = files
    return script_json({"texts": list(texts), "trials": by_trial})


def render_report(data: ReportData) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["duration"] = format_duration
    environment.filters["packed"] = packed
    return environment.get_template("report.html.j2").render(data=data)


def write_report(path: Path, html: str, make_folder: bool = False) -> None:
    """Atomic replace: a browser refreshing mid-write sees the old file or the new, never half.
    The folder is made only when asked (Skylab's own .skylab/reports): a path the researcher gave
    that names no existing folder is an error, as a typo should be. Errors name `path`."""
    if path.is_dir():
        raise SkylabError(f"{path} is a directory: give the report's file name (e.g. {path / 'report.html'})")
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise SkylabError(f"cannot write {path}: no folder {path.parent}")
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SkylabError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(html)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is for sharing
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise SkylabError(f"cannot write {path}: {exc.strerror or exc}") from None


def generate(
    store: TrialStore,
    config: ExperimentConfig,
    path: Path,
    tag: str | None = None,
    live: bool = False,
    make_folder: bool = True,
) -> Path:
    """Write the report of `tag` (all runs: None) to `path`; its folder is made when `make_folder`."""
    with collector_paused():  # rows, chart and details of every trial: many objects, no cycles
        html = render_report(build_report_data(store, config, tag, live))
    write_report(path, html, make_folder)
    return path
