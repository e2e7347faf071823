"""What the report computes from the trials before the browser draws it: the chart's data and its
robust default range, the swept parameters as columns, their importance (Optuna's PED-ANOVA
evaluator over the sweep's successful trials), and how each kept step changed the constants.
Pure apart from Optuna, which is given the trials as finished ones and asked for importances.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from skylab.experiment.config import ExperimentConfig
from skylab.loop.curves import CURVE_KEY, parse_summary
from skylab.report.history_view import HistoryRow
from skylab.store.notes import FAILED as FAILED_STATUSES
from skylab.store.notes import Decision, Status, budget_scale
from skylab.strategy.sweep import distribution
from skylab.terminal import cap_display

FAILED = {status.value for status in (*FAILED_STATUSES, Status.INTERRUPTED)}
MIN_TRIALS_FOR_IMPORTANCE = 4  # fewer successful sweep trials than this say nothing about importance
DESCRIPTION_CHARS = 160  # of a trial's description, in the chart's hover text
REPORT_TEXT_CHARS = 2000  # of a free-text field on the page (the note keeps it whole)...
REPORT_TEXT_LINES = 40  # ...and this many of its lines


def page_text(text: str) -> str:
    """A free-text field (a description, a reason) as the page shows it: cut to REPORT_TEXT_CHARS
    on REPORT_TEXT_LINES lines, so a teammate's 30 MB description does not become the page."""
    return cap_display(text, REPORT_TEXT_CHARS, REPORT_TEXT_LINES)


def robust_range(kept: Sequence[float], successes: Sequence[float]) -> tuple[float, float]:
    """The y range a chart opens with: every kept value and the bulk of the successes (those inside
    Tukey's fences, 1.5 IQR beyond the quartiles), padded by 5 %. An outlier (a diverged run at 5.8
    beside gains from 3.497 to 3.471) lies outside it and is drawn clipped to the edge, so the gains
    fill the chart. (0, 1) when there is nothing to show."""
    values = [v for v in successes if math.isfinite(v)]
    inside = values
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4)
        spread = q3 - q1
        inside = [v for v in values if q1 - 1.5 * spread <= v <= q3 + 1.5 * spread]
    shown = [v for v in kept if math.isfinite(v)] + inside
    if not shown:
        return 0.0, 1.0
    low, high = min(shown), max(shown)
    if high - low < 1e-12:
        half = abs(low) * 0.01 or 0.5
        return low - half, high + half
    pad = (high - low) * 0.05
    return low - pad, high + pad


def chart_data(rows: list[HistoryRow], config: ExperimentConfig, sigma: float | None) -> dict[str, Any]:
    """The chart as compact JSON for the page's script: one [value, sem, kind, trial, text] per trial
    in order (value None for a failure, drawn in its own lane), the robust range, the best value and
    the run's σ."""
    points: list[list[Any]] = []
    kept, successes = [], []
    best: float | None = None
    for row in rows:
        usable = row.value is not None and math.isfinite(row.value) and row.status not in FAILED
        if usable and row.value is not None:
            kind = "kept" if row.decision == Decision.KEEP.value else "reverted"
            successes.append(row.value)
            if kind == "kept":
                kept.append(row.value)
                if row.status == Status.SUCCESS.value and config.is_better(row.value, best):
                    best = row.value
            sem = row.sem if len(row.measurements) > 1 else None
            points.append([row.value, sem, kind, row.trial, _hover(row)])
        else:
            points.append([None, None, "failed", row.trial, _hover(row)])
    low, high = robust_range(kept, successes)
    return {
        "metric": config.metric,
        "direction": config.direction,
        "points": points,
        "range": [low, high],
        "best": best,
        "sigma": sigma,
        "curves": reference_curves(rows),
    }


