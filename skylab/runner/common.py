"""What every runner shares: the trial's environment, the tail it keeps, and how a finished
command's output becomes a RunResult. One place, so local, remote and Slurm trials read alike."""

from __future__ import annotations

import math
import os
import sys
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from skylab.runner import RunResult
from skylab.runner.summary import parse_summary
from skylab.store.notes import Status, cap_log_tail

TAIL_LINES = 40  # kept in memory for the summary and, on a crash, for the note


def trial_environment(gpu: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment, with Skylab's interpreter first on PATH (so `python` has torch),
    unbuffered output (so progress streams), the request's own variables and, when given, the GPU
    pinned."""
    env = {**os.environ, **(extra or {})}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def result_from_output(
    code: int | None,
    timed_out: bool,
    wall: float,
    limit: float,
    metric: str,
    tail: deque[str],
    log_path: Path,
) -> RunResult:
    """The result of a finished command, from its exit code and the tail of its output: success
    with the metric, or crash (non-zero exit, no metric, a non-finite metric) or timeout, with a
    capped log tail for the note."""
    lines = list(tail)
    summary = parse_summary("\n".join(lines))
    value = _number(summary.get(metric))
    result = RunResult(
        status=Status.SUCCESS,
        value=value,
        peak_vram_mb=_number(summary.get("peak_vram_mb")),
        train_seconds=_number(summary.get("training_seconds")),
        wall_seconds=wall,
        summary=summary,
        log_path=log_path,
        exit_code=code,
    )
    if timed_out:
        result.status, result.reason = Status.TIMEOUT, f"killed after the {limit:.0f} s wall-time limit"
    elif code != 0:
        result.status, result.reason = Status.CRASH, f"exited with status {code}"
    elif value is None:
        result.status, result.reason = Status.CRASH, f"exited normally but printed no {metric}"
    elif not math.isfinite(value):
        result.status, result.reason = Status.CRASH, f"printed {metric}: {value}, not a finite number"
    if result.status is not Status.SUCCESS:
        result.log_tail = cap_log_tail(lines)
    return result


def _number(raw: int | float | str | None) -> float | None:
    """A summary value as a float (a whole number prints as `3`, still a number); None for text."""
    return float(raw) if isinstance(raw, int | float) else None
