"""What the model is told before it proposes: what a strong researcher would want on one page.

The rules, the experiment file, the editable files as they stand in the current best, an outline
of the frozen files (the model reads them whole with `read_file`), a compact history (recent and
best trials), the diffs of the last kept improvements and the last failures with their log tails.
Sections are cut to a character budget, the least essential first (frozen files, then older
history).
"""

from __future__ import annotations

import ast
import math

from skylab.experiment.durations import format_duration
from skylab.store.history import Trial
from skylab.store.notes import FAILED, Decision, Status
from skylab.strategy.base import ProposalContext
from skylab.strategy.research import (
    MEMORY_CHARS,
    consolidation_due,
    ledger_section,
    memory_section,
    near_misses_section,
    plateau_line,
    trials_since_keep,
)

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
    bar = f" ({decision.filter_sigmas * sigma:.4g})" if sigma else ""
    screen = f"by more than {decision.filter_sigmas:g}σ{bar}" if decision.filter_sigmas > 0 else "at all"
    early = (
        f" (kept early once its gain clears {decision.early_sigmas:g} standard errors, stopped once it "
        "can no longer clear the bar)"
        if decision.confirm > 1 and math.isfinite(decision.early_sigmas)
        else ""
    )
    return (
        f"{measured}A trial's first measurement must beat the best's {screen}, or it is reverted at once; "
        f"one that does is measured up to {decision.confirm} more times{early} and kept only when its "
        f"mean beats the best's by more than {decision.sigmas:g} standard errors"
        f"{f' and by at least {decision.min_delta:g}' if decision.min_delta else ''}. "
        f"{_beside(decision.interleave)}"
        "Changes smaller than the noise cannot be kept, so prefer ideas with a clear expected effect.\n"
    )


def _beside(interleave: str) -> str:
    """The pairing rule in one sentence ("" when off): why a slower or faster machine gains nothing."""
    if interleave == "never":
        return ""
    when = (
        "when a trial's throughput differs from the best's"
        if interleave == "auto"
        else "beside every trial that passes the first measurement"
    )
    return (
        f"The best is measured again {when}, seed for seed, and the two are compared on those pairs, "
        "so a change in the machine's speed neither helps nor hurts a trial. "
    )


def _row(context: ProposalContext, trial: Trial, parent: Trial | None) -> str:
    """One trial in one line: value (mean ± se when measured several times), change against its
    parent, status with its reason, decision, what it trained (steps, MFU, parameters, VRAM
    against the limit) and its description."""
    note = trial.note
    assert note is not None
    marks = [m for m, on in (("best", trial.commit == context.history.best), ("kept", trial.kept)) if on]
    value = "" if note.value is None else f"{note.value:.6f}"
    if len(note.measurements) > 1:
        spread = f" ± {note.sem:.2g}" if note.sem is not None else ""
        value += f"{spread} (mean of {len(note.measurements)})"
    delta = ""
    if note.value is not None and parent is not None and parent.value is not None:
        delta = f"{note.value - parent.value:+.6f}"
    status = note.status.value
    if note.status is not Status.SUCCESS and note.reason:
        status += f" ({' '.join(note.reason.split())[:120]})"
    trained = []
    for key, unit in (("num_steps", " steps"), ("mfu_percent", "% MFU"), ("num_params_M", "M params")):
        if isinstance(note.summary.get(key), int | float):
            trained.append(f"{note.summary[key]:g}{unit}")
    if note.peak_vram_mb:
        limit = context.config.max_vram_gb
        trained.append(f"{note.peak_vram_mb / 1024:.1f}" + (f"/{limit:g}" if limit else "") + " GB")
    if note.other.get("loss_curve"):
        trained.append(f"loss at 25/50/75/100 % of its steps {note.other['loss_curve']}")
    name = trial.name + (f" ({', '.join(marks)})" if marks else "")
    description = " ".join(note.description.split())[:200]
    return " | ".join([name, value, delta, status, ", ".join(trained), description])