def reference_curves(rows: list[HistoryRow]) -> dict[str, list[Any]]:
    """The curves a trial's own is drawn over in its details: the best's and the starting point's
    (name -> [trial, loss at CURVE_AT of the budget]), each when its note has a curve summary."""
    usable = [r for r in rows if r.status == Status.SUCCESS.value and r.value is not None]
    best = next((r for r in usable if r.is_best), None)
    curves: dict[str, list[Any]] = {}
    for name, row in (("start", usable[0] if usable else None), ("best", best)):
        curve = parse_summary(row.other.get(CURVE_KEY, "")) if row is not None else None
        if row is not None and curve is not None:
            curves[name] = [row.trial, list(curve)]
    return curves


def _hover(row: HistoryRow) -> str:
    text = row.description if len(row.description) <= DESCRIPTION_CHARS else row.description[:159] + "…"
    if row.value is None or row.status in FAILED:
        return f"{row.status}: {text}"
    n = len(row.measurements)
    spread = f" ±{row.sem:.2g} (mean of {n})" if n > 1 and row.sem is not None else ""
    return f"{row.value:.6f}{spread} · {row.decision} · {text}"


def param_names(rows: list[HistoryRow]) -> list[str]:
    """The parameters any trial records, in first-seen order: the table's extra columns."""
    return list(dict.fromkeys(name for row in rows for name in row.params))


def changed_params(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Each parameter whose value differs, as (name, from, to); a missing value reads as —."""
    return [
        (name, _shown(before.get(name)), _shown(after.get(name)))
        for name in dict.fromkeys([*before, *after])
        if before.get(name) != after.get(name)
    ]


def _shown(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def importances(rows: list[HistoryRow], config: ExperimentConfig) -> dict[str, float]:
    """How much each swept parameter matters to the metric, by Optuna's PED-ANOVA evaluator over the
    sweep's successful trials at the experiment's budget (a confirmation at K× is another problem);
    most important first. Empty without a sweep, or with fewer than MIN_TRIALS_FOR_IMPORTANCE
    trials that set every parameter."""
    sweep = config.sweep
    if sweep is None or not sweep.parameters:
        return {}
    import optuna

    distributions = {space.name: distribution(space) for space in sweep.parameters}
    finished = []
    for row in rows:
        if row.status != Status.SUCCESS.value or row.value is None or not math.isfinite(row.value):
            continue
        if budget_scale(row.other) != 1 or not set(distributions) <= set(row.params):
            continue
        params = {name: row.params[name] for name in distributions}
        try:
            finished.append(
                optuna.trial.create_trial(params=params, distributions=distributions, value=row.value)
            )
        except (ValueError, TypeError):
            continue  # a point outside today's search space
    if len(finished) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=config.direction)
    study.add_trials(finished)
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        )
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
    return {name: float(value) for name, value in found.items()}


def unchanged(rows: list[HistoryRow]) -> dict[str, list[str]]:
    """For each trial, the parameters whose value is its parent's (the "only changed" view blanks
    them, so each row shows what that trial changed)."""
    by_commit = {row.commit: row for row in rows}
    same: dict[str, list[str]] = {}
    for row in rows:
        parent = by_commit.get(row.parent)
        if parent is not None:
            same[row.trial] = [k for k, v in row.params.items() if parent.params.get(k) == v]
    return same


ROW_COLUMNS = (
    "index", "trial", "commit", "status", "value", "delta", "vram", "decision", "strategy", "description",
)  # fmt: skip


def table_rows(rows: list[HistoryRow], params: list[str], same: dict[str, list[str]]) -> dict[str, Any]:
    """The trial table as compact data: the column names (ROW_COLUMNS, then p0, p1, ... for the
    parameters), and per trial its values in that order, then whether it is the best and which
    parameter columns hold its parent's value."""
    columns = [*ROW_COLUMNS, *(f"p{k}" for k in range(len(params)))]
    packed = []
    for index, row in enumerate(rows, start=1):
        kept = set(same.get(row.trial, []))
        values: list[Any] = [
            index, row.trial, row.commit, row.status, row.value, row.delta, row.peak_vram_mb,
            row.decision, cap_display(row.strategy), page_text(row.description),
        ]  # fmt: skip
        values += [row.params.get(name) for name in params]
        values += [row.is_best, [k for k, name in enumerate(params) if name in kept]]
        packed.append(values)
    return {"columns": columns, "rows": packed}
