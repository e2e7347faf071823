"""Runners execute one trial in a work tree and report what happened. They never touch refs and
never decide: the orchestrator reads their result and judges it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from skylab.store.notes import Status

LineSink = Callable[[str], None]


@dataclass
class RunResult:
    status: Status  # SUCCESS, CRASH or TIMEOUT; constraints are the orchestrator's call
    value: float | None
    peak_vram_mb: float | None
    train_seconds: float | None
    wall_seconds: float
    summary: dict[str, int | float | str] = field(default_factory=dict)
    log_path: Path | None = None
    log_tail: str = ""
    exit_code: int | None = None
    reason: str = ""


class StopSignal(Protocol):
    """What a runner asks, as often as it can, to know whether to stop the trial now."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class TrialRequest:
    """What a runner is asked to do: run `command` in `workdir` (a checked-out trial) for at most
    `wall_limit` seconds, with `env` added to the trial's environment; stream its output to
    `log_path` and, line by line, to `on_line`; read `metric` from the summary block. A set `stop`
    means: kill the trial and raise TrialStopped."""

    workdir: Path
    command: str
    metric: str
    wall_limit: float
    log_path: Path
    on_line: LineSink | None = None
    stop: StopSignal | None = None
    env: Mapping[str, str] = field(default_factory=dict)


class TrialStopped(Exception):
    """The run was stopped (Ctrl-C or SIGTERM) while the trial ran; its processes are gone."""


class Runner(Protocol):
    def run(self, request: TrialRequest) -> RunResult: ...
