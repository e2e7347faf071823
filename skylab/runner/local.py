"""Run a trial as a local subprocess, in its own process group, under a wall-clock limit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import deque

import psutil

from skylab.experiment.layout import group_file
from skylab.runner import LineSink, RunResult, StopSignal, TrialRequest, TrialStopped
from skylab.runner.common import TAIL_LINES, result_from_output, trial_environment

TRIAL_MARK = "SKYLAB_TRIAL_PROCESS"  # in every trial process's environment: finds its strays at the end
KILL_GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL
STOP_POLL_SECONDS = 0.2  # how often a waiting trial checks whether the run was stopped


class LocalRunner:
    def __init__(self, gpu: str | None = None, kill_grace: float = KILL_GRACE_SECONDS) -> None:
        self.gpu = gpu
        self.kill_grace = kill_grace

    def run(self, request: TrialRequest) -> RunResult:
        workdir, log_path, on_line = request.workdir, request.log_path, request.on_line
        log_path.parent.mkdir(parents=True, exist_ok=True)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        started = time.monotonic()
        mark = uuid.uuid4().hex
        env = {**trial_environment(self.gpu, request.env), TRIAL_MARK: mark}
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(
                request.command,
                shell=True,
                cwd=workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: a kill reaches every child
                env=env,
                text=True,
                errors="replace",
            )
            record = group_file(workdir)
            record.write_text(str(process.pid))  # a kill -9'd Skylab's successor finds it here
            reader = threading.Thread(target=_pump, args=(process, log, tail, on_line), daemon=True)
            reader.start()
            timed_out = False
            try:
                timed_out = not _wait(process, started + request.wall_limit, request.stop)
                if timed_out:
                    self._kill_group(process)
                else:
                    _signal_group(process.pid, signal.SIGKILL)  # children it left behind go with it
            except BaseException:  # Ctrl-C or a signal: no training may outlive Skylab's decision
                self._kill_group(process)
                raise
            finally:
                kill_marked_processes(mark)  # those that left the group (a new session, a daemon)
                reader.join(timeout=5)
                record.unlink(missing_ok=True)
        wall = time.monotonic() - started
        return result_from_output(
            process.returncode, timed_out, wall, request.wall_limit, request.metric, tail, log_path
        )

    def _kill_group(self, process: subprocess.Popen[str]) -> None:
        """SIGTERM to the whole group, a grace period, then SIGKILL to whatever is left."""
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=self.kill_grace)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _wait(process: subprocess.Popen[str], deadline: float, stop: StopSignal | None) -> bool:
    """Wait for the process until `deadline`; False on timeout. A set `stop` raises TrialStopped."""
    while True:
        try:
            process.wait(timeout=max(0.0, min(STOP_POLL_SECONDS, deadline - time.monotonic())))
            return True
        except subprocess.TimeoutExpired:
            if stop is not None and stop.is_set():
                raise TrialStopped from None
            if time.monotonic() >= deadline:
                return False


def kill_marked_processes(mark: str) -> int:
    """SIGKILL every process of this user whose environment carries TRIAL_MARK=`mark`: the trial's
    descendants, also those that started a session of their own or were reparented when their
    parent exited. Returns how many were killed."""
    killed = 0
    me = os.getpid()
    for process in psutil.process_iter():
        try:
            if process.pid != me and process.environ().get(TRIAL_MARK) == mark:
                process.kill()
                killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return killed


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pump(process: subprocess.Popen[str], log: object, tail: deque[str], on_line: LineSink | None) -> None:
    """Copy the trial's output to its log and tail, and show it. A display that fails (a closed
    pipe: `skylab run | head`) is dropped; the trial and its log go on untouched."""
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)  # type: ignore[attr-defined]
        log.flush()  # type: ignore[attr-defined]
        stripped = line.rstrip("\n")
        tail.append(stripped)
        if on_line is not None:
            try:
                on_line(stripped)
            except Exception:
                on_line = None