def _group_line(trials: list[Trial]) -> str:
    """Several older trials that were not kept, in one line: what they changed and how they ended."""
    changed = sorted({key for t in trials if t.note for key in t.note.params}) or ["code"]
    statuses: dict[str, int] = {}
    for trial in trials:
        statuses[trial.status.value] = statuses.get(trial.status.value, 0) + 1
    ended = ", ".join(f"{count} {status}" for status, count in statuses.items())
    values = [t.value for t in trials if t.value is not None]
    span = f"; values {min(values):.6f} to {max(values):.6f}" if values else ""
    what = f"{len(trials)} trials changing {', '.join(changed)}, none kept ({ended}{span})"
    return f"{trials[0].name} … {trials[-1].name}: {what}"


def history_section(context: ProposalContext, room: int) -> str:
    """Every trial, one line each, within `room` characters: the baseline, the best and every kept
    trial always; when the lines do not fit, the oldest trials that were not kept are grouped by
    what they changed (constants, else code) before anything newer is left out."""
    trials = [t for t in context.history.trials if t.note is not None]
    if not trials:
        return ""
    by_commit = context.history.by_commit()
    rows = {t.commit: _row(context, t, by_commit.get(t.parent)) for t in trials}
    best = by_commit.get(context.history.best or "")
    since = trials_since_keep(trials)
    header = (
        f"{len(trials)} trials; baseline {trials[0].name} {_value(trials[0])} → best "
        f"{best.name + ' ' + _value(best) if best else 'none yet'}; {since} trials since the last keep"
        + (f"; {context.remaining}" if context.remaining else "")
    )
    mix = plateau_line(context.history, context.tag)
    header += f"\n{mix}" if mix else ""
    columns = f"trial | {context.config.metric} | Δ parent | status | steps, MFU, params, VRAM | description"
    keep = {trials[0].commit, context.history.best} | {t.commit for t in trials if t.kept}
    for grouped in range(0, len(trials) + 1, max(1, len(trials) // 20)):
        old = [t for t in trials[:grouped] if t.commit not in keep]
        groups: dict[tuple[str, ...], list[Trial]] = {}
        for trial in old:
            groups.setdefault(tuple(sorted(trial.note.params)) if trial.note else (), []).append(trial)
        folded = {t.commit for t in old}
        lines = [header, columns]
        lines += [_group_line(group) for group in groups.values()]
        lines += [rows[t.commit] for t in trials if t.commit not in folded]
        text = "\n".join(lines)
        if len(text) <= room:
            return text
    return text[: max(0, room - 40)] + "\n... [cut to fit the context budget]"


def _value(trial: Trial) -> str:
    return "" if trial.value is None else f"{trial.value:.6f}"


def _consolidate(context: ProposalContext) -> str:
    if not consolidation_due(context.history, context.tag):
        return ""
    return (
        "Your lessons have piled up: before finishing this proposal, call update_memory once with a "
        f"consolidation of your memory and the lessons since (at most {MEMORY_CHARS} characters)."
    )


def _kept_diffs(context: ProposalContext) -> str:
    kept = [t for t in context.history.trials if t.note is not None and t.note.decision is Decision.KEEP]
    parts = []
    for trial in kept[-KEPT_DIFFS:]:
        diff = context.diff_of(trial)
        if diff:
            parts.append(f"### {trial.name}: {trial.note.description if trial.note else ''}\n{diff}")
    return "\n".join(parts)


def _failures(context: ProposalContext) -> str:
    failed = [t for t in context.history.trials if t.note is not None and t.note.status in FAILED]
    parts = []
    for trial in failed[-FAILURES:]:
        note = trial.note
        assert note is not None
        tail = "\n".join(note.log_tail.splitlines()[-15:])
        diff = context.diff_of(trial)
        diff = diff if len(diff) <= 3000 else diff[:3000] + "\n... [diff cut; read the files for more]"
        parts.append(
            f"### {trial.name} ({note.status.value}): {note.description}\n{note.reason}\n"
            f"Its change:\n{diff}\nThe end of its log:\n{tail}".rstrip()
        )
    return "\n".join(parts)


def _file_section(context: ProposalContext, names: tuple[str, ...], heading: str) -> str:
    parts = []
    for name in names:
        path = context.workdir / name
        if path.is_file():
            parts.append(f"### {name}\n```\n{path.read_text(encoding='utf-8', errors='replace')}\n```")
    return f"## {heading}\n" + "\n".join(parts) if parts else ""


def outline(name: str, text: str) -> str:
    """What a researcher needs of a frozen file to edit around it: a Python file's docstring, its
    public constants (one line each) and the signatures of its public functions and classes with
    the first line of their docstrings; the model reads the rest with `read_file` when it needs it.
    A file that is not Python, or does not parse, is given whole."""
    if not name.endswith(".py"):
        return text
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    lines = text.splitlines()
    docstring = ast.get_docstring(tree)
    parts = [f'"""{docstring}"""'] if docstring else []
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and not t.id.startswith("_") for t in targets):
                parts.append("\n".join(lines[node.lineno - 1 : node.end_lineno]))
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            body = node.body[0]
            has_doc = isinstance(body, ast.Expr) and isinstance(body.value, ast.Constant)
            head = lines[first - 1 : body.lineno - 1]
            doc = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split()) if has_doc else ""
            parts.append("\n".join(head) + (f'\n    """{doc}"""' if doc else "") + "\n    ...")
    return "\n".join(parts) + f"\n# (an outline: `read_file {name}` for the whole file)"


