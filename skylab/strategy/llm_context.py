"""What the model is told before it proposes: what a strong researcher would want on one page.

The rules, the experiment file, the editable files as they stand in the current best, the frozen
files for reference, a compact history (recent and best trials), the diffs of the last kept
improvements and the last failures with their log tails. Sections are cut to a character budget,
the least essential first (frozen files, then older history).
"""

from __future__ import annotations

from skylab.experiment.durations import format_duration
from skylab.store.notes import Decision, Status
from skylab.strategy.base import ProposalContext

RECENT_TRIALS = 20
BEST_TRIALS = 5
KEPT_DIFFS = 3
FAILURES = 3


FINISH = ", then call `finish` with a one-line description of the change and your hypothesis."


def rules(context: ProposalContext, finish_tool: bool = True) -> str:
    config = context.config
    better = "lower" if config.direction == "minimize" else "higher"
    vram = f" Peak GPU memory must stay under {config.max_vram_gb:g} GB." if config.max_vram_gb else ""
    return (
        "You are an ML researcher improving a pretraining experiment, one change per trial. "
        f"Each trial trains for a fixed {format_duration(config.time_budget_seconds)} of wall-clock time, "
        f"so a change only helps if it gives a {better} {config.metric} within that same time.{vram} "
        f"Trials whose {config.metric} is not better than the current best are reverted by the "
        "orchestrator, which alone decides; crashes and timeouts waste a trial.\n"
        f"{_noise_rule(context)}"
        f"You may edit only: {', '.join(config.editable_files)}. "
        f"Read-only reference: {', '.join(config.frozen_files) or 'none'}.\n"
        "Use the tools to read and edit files. Make one focused change with a clear hypothesis, keep the "
        "code runnable, do not repeat a change from the history"
        + (
            ", then call `finish` with a one-line description of the change and your hypothesis."
            if finish_tool
            else "."
        )
    )


def _noise_rule(context: ProposalContext) -> str:
    """What counts as real: the run's σ and the rule, so the model does not chase noise."""
    decision = context.config.decision
    if decision.noise_samples == 1 and decision.confirm == 0 and decision.sigmas == 0:
        return ""
    notes = [t.note for t in context.history.for_tag(context.tag) if t.note is not None]
    sigma = next((n.sigma for n in reversed(notes) if n.sigma is not None), None)
    measured = (
        f"One measurement varies by σ = {sigma:.4g} ({context.config.metric}) between seeds and runs. "
        if sigma
        else "Repeated measurements of this experiment have been identical so far. "
        if sigma == 0.0
        else ""
    )
    return (
        f"{measured}A trial whose first measurement beats the best is measured {decision.confirm} more "
        f"times; it is kept only when its mean beats the best's mean by more than {decision.sigmas:g} "
        f"standard errors{f' and by at least {decision.min_delta:g}' if decision.min_delta else ''}. "
        "Changes smaller than the noise cannot be kept, so prefer ideas with a clear expected effect.\n"
    )


def _history_table(context: ProposalContext) -> str:
    trials = [t for t in context.history.trials if t.note is not None]
    by_commit = context.history.by_commit()
    measured = [t for t in trials if t.value is not None and t.status is Status.SUCCESS]
    reverse = context.config.direction == "maximize"
    best = sorted(measured, key=lambda t: t.value or 0.0, reverse=reverse)[:BEST_TRIALS]
    chosen = {t.commit: t for t in [*best, *trials[-RECENT_TRIALS:]]}
    ordered = [t for t in trials if t.commit in chosen]
    lines = [f"trial | {context.config.metric} | delta vs parent | status | decision | description"]
    for trial in ordered:
        note = trial.note
        assert note is not None
        parent = by_commit.get(note.parent)
        value = "" if note.value is None else f"{note.value:.6f}"
        if len(note.measurements) > 1:
            spread = f" ± {note.sem:.2g}" if note.sem is not None else ""
            value += f"{spread} (mean of {len(note.measurements)})"
        delta = ""
        if note.value is not None and parent is not None and parent.value is not None:
            delta = f"{note.value - parent.value:+.6f}"
        marker = " (best)" if trial.commit == context.history.best else ""
        lines.append(
            f"{trial.name}{marker} | {value} | {delta} | {note.status.value} | {note.decision.value} | "
            f"{' '.join(note.description.split())[:200]}"
        )
    skipped = len(trials) - len(ordered)
    if skipped:
        lines.append(f"({skipped} older trials not shown)")
    return "\n".join(lines)


def _kept_diffs(context: ProposalContext) -> str:
    kept = [t for t in context.history.trials if t.note is not None and t.note.decision is Decision.KEEP]
    parts = []
    for trial in kept[-KEPT_DIFFS:]:
        diff = context.diff_of(trial)
        if diff:
            parts.append(f"### {trial.name}: {trial.note.description if trial.note else ''}\n{diff}")
    return "\n".join(parts)


def _failures(context: ProposalContext) -> str:
    failed = [
        t
        for t in context.history.trials
        if t.note is not None and t.note.status in (Status.CRASH, Status.TIMEOUT, Status.CONSTRAINT)
    ]
    parts = []
    for trial in failed[-FAILURES:]:
        note = trial.note
        assert note is not None
        tail = "\n".join(note.log_tail.splitlines()[-15:])
        parts.append(
            f"### {trial.name} ({note.status.value}): {note.description}\n{note.reason}\n{tail}".rstrip()
        )
    return "\n".join(parts)


def _file_section(context: ProposalContext, names: tuple[str, ...], heading: str) -> str:
    parts = []
    for name in names:
        path = context.workdir / name
        if path.is_file():
            parts.append(f"### {name}\n```\n{path.read_text(encoding='utf-8', errors='replace')}\n```")
    return f"## {heading}\n" + "\n".join(parts) if parts else ""


def _in_flight(context: ProposalContext) -> str:
    """What other workers are training now: propose something else, not the same idea twice."""
    if not context.pending:
        return ""
    lines = [f"- {p.name}: {p.description}" for p in context.pending]
    return "## Being tried right now by other workers (do not propose these again)\n" + "\n".join(lines)


def build_context(context: ProposalContext, budget_chars: int) -> str:
    config = context.config
    essential = [
        "## Experiment file (experiment.toml)\n```toml\n" + config.path.read_text(encoding="utf-8") + "\n```",
        _file_section(context, config.editable_files, "Editable files (the current best)"),
        _in_flight(context),
    ]
    optional = [
        ("## History (recent and best trials)\n" + _history_table(context)) if context.history.trials else "",
        ("## Last kept improvements\n" + _kept_diffs(context)) if _kept_diffs(context) else "",
        ("## Last failures (do not repeat them)\n" + _failures(context)) if _failures(context) else "",
        _file_section(context, config.frozen_files, "Frozen files (read-only reference)"),
    ]
    text = "\n\n".join(part for part in essential if part)
    for part in optional:
        if not part:
            continue
        room = budget_chars - len(text) - 2
        if room <= 200:
            break
        text += "\n\n" + (
            part if len(part) <= room else part[: room - 60] + "\n... [cut to fit the context budget]"
        )
    return text
