"""Keep or revert, and whether the result is the new best: every rule in one pure function.

No git, no threads, no I/O: the orchestrator gathers the numbers (the candidate's measurement, the
run's best when it finished, the best of all runs) and records what the verdict says.
"""

from __future__ import annotations

from dataclasses import dataclass

from skylab.experiment.objective import is_better
from skylab.store.notes import Decision, Status


@dataclass(frozen=True)
class Measurement:
    """What a trial produced: its status as the runner saw it, its metric and its peak VRAM."""

    status: Status
    value: float | None
    peak_vram_mb: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Rules:
    """The experiment's decision settings."""

    direction: str  # "minimize" or "maximize"
    max_vram_gb: float | None = None


@dataclass(frozen=True)
class Verdict:
    status: Status  # the runner's status, or CONSTRAINT when a limit was broken
    reason: str
    decision: Decision
    new_best: bool  # kept, and better than the best of all runs


def judge(candidate: Measurement, reference: float | None, best: float | None, rules: Rules) -> Verdict:
    """The verdict on `candidate`, against `reference` (the run's best when it finished; None when
    the run has none yet) and `best` (the best of all runs). A trial is kept only when it succeeded
    within the limits with a finite metric strictly better than the reference; it is the new best
    only when it is kept and also beats `best`."""
    status, reason = candidate.status, candidate.reason
    vram = candidate.peak_vram_mb
    if status is Status.SUCCESS and rules.max_vram_gb and vram and vram > rules.max_vram_gb * 1024:
        status = Status.CONSTRAINT
        reason = f"peak VRAM {vram / 1024:.1f} GB is over max_vram_gb = {rules.max_vram_gb:g}"
    value = candidate.value
    keep = status is Status.SUCCESS and value is not None and is_better(value, reference, rules.direction)
    new_best = keep and value is not None and is_better(value, best, rules.direction)
    return Verdict(status, reason, Decision.KEEP if keep else Decision.REVERT, new_best)
