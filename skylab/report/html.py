"""`skylab report`: one self-contained HTML file, rendered from the notes with Jinja2.

No network at view time: CSS, the SVG chart and the script are inline. Everything that comes from
trials (descriptions, diffs, logs, often written by an LLM) reaches the page either through Jinja's
autoescaping or as JSON that the script puts into the page with textContent, never as markup.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

from skylab.experiment.config import ExperimentConfig
from skylab.experiment.durations import format_duration
from skylab.experiment.resources import resource_dir
from skylab.loop.judge import rules_for
from skylab.report.history_view import HistoryRow, history_rows
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.store.notes import Decision, Status
from skylab.strategy.research import ledger
from skylab.studies.ablation import ABLATION, Contribution, contributions
from skylab.studies.confirmation import CONFIRM, ScaleCheck, scale_checks

CHART_WIDTH, CHART_HEIGHT = 900, 360
MARGIN = {"left": 72, "right": 20, "top": 16, "bottom": 44}
FAILED = {Status.CRASH.value, Status.TIMEOUT.value, Status.CONSTRAINT.value, Status.INTERRUPTED.value}


@dataclass
class ChartPoint:
    x: float
    y: float
    trial: str
    label: str
    kind: str  # kept | reverted | failed
    error: float = 0.0  # half the height of the ±se bar, in pixels (0: one measurement, or σ unknown)


@dataclass
class Chart:
    width: int
    height: int
    points: list[ChartPoint]
    best_path: str
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    plot: dict[str, float]
    metric: str
    failed_y: float
    band_path: str = ""  # ±σ of one measurement around the best-so-far line, once σ is known


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


@dataclass
class ReportData:
    title: str
    metric: str
    direction: str
    tag: str | None
    generated_at: str
    live: bool
    headline: Headline
    chart: Chart
    rows: list[HistoryRow]
    chain: list[dict[str, Any]]
    details_json: str
    extra: dict[str, Any] = field(default_factory=dict)
    ledger: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # the LLM's predictions, scored
    ablations: list[tuple[str, list[Contribution]]] = field(default_factory=list)  # trial -> its changes
    confirmations: list[ScaleCheck] = field(default_factory=list)


def build_report_data(
    store: TrialStore, config: ExperimentConfig, tag: str | None = None, live: bool = False
) -> ReportData:
    history = store.load()
    trials = history.for_tag(tag)
    rows = history_rows(history, trials)
    searched = [row for row in rows if row.strategy not in STUDIES]  # a study's trials are no search
    rules = rules_for(config)
    studied = _studied(trials)
    return ReportData(
        title=f"{config.name}{f' · {tag}' if tag else ''}",
        metric=config.metric,
        direction=config.direction,
        tag=tag,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        live=live,
        headline=_headline(trials, searched, config),
        chart=_chart(searched, config),
        rows=rows,
        chain=_chain(history, trials, config),
        details_json=_details_json(store, trials, rows),
        ledger=ledger(history, tag),
        ablations=[(t.name, contributions(history, t, rules)) for t in studied[ABLATION]],
        confirmations=[check for t in studied[CONFIRM] for check in scale_checks(history, t, rules)],
    )


STUDIES = (ABLATION, CONFIRM)


def _studied(trials: list[Trial]) -> dict[str, list[Trial]]:
    """The trials each kind of study was about (its notes' `ablation_of` / `confirmation_of`), in
    the order they were first studied."""
    by_name = {t.name: t for t in trials}
    found: dict[str, dict[str, Trial]] = {ABLATION: {}, CONFIRM: {}}
    for trial in trials:
        note = trial.note
        if note is None or note.strategy not in found:
            continue
        about = note.other.get("ablation_of" if note.strategy == ABLATION else "confirmation_of", "")
        if about in by_name:
            found[note.strategy].setdefault(about, by_name[about])
    return {kind: list(studied.values()) for kind, studied in found.items()}


def latest_sigma(rows: list[HistoryRow]) -> float | None:
    """The σ the latest judged trial knew: the sharpest estimate of the noise in these rows."""
    return next((r.sigma for r in reversed(rows) if r.sigma is not None), None)


def _headline(trials: list[Trial], rows: list[HistoryRow], config: ExperimentConfig) -> Headline:
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
    if improvement is not None and best_row is not None and sigma and measured:
        spread = math.sqrt(1 / max(1, len(best_row.measurements)) + 1 / max(1, len(measured[0].measurements)))
        z = improvement / (sigma * spread)
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
    )


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-12:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _chart(rows: list[HistoryRow], config: ExperimentConfig) -> Chart:
    plot: dict[str, float] = {
        "x0": MARGIN["left"],
        "x1": CHART_WIDTH - MARGIN["right"],
        "y0": MARGIN["top"],
        "y1": CHART_HEIGHT - MARGIN["bottom"],
    }
    values = [r.value for r in rows if r.value is not None and math.isfinite(r.value)]
    sigma = latest_sigma(rows)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad
    count = max(len(rows), 1)

    def x_of(i: int) -> float:
        return plot["x0"] + (plot["x1"] - plot["x0"]) * (i + 0.5) / count

    def y_of(v: float) -> float:
        return plot["y1"] - (plot["y1"] - plot["y0"]) * (v - low) / (high - low)

    failed_y = plot["y1"] - 6
    points, steps, best = [], [], None
    for i, row in enumerate(rows):
        ok = row.value is not None and math.isfinite(row.value) and row.status not in FAILED
        if ok and row.value is not None:
            kind = "kept" if row.decision == Decision.KEEP.value else "reverted"
            n = len(row.measurements)
            spread = f" ±{row.sem:.2g} (mean of {n})" if n > 1 and row.sem is not None else ""
            label = f"{row.trial}: {row.value:.6f}{spread} ({row.status}, {row.decision}) {row.description}"
            error = abs(y_of(row.value + row.sem) - y_of(row.value)) if n > 1 and row.sem else 0.0
            point = ChartPoint(
                round(x_of(i), 2), round(y_of(row.value), 2), row.trial, label, kind, round(error, 2)
            )
            points.append(point)
            if row.status == Status.SUCCESS.value and config.is_better(row.value, best):
                best = row.value
        else:
            label = f"{row.trial}: {row.status} {row.description}"
            points.append(ChartPoint(round(x_of(i), 2), failed_y, row.trial, label, "failed"))
        if best is not None:
            steps.append((x_of(i), best))
    band = ""
    if steps and sigma:
        top = _stairs([(x, y_of(v + sigma)) for x, v in steps], plot["x1"])
        bottom = _stairs([(x, y_of(v - sigma)) for x, v in steps], plot["x1"])
        band = "M" + " L".join(f"{x:.2f},{y:.2f}" for x, y in [*top, *reversed(bottom)]) + " Z"
    steps = [(x, y_of(v)) for x, v in steps]
    path = ""
    if steps:
        path = f"M{steps[0][0]:.2f},{steps[0][1]:.2f}"
        for (_, y_prev), (x, y) in itertools.pairwise(steps):
            path += f" H{x:.2f}" if y == y_prev else f" H{x:.2f} V{y:.2f}"
        path += f" H{plot['x1']:.2f}"
    x_ticks = [(round(x_of(i), 2), str(i + 1)) for i in _index_ticks(len(rows))]
    y_ticks = [(round(y_of(v), 2), f"{v:.4g}") for v in _nice_ticks(low, high)]
    chart = Chart(CHART_WIDTH, CHART_HEIGHT, points, path, x_ticks, y_ticks, plot, config.metric, failed_y)
    chart.band_path = band
    return chart


def _stairs(steps: list[tuple[float, float]], right: float) -> list[tuple[float, float]]:
    """The corners of a step line through `steps` (x ascending), held level to `right`."""
    corners: list[tuple[float, float]] = []
    for x, y in steps:
        if corners:
            corners.append((x, corners[-1][1]))
        corners.append((x, y))
    if corners:
        corners.append((right, corners[-1][1]))
    return corners


def _index_ticks(count: int) -> list[int]:
    """Zero-based positions of the trial-number ticks: every trial up to 10, round numbers after."""
    if count <= 10:
        return list(range(count))
    return [int(t) - 1 for t in _nice_ticks(1, count, 8) if t >= 1 and float(t).is_integer()]


def _chain(history: History, trials: list[Trial], config: ExperimentConfig) -> list[dict[str, Any]]:
    tags = {t.tag for t in trials}
    tip = history.best
    if len(tags) == 1:
        kept = [t for t in trials if t.kept]
        tip = kept[-1].commit if kept else None
    story: list[dict[str, Any]] = []
    previous: float | None = None
    for trial in history.kept_chain(tip):
        delta = None if previous is None or trial.value is None else trial.value - previous
        story.append(
            {
                "trial": trial.name,
                "value": trial.value,
                "delta": delta,
                "description": trial.note.description if trial.note else "",
            }
        )
        previous = trial.value
    return story


def _details_json(store: TrialStore, trials: list[Trial], rows: list[HistoryRow]) -> str:
    details = {}
    for trial, row in zip(trials, rows, strict=True):
        note = trial.note
        try:
            diff = store.diff_against_parent(trial)
        except (KeyError, ValueError):
            diff = ""
        details[row.trial] = {
            "note": note.format() if note else "(no note: interrupted before its result was recorded)",
            "diff": diff,
            "log": note.log_tail if note else "",
            "reason": note.reason if note else "",
        }
    # Inside <script type="application/json">: no "<" may survive, or "</script>" could end the block.
    return json.dumps(details, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def render_report(data: ReportData) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["duration"] = format_duration
    return environment.get_template("report.html.j2").render(data=data)


def write_report(path: Path, html: str) -> None:
    """Atomic replace: a browser refreshing mid-write sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(html)
    os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is for sharing
    os.replace(temporary, path)


def generate(
    store: TrialStore, config: ExperimentConfig, path: Path, tag: str | None = None, live: bool = False
) -> Path:
    write_report(path, render_report(build_report_data(store, config, tag, live)))
    return path
