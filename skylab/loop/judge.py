"""Keep or revert, and whether the result is the new best: every rule in one pure function.

No git, no threads, no I/O: the orchestrator gathers the numbers (the candidate's measurement, the
run's best when it finished, the best of all runs) and records what the verdict says.
"""

from __future__ import annotations

import statistics
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


MAX_SAME_FAILURES_IN_A_ROW = 5  # trials failing the same way in a row: the experiment, not the ideas
NOT_FAILURES = (Status.SUCCESS, Status.NOOP, Status.DUPLICATE, Status.INTERRUPTED)


def failure_signature(status: Status, reason: str, log_tail: str) -> str:
    """How a trial failed, in one line: status, reason and the last line it printed."""
    last_line = next((line for line in reversed(log_tail.splitlines()) if line.strip()), "")
    return f"{status.value}: {reason}" + (f" ({last_line.strip()[:200]})" if last_line else "")


def hopeless(
    recent_failures: list[str], status: Status, signature: str, measures_start: bool, start: str
) -> str:
    """Why the run cannot go on ("" when it can), after a trial with `status` that failed as
    `signature` (`recent_failures`: the failures in a row before it, oldest first). The starting
    point itself failing (its code, not the machine: an `infra` failure is measured again), or
    MAX_SAME_FAILURES_IN_A_ROW trials in a row failing the same way: no proposal can fix that."""
    if status in NOT_FAILURES:
        return ""
    if measures_start and status is not Status.INFRA:
        return f"the starting point {start[:10]} does not train ({signature}): fix it, then run again"
    recent = [*recent_failures, signature][-MAX_SAME_FAILURES_IN_A_ROW:]
    if len(recent) == MAX_SAME_FAILURES_IN_A_ROW and len(set(recent)) == 1:
        return f"{len(recent)} trials in a row failed the same way ({signature}): stopping"
    return ""


def expected_trial_seconds(wall_seconds: list[float], time_budget: float, startup_allowance: float) -> float:
    """A trial's expected wall time: the median of the last ten successes' (`wall_seconds`, oldest
    first), else the time budget plus a start-up allowance."""
    recent = wall_seconds[-10:]
    if recent:
        return float(statistics.median(recent))
    return time_budget + startup_allowance
