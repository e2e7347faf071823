"""What a researcher sees while `skylab run` works: a live panel on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from skylab.experiment.durations import format_duration
from skylab.terminal import escape_controls

PLAIN_LINE_EVERY = 30.0  # seconds between training lines echoed in plain mode


@dataclass
class RunState:
    tag: str
    strategy: str
    metric: str
    budget: float | None
    started: float = field(default_factory=time.monotonic)
    trials_done: int = 0
    best: float | None = None
    best_name: str = ""
    current: str = ""
    current_description: str = ""
    current_started: float | None = None
    current_expected: float = 0.0
    last_line: str = ""
    llm_tokens: int = 0
    recent: list[str] = field(default_factory=list)
    sigma: float | None = None  # the run's σ of one measurement, once repeats have measured it
    keep_bar: float | None = None  # the improvement a confirmed candidate must exceed now

    def time_left(self) -> float | None:
        return None if self.budget is None else max(0.0, self.budget - (time.monotonic() - self.started))


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

    def trial_started(self, name: str, description: str, expected: float) -> None:
        s = self.state
        s.current, s.current_description = name, description
        s.current_started, s.current_expected, s.last_line = time.monotonic(), expected, ""
        self.say(f"trial {name}: {escape(escape_controls(description))}")

    def line(self, text: str) -> None:
        with self._lock:
            self.state.last_line = text
            now = time.monotonic()
            if text.startswith("step") and now - self._last_plain >= PLAIN_LINE_EVERY:
                self._last_plain = now
                self.say(f"  {escape(escape_controls(text))}")

    def noise(self, sigma: float | None, keep_bar: float) -> None:
        """What the latest decision knew of the noise: shown by the live panel."""
        self.state.sigma, self.state.keep_bar = sigma, keep_bar

    def trial_finished(self, summary: str, best: float | None, best_name: str) -> None:
        s = self.state
        s.trials_done += 1
        s.best, s.best_name = best, best_name
        s.current, s.current_started = "", None
        s.recent = [*s.recent[-4:], summary]
        self.say(summary)


class LiveReporter(Reporter):
    """The same events, drawn as a panel that refreshes twice a second."""

    def __init__(self, console: Console, state: RunState) -> None:
        super().__init__(console, state)
        self.live = Live(console=console, get_renderable=self._render, refresh_per_second=2, transient=False)

    def __enter__(self) -> LiveReporter:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def line(self, text: str) -> None:
        self.state.last_line = text

    def add_tokens(self, count: int) -> None:
        self.state.llm_tokens += count

    def say(self, text: str) -> None:
        self.live.console.print(text, highlight=False, soft_wrap=True)

    def trial_started(self, name: str, description: str, expected: float) -> None:
        s = self.state
        s.current, s.current_description = name, description
        s.current_started, s.current_expected, s.last_line = time.monotonic(), expected, ""

    def _render(self) -> Group:
        s = self.state
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        left = s.time_left()
        best = f"{s.best:.6f} ({s.best_name})" if s.best is not None else "—"
        table.add_row(
            "run", f"{s.tag} · {s.strategy} · {s.trials_done} trial{'' if s.trials_done == 1 else 's'} done"
        )
        table.add_row(f"best {s.metric}", best)
        if s.sigma is not None and s.keep_bar is not None:
            table.add_row("noise", f"σ {s.sigma:.4g} · a keep needs > {s.keep_bar:.4g} better")
        table.add_row("time left", "no limit" if left is None else format_duration(left))
        if s.llm_tokens:
            table.add_row("LLM tokens", f"{s.llm_tokens:,}")
        if s.current and s.current_started is not None:
            elapsed = time.monotonic() - s.current_started
            table.add_row("trial", f"{s.current}: {escape(s.current_description)}")
            table.add_row("elapsed", f"{format_duration(elapsed)} / ~{format_duration(s.current_expected)}")
            table.add_row("", Text(s.last_line[-160:], style="dim"))
        return Group(table)


def remaining(max_trials: int | None, claimed: int, budget: float | None, elapsed: float) -> str:
    """What a run has left, in words ("12 trials, 1h05m left"; "" when it has no limit)."""
    parts = []
    if max_trials is not None:
        left = max(0, max_trials - claimed)
        parts.append(f"{left} trial{'' if left == 1 else 's'}")
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


def make_reporter(console: Console, state: RunState) -> Reporter:
    return (
        LiveReporter(console, state)
        if console.is_terminal and sys.stdout.isatty()
        else Reporter(console, state)
    )
