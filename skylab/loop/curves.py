"""Reading a measurement's progress as it trains: the loss its train.py prints line by line, and
the one rule that stops a measurement early, a training loss that is no longer a number.

A trial whose loss went to nan at step 20 would otherwise hold its GPU for the rest of its budget and
then crash or print a meaningless metric. Only a non-finite loss stops it: a loss that is merely
high, however high, may still come down (a higher learning rate with a longer warm-down starts
worse and ends better), so it is never a reason on its own.
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
from skylab.store.notes import Status, cap_log_tail

MAX_POINTS = 2048  # progress points kept of one measurement: past that, every other one is dropped
CURVE_AT = (0.25, 0.5, 0.75, 1.0)  # the fractions of its progress a curve summary gives the loss at
CURVE_KEY = "loss_curve"  # the note's line with that summary


@dataclass(frozen=True)
class Progress:
    """One progress line: the step (None when the pattern has no step) and the training loss."""

    step: int | None
    loss: float


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
    step = found.groupdict().get("step")
    return Progress(int(step) if step and step.isdigit() else None, loss)


def curve_summary(losses: list[float]) -> str:
    """The loss at a quarter, half, three quarters and the end of a measurement's progress lines,
    as one short line ("9.011 6.556 5.684 5.12"): how a change trained, not only how it ended,
    small enough for every note. "" without progress lines."""
    if not losses:
        return ""
    picked = [losses[max(0, math.ceil(share * len(losses)) - 1)] for share in CURVE_AT]
    return " ".join(f"{loss:.4g}" for loss in picked)


def divergence(progress: Progress) -> str:
    """Why the measurement is stopped ("" when it goes on): its loss is nan or infinite."""
    if math.isfinite(progress.loss):
        return ""
    at = f" at step {progress.step}" if progress.step is not None else ""
    return f"training loss {progress.loss}{at}: stopped early, the rest of its budget saved"


class DivergenceWatch:
    """Watches one measurement's output lines (`see`, passed on to `sink`) and fires once its loss
    diverges: `fired` is then set and `reason` says why. Safe to read from another thread."""

    def __init__(self, pattern: str, sink: LineSink | None = None) -> None:
        self.pattern = re.compile(pattern)
        self.sink = sink
        self.fired = threading.Event()
        self.reason = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)  # as a runner keeps, for the note
        self.losses: list[float] = []  # every progress line's loss, thinned evenly past MAX_POINTS
        self._every = 1  # keep one point in this many (doubles each time the list fills)
        self._seen = 0

    def see(self, line: str) -> None:
        self.tail.append(line)
        progress = parse_progress(line, self.pattern)
        if progress is not None:
            self._keep(progress.loss)
            why = "" if self.fired.is_set() else divergence(progress)
            if why:
                self.reason = why
                self.fired.set()
        if self.sink is not None:
            self.sink(line)

    def _keep(self, loss: float) -> None:
        if self._seen % self._every == 0:
            self.losses.append(loss)
            if len(self.losses) >= MAX_POINTS:
                self.losses, self._every = self.losses[::2], self._every * 2
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
        return curve_summary(self.losses)


class EitherSet:
    """Set when either event is: the run's stop (Ctrl-C, SIGTERM) or the measurement's own."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()
