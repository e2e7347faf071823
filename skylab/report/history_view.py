"""What `skylab history` shows: rows computed once, then rendered as a table, JSON or legacy TSV."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from skylab.store.history import History, Trial
from skylab.store.notes import Status
from skylab.terminal import cap_display, escape_controls


@dataclass
class HistoryRow:
    trial: str
    tag: str
    number: int
    commit: str
    status: str
    metric: str
    value: float | None
    delta: float | None
    peak_vram_mb: float | None
    decision: str
    strategy: str
    description: str
    parent: str
    started_at: str
    train_seconds: float | None
    wall_seconds: float | None
    params: dict[str, Any]
    is_best: bool
    llm_tokens: int = 0
    ran_by: str = ""
    other: dict[str, str] = field(default_factory=dict)
    measurements: list[float] = field(default_factory=list)  # every measurement; `value` is their mean
    sem: float | None = None  # standard error of the mean (None: one measurement, or σ unknown)
    sigma: float | None = None  # the run's σ of one measurement when the trial was judged
    verdict: str = ""  # how keep/revert was decided


def history_rows(history: History, trials: list[Trial]) -> list[HistoryRow]:
    """A row per trial, in the order given. Written for 100,000 trials: each note is read once,
    field by field, and the parent's value comes from one lookup table, of the parents' notes
    alone (a note is read from the history cache when first asked for: see `notechunks`)."""
    by_commit = history.by_commit()
    parents = {trial.note.parent for trial in trials if trial.note is not None}
    value_of = {p: t.value for p in parents if (t := by_commit.get(p)) is not None and t.note is not None}
    best, unreadable_notes = history.best, history.unreadable_notes
    rows = []
    for trial in trials:
        note, commit = trial.note, trial.commit
        unreadable = None if note is not None else unreadable_notes.get(commit)
        value = note.value if note is not None else None
        parent_value = value_of.get(note.parent) if note is not None else None
        other = note.other if note is not None else {}
        rows.append(
            HistoryRow(
                trial=trial.name,
                tag=trial.tag,
                number=trial.number,
                commit=commit,
                status="unreadable" if unreadable else trial.status.value,
                metric=note.metric if note else "",
                value=value,
                delta=None if value is None or parent_value is None else value - parent_value,
                peak_vram_mb=note.peak_vram_mb if note else None,
                decision=note.decision.value if note else "",
                strategy=note.strategy if note else "",
                description=(
                    note.description
                    if note
                    else f"(note unreadable: {unreadable})"
                    if unreadable
                    else "(no result recorded)"
                ),
                parent=trial.parent,
                started_at=note.started_at if note else "",
                train_seconds=note.train_seconds if note else None,
                wall_seconds=note.wall_seconds if note else None,
                params=dict(note.params) if note else {},
                is_best=commit == best,
                llm_tokens=_tokens(other),
                ran_by=other.get("ran_by", "") if other else "",
                other=other,
                measurements=note.samples() if note else [],
                sem=note.sem if note else None,
                sigma=note.sigma if note else None,
                verdict=note.verdict if note else "",
            )
        )
    return rows


def _tokens(other: dict[str, str]) -> int:
    if not other:  # most notes: a sweep's trials spend no tokens
        return 0
    return sum(int(other[k]) for k in ("tokens_in", "tokens_out") if other.get(k, "").isdigit())


def rows_as_json(rows: list[HistoryRow]) -> list[dict[str, Any]]:
    """The rows as JSON objects, for encoding at once: each row's own attributes (vars), not a
    copy (asdict deep-copies every field, 10x slower at 10,000 rows); do not change them."""
    return [vars(row) for row in rows]


_STATUS_STYLE = {
    Status.SUCCESS.value: "green",
    Status.CRASH.value: "red",
    Status.DIVERGED.value: "red",
    Status.TIMEOUT.value: "yellow",
    Status.INTERRUPTED.value: "magenta",
}


def history_table(rows: list[HistoryRow], title: str) -> Table:
    metric = next((r.metric for r in rows if r.metric), "metric")
    table = Table(title=title, title_justify="left", expand=False)
    teammates = len({r.ran_by for r in rows if r.ran_by}) > 1  # a shared repository: say who ran what
    for column, justify in [
        ("trial", "left"),
        ("commit", "left"),
        ("status", "left"),
        (metric, "right"),
        ("Δ parent", "right"),
        ("VRAM GB", "right"),
        ("decision", "left"),
        ("strategy", "left"),
        *([("ran by", "left")] if teammates else []),
        ("description", "left"),
    ]:
        wrap = column == "description"
        table.add_column(column, justify=justify, no_wrap=not wrap, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            shown_as_text(("★ " if row.is_best else "") + row.trial),
            row.commit[:8],
            Text(row.status, style=_STATUS_STYLE.get(row.status, "white")),
            format_mean(row.value, len(row.measurements), row.sem),
            _format_delta(row.delta),
            "" if row.peak_vram_mb is None else f"{row.peak_vram_mb / 1024:.1f}",
            Text("keep", style="bold green") if row.decision == "keep" else shown_as_text(row.decision),
            shown_as_text(row.strategy),
            *([shown_as_text(row.ran_by)] if teammates else []),
            shown_as_text(row.description),
            end_section=False,
        )
    return table


def shown_as_text(value: str) -> Text:
    """Text from a note as the terminal should show it: never read as markup (`[/]` is just text),
    control characters (escape sequences a note could carry) shown escaped, never sent raw, and
    cut to what a cell shows (see cap_display)."""
    return Text(escape_controls(cap_display(value), keep_newlines=True))


def format_mean(value: float | None, measurements: int, sem: float | None) -> str:
    """A metric as the terminal shows it: `2.344900` for one measurement, `2.3449 ±0.0041 (3)` for
    the mean of several (± the standard error, when σ is known); "" for none."""
    if value is None:
        return ""
    if measurements < 2:
        return f"{value:.6f}"
    spread = "" if sem is None else f" ±{sem:.2g}"
    return f"{value:.4f}{spread} ({measurements})"


def _format_delta(delta: float | None) -> str:
    if delta is None:
        return ""
    return f"{delta:+.6f}"


def legacy_tsv(rows: list[HistoryRow]) -> str:
    """autoresearch's results.tsv: commit, val_bpb, memory_gb, status (keep/discard/crash), description."""
    lines = ["commit\tval_bpb\tmemory_gb\tstatus\tdescription"]
    for row in rows:
        if row.status != Status.SUCCESS.value:
            legacy_status = "crash"
        else:
            legacy_status = "keep" if row.decision == "keep" else "discard"
        # An imported row goes back out as it came in: its own hash and status word.
        legacy_status = row.other.get("imported_status", legacy_status)
        value = 0.0 if row.value is None or legacy_status == "crash" else row.value
        memory = 0.0 if row.peak_vram_mb is None else row.peak_vram_mb / 1024
        description = " ".join(row.description.split())  # no tabs or newlines inside a field
        commit = row.other.get("imported_commit", row.commit)[:7]
        lines.append(f"{commit}\t{value:.6f}\t{memory:.1f}\t{legacy_status}\t{description}")
    return "\n".join(lines) + "\n"


def write_legacy_tsv(rows: list[HistoryRow], path: Path) -> None:
    path.write_text(legacy_tsv(rows), encoding="utf-8")
