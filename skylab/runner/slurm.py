"""Run a trial as a Slurm job: sbatch it, follow it with squeue, stream its output file, scancel it.

The trial's work tree must be on a filesystem the compute nodes see (as home directories usually
are): the job runs there and writes its output to the trial's log, which this runner tails. The
wall-time limit counts from the job's start, not its submission, so time spent queued is free;
Slurm's own --time is set a little above it, so a job outlives a killed Skylab by minutes at most.

Slurm's end states map to trial statuses: a non-zero exit, FAILED or OUT_OF_MEMORY is the code's
fault (a crash, never retried); NODE_FAIL, PREEMPTED, BOOT_FAIL and the like are the cluster's
(resubmitted up to `retries` times, then recorded as infra).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skylab.errors import SkylabError
from skylab.experiment.config import SlurmConfig
from skylab.runner import LineSink, RunResult, TrialRequest, TrialStopped
from skylab.runner.common import TAIL_LINES, result_from_output, trial_environment
from skylab.store.notes import Status, cap_log_tail

SLURM_TIME_MARGIN = 120.0  # seconds Slurm's --time allows beyond Skylab's own wall-time limit
COMMAND_TIMEOUT = 60.0  # seconds an sbatch/squeue/scancel call may take before it counts as failed
QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
INFRA_STATES = {"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


@dataclass(frozen=True)
class JobEnd:
    state: str
    exit_code: int | None


def check_slurm() -> None:
    """Fail before the first trial when this machine cannot submit jobs."""
    missing = [tool for tool in ("sbatch", "squeue", "scancel", "scontrol") if shutil.which(tool) is None]
    if missing:
        raise SkylabError(f"--runner slurm needs {', '.join(missing)} on PATH (run Skylab on a login node)")
    probe = _call(["squeue", "-h", "-u", os.environ.get("USER", "root"), "-o", "%i"], check=False)
    if probe.returncode != 0:
        detail = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise SkylabError(f"Slurm is not answering (squeue: {detail})")


def map_end(end: JobEnd) -> tuple[Status, str, bool]:
    """A finished job's trial status, the reason, and whether to resubmit it."""
    state = end.state.split()[0] if end.state else "UNKNOWN"
    if state == "COMPLETED" and end.exit_code in (0, None):
        return Status.SUCCESS, "", False
    if state == "TIMEOUT":
        return Status.TIMEOUT, "Slurm ended the job at its time limit", False
    if state == "OUT_OF_MEMORY":
        return Status.CRASH, "Slurm killed the job: out of memory", False
    if state in ("FAILED", "COMPLETED"):
        return Status.CRASH, f"exited with status {end.exit_code}", False
    if state in INFRA_STATES:
        return Status.INFRA, f"Slurm job ended {state} (a cluster failure, not the code's)", True
    if state == "CANCELLED":
        return Status.INFRA, "the job was cancelled outside Skylab (scancel)", False
    return Status.INFRA, f"Slurm job ended in state {state}", False


