"""Reading a measurement's progress as it trains: the loss its train.py prints line by line, and
the two rules that stop a measurement early.

A trial whose loss went to nan at step 20 would otherwise hold its GPU for the rest of its budget and
then crash or print a meaningless metric: a non-finite loss stops it at once. A loss that is merely
high may still come down (a higher learning rate with a longer warm-down starts worse and ends
better), so a finite one stops a measurement only against the run's own curves, at the same
training time (lines that print it, `train 12.3s/30s`), past the first quarter of the budget, and
only when it is above the best's loss there by more than three times what the starting point
still had to drop from there to its end (see `CurveGuide`): a margin far wider than the seed-to-
seed spread of a curve, and wider than any late bloomer's lag where the start still had that much
to gain.
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from skylab.runner import LineSink, RunResult
from skylab.runner.common import TAIL_LINES
from skylab.store.curvenotes import encode_points, thin
from skylab.store.notes import Status, cap_log_tail

MAX_POINTS = 2048  # progress points kept of one measurement: past that, every other one is dropped
CURVE_AT = (0.25, 0.5, 0.75, 1.0)  # the fractions of its progress a curve summary gives the loss at
CURVE_KEY = "loss_curve"  # the note's line with that summary
POINTS_KEY = "curve_points"  # one measurement's curve, until its trial is recorded (see curvenotes)
CURVES_KEY = "curves"  # every measurement's, by seed, on the trial's note until the store takes them


@dataclass(frozen=True)
class Progress:
    """One progress line: the step (None when the pattern has no step), the training loss and the
    training seconds so far (None when the line does not say)."""

    step: int | None
    loss: float
    seconds: float | None = None


def parse_progress(line: str, pattern: re.Pattern[str]) -> Progress | None:
    """The progress `line` reports by `pattern` (named groups `loss` and optionally `step`), or
    None when it is no progress line or its loss is not a number at all."""
    found = pattern.search(line)
    if found is None:
        return None
    try:
        loss = float(found.group("loss"))
    except (TypeError, ValueError):
        return None
    groups = found.groupdict()
    step, seconds = groups.get("step"), groups.get("seconds")
    try:
        trained = float(seconds) if seconds else None
    except ValueError:
        trained = None
    return Progress(int(step) if step and step.isdigit() else None, loss, trained)


def curve_summary(losses: list[float], seconds: list[float | None] | None = None) -> str:
    """The loss at a quarter, half, three quarters and the end of a measurement, as one short line
    ("9.011 6.556 5.684 5.12"): how a change trained, not only how it ended, small enough for every
    note. By training time when every point has its `seconds` (the first point at or past each
    share of the last point's time), else by the share of progress lines. "" without any."""
    if not losses:
        return ""
    if seconds is not None and len(seconds) == len(losses) and all(s is not None for s in seconds):
        times = [s for s in seconds if s is not None]
        end = times[-1]
        picked = [losses[next(i for i, t in enumerate(times) if t >= share * end)] for share in CURVE_AT]
    else:
        picked = [losses[max(0, math.ceil(share * len(losses)) - 1)] for share in CURVE_AT]
    return " ".join(f"{loss:.4g}" for loss in picked)


def parse_summary(text: str) -> tuple[float, ...] | None:
    """A note's curve summary back as its CURVE_AT losses (None when absent or unreadable)."""
    try:
        values = tuple(float(part) for part in text.split())
    except ValueError:
        return None
    return values if len(values) == len(CURVE_AT) and all(math.isfinite(v) for v in values) else None


GUIDE_MARGIN = 3.0  # times the starting point's loss still to drop, above the best's curve: stopped
GUIDE_FLOOR = 0.1  # and never closer than this share of the best's loss there (a curve gone flat)


@dataclass(frozen=True)
class CurveGuide:
    """The run's curves a measurement is held against: the best's and the starting point's loss at
    CURVE_AT of the time budget (their notes' summaries), and the budget in seconds."""

    best: tuple[float, ...]
    start: tuple[float, ...]
    budget: float

    def verdict(self, progress: Progress) -> str:
        """Why `progress` stops the measurement ("" when it goes on): past the first quarter of the
        budget, its loss is above the best's at the last share it passed by more than GUIDE_MARGIN
        × (the start's loss there − the start's final loss), and by more than GUIDE_FLOOR of the
        best's loss there: where the start's curve has gone flat, a late bloomer's small lag is
        more than three times nothing."""
        if progress.seconds is None or self.budget <= 0:
            return ""
        share = progress.seconds / self.budget
        passed = [i for i, at in enumerate(CURVE_AT[:-1]) if share >= at]
        if not passed:
            return ""
        i = passed[-1]
        to_drop = self.start[i] - self.start[-1]
        over = progress.loss - self.best[i]
        if to_drop <= 0 or over <= max(GUIDE_MARGIN * to_drop, GUIDE_FLOOR * abs(self.best[i])):
            return ""
        return (
            f"training loss {progress.loss:.4g} at {100 * CURVE_AT[i]:g} % of the budget is {over:.3g} above "
            f"the best's {self.best[i]:.4g} there, over {GUIDE_MARGIN:g}× the {to_drop:.3g} the starting "
            "point still had to drop: stopped early, the rest of its budget saved"
        )


def divergence(progress: Progress) -> str:
    """Why the measurement is stopped ("" when it goes on): its loss is nan or infinite."""
    if math.isfinite(progress.loss):
        return ""
    at = f" at step {progress.step}" if progress.step is not None else ""
    return f"training loss {progress.loss}{at}: stopped early, the rest of its budget saved"


class DivergenceWatch:
    """Watches one measurement's output lines (`see`, passed on to `sink`) and fires once its loss
    diverges: `fired` is then set and `reason` says why. Safe to read from another thread."""

    def __init__(self, pattern: str, sink: LineSink | None = None, guide: CurveGuide | None = None) -> None:
        self.pattern = re.compile(pattern)
        self.sink = sink
        self.guide = guide
        self.fired = threading.Event()
        self.reason = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)  # as a runner keeps, for the note
        self.losses: list[float] = []  # every progress line's loss, thinned evenly past MAX_POINTS
        self.seconds: list[float | None] = []  # the training seconds of each, when its line said
        self.steps: list[int | None] = []  # and its step, when its line said
        self._every = 1  # keep one point in this many (doubles each time the list fills)
        self._seen = 0

    def see(self, line: str) -> None:
        self.tail.append(line)
        progress = parse_progress(line, self.pattern)
        if progress is not None:
            self._keep(progress)
            why = ""
            if not self.fired.is_set():
                why = divergence(progress) or (self.guide.verdict(progress) if self.guide else "")
            if why:
                self.reason = why
                self.fired.set()
        if self.sink is not None:
            self.sink(line)

    def _keep(self, progress: Progress) -> None:
        if self._seen % self._every == 0:
            self.losses.append(progress.loss)
            self.seconds.append(progress.seconds)
            self.steps.append(progress.step)
            if len(self.losses) >= MAX_POINTS:
                self.losses, self.seconds, self._every = self.losses[::2], self.seconds[::2], self._every * 2
                self.steps = self.steps[::2]
        self._seen += 1

    def result(self, wall_seconds: float, log_path: Path) -> RunResult:
        """The measurement it stopped, as a runner reports a failed one: status `diverged`, the
        reason, the capped tail of its output and its log."""
        return RunResult(
            Status.DIVERGED,
            None,
            None,
            None,
            wall_seconds,
            log_path=log_path,
            log_tail=cap_log_tail(list(self.tail)),
            reason=self.reason,
        )

    def summary(self) -> str:
        """The measurement's curve in one line (see `curve_summary`)."""
        return curve_summary(self.losses, self.seconds)

    def points(self) -> str:
        """The measurement's curve, thinned to CURVE_POINTS, encoded for the curves note ("" when it
        printed no progress)."""
        points = list(zip(self.steps, self.losses, self.seconds, strict=True))
        return encode_points(thin(points)) if points else ""


class EitherSet:
    """Set when either event is: the run's stop (Ctrl-C, SIGTERM) or the measurement's own."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()
