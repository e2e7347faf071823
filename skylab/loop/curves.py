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

from skylab.runner import LineSink

WATCH_TAIL = 30  # lines kept for the note of a measurement stopped early


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
        self.tail: deque[str] = deque(maxlen=WATCH_TAIL)

    def see(self, line: str) -> None:
        self.tail.append(line)
        if not self.fired.is_set():
            progress = parse_progress(line, self.pattern)
            why = divergence(progress) if progress is not None else ""
            if why:
                self.reason = why
                self.fired.set()
        if self.sink is not None:
            self.sink(line)


class EitherSet:
    """Set when either event is: the run's stop (Ctrl-C, SIGTERM) or the measurement's own."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()
