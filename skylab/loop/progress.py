"""What a researcher sees while `skylab run` works: a live panel on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from skylab.experiment.durations import format_duration
from skylab.terminal import escape_controls, plural

PLAIN_LINE_EVERY = 30.0  # seconds between training lines echoed in plain mode


@dataclass
class Running:
    """A trial a worker is training now."""

    name: str
    description: str
    started: float
    expected: float
    last_line: str = ""


@dataclass(frozen=True)
class Result:
    """A finished trial as the panel lists it."""

    name: str
    value: float | None
    delta: float | None  # against the best it was judged against
    outcome: str  # keep, revert, measured, or how it failed


@dataclass
class RunState:
    tag: str
    strategy: str
    metric: str
    budget: float | None
    max_trials: int | None = None
    started: float = field(default_factory=time.monotonic)
    trials_done: int = 0
    claimed: int = 0  # trials this run has begun (repeats of a trial are not new trials)
    best: float | None = None
    best_name: str = ""
    best_sem: float | None = None
    running: dict[int, Running] = field(default_factory=dict)  # worker -> its trial
    llm_tokens: int = 0
    results: list[Result] = field(default_factory=list)  # the last RECENT finished trials
    sigma: float | None = None  # the run's σ of one measurement, once repeats have measured it
    keep_bar: float | None = None  # the improvement a confirmed candidate must exceed now

    def time_left(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        return None if self.budget is None else max(0.0, self.budget - (now - self.started))


RECENT = 5  # finished trials the live panel lists


class Reporter:
    """Plain timestamped lines; the base of the live view too."""

    def __init__(self, console: Console, state: RunState) -> None:
        self.console = console
        self.state = state
        self._last_plain = 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"[dim]{stamp}[/] {text}", highlight=False, soft_wrap=True)

    def add_tokens(self, count: int) -> None:
        if count:
            self.state.llm_tokens += count
            self.say(f"  LLM tokens: {count:,} for this proposal, {self.state.llm_tokens:,} this run")

    def claimed(self, count: int) -> None:
        self.state.claimed = count

    def trial_started(self, name: str, description: str, expected: float, worker: int = 0) -> None:
        self.state.running[worker] = Running(name, description, time.monotonic(), expected)
        self.say(f"trial {name}: {escape(escape_controls(description))}")

    def worker_idle(self, worker: int) -> None:
        self.state.running.pop(worker, None)

    def line(self, text: str, worker: int = 0) -> None:
        with self._lock:
            running = self.state.running.get(worker)
            if running is not None:
                running.last_line = text
            now = time.monotonic()
            if text.startswith("step") and now - self._last_plain >= PLAIN_LINE_EVERY:
                self._last_plain = now
                self.say(f"  {escape(escape_controls(text))}")

    def noise(self, sigma: float | None, keep_bar: float) -> None:
        """What the latest decision knew of the noise: shown by the live panel."""
        self.state.sigma, self.state.keep_bar = sigma, keep_bar

    def trial_finished(
        self,
        summary: str,
        best: float | None,
        best_name: str,
        best_sem: float | None = None,
        result: Result | None = None,
    ) -> None:
        s = self.state
        s.trials_done += 1
        s.best, s.best_name, s.best_sem = best, best_name, best_sem
        if result is not None:
            s.results = [*s.results[-(RECENT - 1) :], result]
        self.say(summary)


class LiveReporter(Reporter):
    """The same events, drawn as a panel that refreshes twice a second and is gone when the run ends
    (what it said stays above it as plain lines)."""

    def __init__(self, console: Console, state: RunState) -> None:
        super().__init__(console, state)
        self.live = Live(console=console, get_renderable=self._render, refresh_per_second=2, transient=True)

    def __enter__(self) -> LiveReporter:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def line(self, text: str, worker: int = 0) -> None:
        running = self.state.running.get(worker)
        if running is not None:
            running.last_line = text

    def add_tokens(self, count: int) -> None:
        self.state.llm_tokens += count

    def say(self, text: str) -> None:
        self.live.console.print(text, highlight=False, soft_wrap=True)

    def trial_started(self, name: str, description: str, expected: float, worker: int = 0) -> None:
        self.state.running[worker] = Running(name, description, time.monotonic(), expected)

    def _render(self) -> Table:
        return panel(self.state, time.monotonic())


def panel(s: RunState, now: float) -> Table:
    """The live panel: the run and how far it is, the best, the noise, one line per trial training
    (with a bar for its training time), the last results. Every cell is cut, never wrapped, so it
    fits any terminal width (80 columns and up)."""
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(style="bold", no_wrap=True, min_width=8)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    elapsed = format_duration(now - s.started)
    which = f"trial {s.claimed}" + (f" of {s.max_trials}" if s.max_trials else "")
    left = s.time_left(now)
    limit = f"{format_duration(left)} left" if left is not None else "" if s.max_trials else "until Ctrl-C"
    table.add_row("run", " · ".join(p for p in (s.tag, s.strategy, which, f"{elapsed} elapsed", limit) if p))
    spread = f" ±{s.best_sem:.2g}" if s.best_sem is not None else ""
    best = f"{s.best:.6f}{spread} ({s.best_name})" if s.best is not None else "—"
    table.add_row("best", f"{s.metric} {best}")
    if s.sigma is not None and s.keep_bar is not None:
        table.add_row("noise", f"σ {s.sigma:.4g} · a keep needs > {s.keep_bar:.4g} better")
    if s.llm_tokens:
        table.add_row("LLM", f"{s.llm_tokens:,} tokens")
    several = len(s.running) > 1
    for worker, running in sorted(s.running.items()):
        spent = now - running.started
        bar = progress_bar(spent / running.expected if running.expected > 0 else 0.0)
        timing = f"{format_duration(spent)}/~{format_duration(running.expected)}"
        label = f"worker {worker}" if several else "training"
        what = escape_controls(running.description)
        table.add_row(label, Text(f"{running.name} {bar} {timing} · {what}", overflow="ellipsis"))
        if not several and running.last_line:
            table.add_row("", Text(escape_controls(running.last_line), style="dim", overflow="ellipsis"))
    for index, result in enumerate(reversed(s.results)):
        value = f"{result.value:.6f}" if result.value is not None else "—"
        delta = f"{result.delta:+.4g}" if result.delta is not None else ""
        shown = "  ".join(part for part in (result.name, value, delta, result.outcome) if part)
        table.add_row("recent" if index == 0 else "", Text(shown, overflow="ellipsis"))
    return table


def progress_bar(fraction: float, width: int = 16) -> str:
    """A bar of `width` cells, full at 1 (past 1 it stays full)."""
    filled = round(min(1.0, max(0.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def remaining(max_trials: int | None, claimed: int, budget: float | None, elapsed: float) -> str:
    """What a run has left, in words ("12 trials, 1h05m left"; "" when it has no limit)."""
    parts = []
    if max_trials is not None:
        left = max(0, max_trials - claimed)
        parts.append(plural(left, "trial"))
    if budget is not None:
        parts.append(format_duration(max(0.0, budget - elapsed)))
    return ", ".join(parts) + " left" if parts else ""


class Coalesced:
    """A callback (the live report's rewrite) run after each trial outside the decision lock, one
    call at a time: calls that arrive while it runs fold into one more pass instead of queueing."""

    def __init__(self, callback: Callable[[], None] | None) -> None:
        self.callback = callback
        self._lock = threading.Lock()
        self._again = False

    def __call__(self) -> None:
        if self.callback is None:
            return
        if not self._lock.acquire(blocking=False):
            self._again = True
            return
        try:
            self._again = True
            while self._again:
                self._again = False
                self.callback()
        finally:
            self._lock.release()


REPORT_SHARE = 0.05  # at most this share of a run's wall time goes to rewriting its live report


def refresh_due(since_last_s: float, last_took_s: float, share: float = REPORT_SHARE) -> bool:
    """Whether the live report may be rewritten `since_last_s` after its last rewrite ended, which
    took `last_took_s`: once the wait is long enough that rewrites take at most `share` of the
    time. A report that builds in 50 ms is rewritten after every trial; one of 100,000 trials
    (about 10 s to build) at most every 3 minutes, instead of holding up every trial's worker."""
    return since_last_s * share >= last_took_s * (1 - share)


class Paced:
    """A callback (the live report's rewrite) skipped while `refresh_due` says it is too soon."""

    def __init__(self, callback: Callable[[], object], clock: Callable[[], float] = time.monotonic) -> None:
        self.callback = callback
        self.clock = clock
        self.runs = 0
        self._ended: float | None = None
        self._took = 0.0

    def __call__(self) -> None:
        started = self.clock()
        if self._ended is not None and not refresh_due(started - self._ended, self._took):
            return
        self.callback()
        self.runs += 1
        self._ended = self.clock()
        self._took = self._ended - started


def make_reporter(console: Console, state: RunState) -> Reporter:
    return (
        LiveReporter(console, state)
        if console.is_terminal and sys.stdout.isatty()
        else Reporter(console, state)
    )