def _call(
    argv: list[str], check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise SkylabError(f"{argv[0]} did not answer within {COMMAND_TIMEOUT:.0f} s") from None
    if check and result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SkylabError(f"{argv[0]} failed: {detail}")
    return result


class _Follower:
    """Tails a job's output file: every new complete line to the log tail and to `on_line`."""

    def __init__(self, path: Path, tail: deque[str], on_line: LineSink | None) -> None:
        self.path, self.tail, self.on_line = path, tail, on_line
        self.offset, self.pending = 0, ""

    def poll(self, final: bool = False) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                handle.seek(self.offset)
                text = handle.read()
                self.offset = handle.tell()
        except FileNotFoundError:
            return
        *lines, self.pending = (self.pending + text).split("\n")
        if final and self.pending:
            lines, self.pending = [*lines, self.pending], ""
        for line in lines:
            self.tail.append(line)
            if self.on_line is not None:
                self.on_line(line)


class SlurmRunner:
    def __init__(self, slurm: SlurmConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.slurm = slurm
        self.sleep = sleep

    def sbatch_argv(self, workdir: Path, command: str, wall_limit: float, log_path: Path) -> list[str]:
        minutes = math.ceil((wall_limit + SLURM_TIME_MARGIN) / 60)
        s = self.slurm
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name=skylab-{workdir.name}",
            f"--chdir={workdir}",
            f"--output={log_path}",
            f"--time={minutes}",
            "--nodes=1",
            "--ntasks=1",
        ]
        if s.partition:
            argv.append(f"--partition={s.partition}")
        if s.account:
            argv.append(f"--account={s.account}")
        if s.gpus_per_trial:
            argv.append(f"--gpus={s.gpus_per_trial}")
        if s.cpus_per_trial:
            argv.append(f"--cpus-per-task={s.cpus_per_trial}")
        if s.memory:
            argv.append(f"--mem={s.memory}")
        return [*argv, *s.options, f"--wrap={command}"]

    def run(self, request: TrialRequest) -> RunResult:
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for attempt in range(self.slurm.retries + 1):
            result, retry = self._attempt(request)
            if not retry or attempt == self.slurm.retries:
                break
            if request.on_line is not None:
                request.on_line(f"skylab: {result.reason}; resubmitting ({attempt + 1}/{self.slurm.retries})")
        result.wall_seconds = time.monotonic() - started
        return result

    def _attempt(self, request: TrialRequest) -> tuple[RunResult, bool]:
        """One submission: its result, and whether the cluster (not the code) failed it."""
        log_path, wall_limit, stop = request.log_path, request.wall_limit, request.stop
        log_path.unlink(missing_ok=True)
        argv = self.sbatch_argv(request.workdir, request.command, wall_limit, log_path)
        job = _call(argv, env=trial_environment(None, request.env)).stdout.strip().split(";")[0]
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        follower = _Follower(log_path, tail, request.on_line)
        submitted = time.monotonic()
        running_since: float | None = None
        timed_out = False
        try:
            while True:
                state = self.job_state(job)
                follower.poll()
                if state in RUNNING and running_since is None:
                    running_since = time.monotonic()
                if state not in QUEUED and state not in RUNNING:
                    break
                if stop is not None and stop.is_set():
                    raise TrialStopped
                if running_since is not None and time.monotonic() - running_since > wall_limit:
                    timed_out = True
                    self.cancel(job)
                    break
                self.sleep(self.slurm.poll_seconds)
        except BaseException:  # Ctrl-C: no job may outlive Skylab's decision
            self.cancel(job)
            raise
        end = self.job_end(job)
        follower.poll(final=True)
        wall = time.monotonic() - (running_since or submitted)
        code = None if timed_out else end.exit_code
        result = result_from_output(code, timed_out, wall, wall_limit, request.metric, tail, log_path)
        if timed_out:
            return result, False
        status, reason, retry = map_end(end)
        if status is not Status.SUCCESS:  # the job's end says more than its exit code
            result.status, result.reason = status, f"{reason} (job {job})"
            result.log_tail = cap_log_tail(list(tail))
        return result, retry

    def job_state(self, job: str) -> str:
        """The job's state now; "" once Slurm no longer lists it."""
        out = _call(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], check=False).stdout.strip()
        return out.splitlines()[0].strip() if out else ""

    def job_end(self, job: str) -> JobEnd:
        """How the job ended: from accounting when the cluster keeps it, else from slurmctld's memory."""
        for _ in range(10):
            accounted = _call(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State,ExitCode"], check=False)
            rows = [r for r in accounted.stdout.strip().splitlines() if r]
            if accounted.returncode == 0 and rows:
                state, _, code = rows[0].partition("|")
                if state.split()[0] not in QUEUED | RUNNING:
                    return JobEnd(state, _exit_status(code))
            shown = _call(["scontrol", "show", "job", "-o", job], check=False).stdout
            fields = dict(part.split("=", 1) for part in shown.split() if "=" in part)
            state = fields.get("JobState", "")
            if state and state not in QUEUED | RUNNING:
                return JobEnd(state, _exit_status(fields.get("ExitCode", "")))
            self.sleep(1.0)  # COMPLETING: its end is not written yet
        return JobEnd("UNKNOWN", None)

    def cancel(self, job: str) -> None:
        """scancel, then wait until the job no longer runs, so nothing trains after Skylab decided."""
        _call(["scancel", job], check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.job_state(job) in QUEUED | RUNNING:
            time.sleep(0.5)


def _exit_status(text: str) -> int | None:
    """Slurm's `code:signal`: the exit code, or 128+signal for a job killed by a signal."""
    code, _, sig = text.partition(":")
    try:
        exit_code, signal_number = int(code), int(sig or 0)
    except ValueError:
        return None
    return 128 + signal_number if signal_number and not exit_code else exit_code