def _frozen_section(context: ProposalContext) -> str:
    parts = []
    for name in context.config.frozen_files:
        path = context.workdir / name
        if path.is_file():
            text = outline(name, path.read_text(encoding="utf-8", errors="replace"))
            parts.append(f"### {name}\n```\n{text}\n```")
    return "## Frozen files (read-only reference, in outline)\n" + "\n".join(parts) if parts else ""


def _in_flight(context: ProposalContext) -> str:
    """What other workers are training now: propose something else, not the same idea twice."""
    if not context.pending:
        return ""
    lines = [f"- {p.name}: {p.description}" for p in context.pending]
    return "## Being tried right now by other workers (do not propose these again)\n" + "\n".join(lines)


FAILURES_HEADING = (
    "## Last failures: fix the bug, or avoid the idea (an idea that crashed on a shape or dtype bug may "
    "still be good)\n"
)
HISTORY = "history"  # stands for the history section, which fits itself to the room left


def build_context(context: ProposalContext, budget_chars: int) -> str:
    config = context.config
    essential = [
        "## Experiment file (experiment.toml)\n```toml\n" + config.path.read_text(encoding="utf-8") + "\n```",
        _file_section(context, config.editable_files, "Editable files (the current best)"),
        _in_flight(context),
        memory_section(context.history, context.tag),
        _consolidate(context),
        ledger_section(context.history, context.tag),
        near_misses_section(context.history, context.tag, context.config.direction),
    ]
    optional = [
        HISTORY,
        ("## Last kept improvements\n" + _kept_diffs(context)) if _kept_diffs(context) else "",
        (FAILURES_HEADING + _failures(context)) if _failures(context) else "",
        _frozen_section(context),
    ]
    text = "\n\n".join(part for part in essential if part)
    for part in optional:
        room = budget_chars - len(text) - 2
        if part == HISTORY:
            part = (
                "## History (every trial)\n" + history_section(context, room - 30)
                if context.history.trials
                else ""
            )
        if not part:
            continue
        if room <= 200:
            break
        text += "\n\n" + (
            part if len(part) <= room else part[: room - 60] + "\n... [cut to fit the context budget]"
        )
    return text
