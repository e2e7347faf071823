"""Train on a GPU host over SSH: rsync the trial's files, run the command remotely, stream it back.

The connection is fabric's (paramiko underneath), with host key checking on unless remote.toml
turns it off. The remote command runs in its own process group (sshd makes every session one); its
group id is the first thing it prints, so a timeout, a Ctrl-C or a reconnection after a dropped
link can kill the whole group and leave no training behind on the GPU. Every command line is built
from quoted words: no file name or environment value reaches a shell unquoted.
"""

from __future__ import annotations

import io
import select
import shlex
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skylab.errors import SkylabError
from skylab.runner import LineSink, RunResult, StopSignal, TrialRequest, TrialStopped
from skylab.runner.common import TAIL_LINES, result_from_output
from skylab.runner.remote_config import RemoteConfig
from skylab.store.notes import Status

PGID_MARKER = "skylab-pgid "
RECONNECT_ATTEMPTS = 5


def training_argv(remote: RemoteConfig, command: str) -> list[str]:
    """The experiment's command for the remote host: its python, or torchrun over every GPU."""
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        if remote.num_gpus > 1:
            launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={remote.num_gpus}"]
            return [remote.python, *launcher, *argv[1:]]
        return [remote.python, *argv[1:]]
    if remote.num_gpus > 1:
        raise SkylabError(
            f"num_gpus = {remote.num_gpus} needs a command that starts with python, not {command!r}"
        )
    return argv


def remote_shell_command(
    remote: RemoteConfig, workdir: str, argv: list[str], extra: Mapping[str, str] | None = None
) -> str:
    """`cd DIR && echo skylab-pgid $$ && exec env K=V ... ARGV`, every word quoted."""
    env = {**remote.env, **(extra or {}), "PYTHONUNBUFFERED": "1"}
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    return f"cd {shlex.quote(workdir)} && echo {PGID_MARKER}$$ && exec env {assignments} {shlex.join(argv)}"


class _Lines(io.TextIOBase):
    """A writable stream that hands complete lines on, minus the process-group marker."""

    def __init__(self, sink: LineSink) -> None:
        self.sink = sink
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *complete, self.pending = self.pending.split("\n")
        for line in complete:
            if not line.startswith(PGID_MARKER):
                self.sink(line.rstrip("\r"))
        return len(text)

    def close(self) -> None:
        if self.pending:
            self.sink(self.pending)
            self.pending = ""
        super().close()


class RemoteRunner:
    def __init__(self, remote: RemoteConfig, kill_grace: float = 10.0, backoff: float = 2.0) -> None:
        self.remote = remote
        self.kill_grace = kill_grace
        self.backoff = backoff
        self.connection: Any = None
        self._orphan: int | None = None  # a process group left running by a dropped connection

    # ----- connection ------------------------------------------------------------------------------

    def _open(self) -> Any:
        import fabric
        import paramiko

        remote = self.remote
        connect_kwargs: dict[str, Any] = {"banner_timeout": remote.connect_timeout, "auth_timeout": 30}
        if remote.key_path is not None:
            connect_kwargs.update(key_filename=str(remote.key_path), look_for_keys=False, allow_agent=False)
        connection = fabric.Connection(
            remote.host,
            user=remote.user,
            port=remote.port,
            connect_timeout=remote.connect_timeout,
            connect_kwargs=connect_kwargs,
        )
        client = connection.client
        if remote.host_key_checking:
            client.load_system_host_keys()
            if remote.known_hosts is not None and remote.known_hosts.is_file():
                client.load_host_keys(str(remote.known_hosts))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        connection.open()
        connection.transport.set_keepalive(5)
        return connection

    def connect(self, attempts: int = RECONNECT_ATTEMPTS) -> None:
        """Connect, retrying with backoff; then clean up anything a lost connection left running."""
        import paramiko

        if self.connection is not None and self.connection.is_connected:
            return
        error: Exception | None = None
        for attempt in range(attempts):
            try:
                self.connection = self._open()
                break
            except paramiko.SSHException as exc:
                if "known_hosts" in str(exc):
                    raise SkylabError(
                        f"{self.remote.host}:{self.remote.port}: host key is not in known_hosts "
                        "(add it, or set host_key_checking = false in remote.toml)"
                    ) from None
                if isinstance(exc, paramiko.AuthenticationException):
                    raise SkylabError(f"{self.remote.destination}: authentication failed ({exc})") from None
                error = exc
            except OSError as exc:
                error = exc
            if attempt < attempts - 1:
                time.sleep(self.backoff * 2**attempt)
        else:
            where = f"{self.remote.destination}:{self.remote.port}"
            raise SkylabError(f"cannot reach {where} after {attempts} attempts: {error}")
        if self._orphan is not None:
            self._kill_group(self._orphan)
            self._orphan = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def execute(self, command: str, on_line: LineSink) -> int:
        """Run a remote command to its end, each output line to `on_line` as it comes; its exit status."""
        self.connect()
        lines = _Lines(on_line)
        result = self.connection.run(command, warn=True, in_stream=False, out_stream=lines, err_stream=lines)
        lines.close()
        return int(result.exited)

    def _kill_group(self, pgid: int) -> None:
        script = (
            f"kill -TERM -- -{pgid} 2>/dev/null; for i in $(seq {int(self.kill_grace * 10)}); do "
            f"kill -0 -- -{pgid} 2>/dev/null || exit 0; sleep 0.1; done; "
            f"kill -KILL -- -{pgid} 2>/dev/null; true"
        )
        try:
            self.connection.run(script, hide=True, warn=True, in_stream=False)
        except Exception:  # the link may be gone: remember the group and kill it on reconnection
            self._orphan = pgid
            self.close()

    # ----- files -------------------------------------------------------------------------------------

    def workdir_for(self, local: Path) -> str:
        return f"{self.remote.workdir.rstrip('/')}/{local.name}"

    def ssh_command(self) -> list[str]:
        remote = self.remote
        command = [
            "ssh",
            "-p",
            str(remote.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={int(remote.connect_timeout)}",
        ]
        if remote.key_path is not None:
            command += ["-i", str(remote.key_path), "-o", "IdentitiesOnly=yes"]
        if remote.host_key_checking:
            command += ["-o", "StrictHostKeyChecking=yes"]
            if remote.known_hosts is not None:
                command += ["-o", f"UserKnownHostsFile={remote.known_hosts}"]
        else:
            command += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        return command

    def sync(self, local: Path, files: list[str], remote_dir: str) -> None:
        """Copy `files` (relative to `local`) to `remote_dir` with rsync over the same SSH settings."""
        command = [
            "rsync",
            "-a",
            "--mkpath",
            "--files-from=-",
            "-e",
            shlex.join(self.ssh_command()),
            f"{local}/",
            f"{self.remote.destination}:{remote_dir}/",
        ]
        result = subprocess.run(command, input="\n".join(files) + "\n", capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise SkylabError(f"rsync to {self.remote.host} failed: {detail}")

    # ----- a trial ---------------------------------------------------------------------------------------

    def run(self, request: TrialRequest) -> RunResult:
        self.connect()
        remote_dir = self.workdir_for(request.workdir)
        files = tracked_files(request.workdir)
        self.sync(request.workdir, files, remote_dir)
        argv = training_argv(self.remote, request.command)
        shell = remote_shell_command(self.remote, remote_dir, argv, request.env)
        return self._stream(
            shell, request.metric, request.wall_limit, request.log_path, request.on_line, request.stop
        )

    def _stream(
        self,
        shell: str,
        metric: str,
        wall_limit: float,
        log_path: Path,
        on_line: LineSink | None,
        stop: StopSignal | None = None,
    ) -> RunResult:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        started = time.monotonic()
        channel = self.connection.transport.open_session()
        channel.set_combine_stderr(True)
        channel.exec_command(shell)
        pgid: int | None = None
        pending = b""
        timed_out = dropped = False
        with open(log_path, "w", encoding="utf-8") as log:

            def emit(raw: bytes) -> None:
                nonlocal pgid
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if pgid is None and line.startswith(PGID_MARKER):
                    pgid = int(line[len(PGID_MARKER) :])
                    return
                log.write(line + "\n")
                log.flush()
                tail.append(line)
                if on_line is not None:
                    on_line(line)

            try:
                while True:
                    if stop is not None and stop.is_set():
                        raise TrialStopped
                    if time.monotonic() - started > wall_limit:
                        timed_out = True
                        break
                    readable, _, _ = select.select([channel], [], [], 0.2)
                    if readable or channel.recv_ready():
                        data = channel.recv(65536)
                        if not data:
                            break  # end of output: the command ended, or the link did
                        pending += data
                        *lines, pending = pending.split(b"\n")
                        for raw in lines:
                            emit(raw)
                    elif not self.connection.transport.is_active():
                        break
            except BaseException:  # Ctrl-C: no training may outlive Skylab's decision
                if pgid is not None:
                    self._kill_group(pgid)
                raise
            if pending:
                emit(pending)
            if timed_out and pgid is not None:
                self._kill_group(pgid)
            elif not timed_out:
                # paramiko also ends a channel whose link died; only a live transport means the command ended.
                got_status = channel.status_event.wait(3)
                dropped = not got_status or not self.connection.transport.is_active()
        wall = time.monotonic() - started
        if dropped:
            if pgid is not None:
                self._orphan = pgid
            self.close()
            return RunResult(
                status=Status.INFRA,
                value=None,
                peak_vram_mb=None,
                train_seconds=None,
                wall_seconds=wall,
                log_path=log_path,
                log_tail="\n".join(list(tail)[-20:]),
                reason=f"the connection to {self.remote.host} was lost mid-trial",
            )
        code = None if timed_out else channel.recv_exit_status()
        return result_from_output(code, timed_out, wall, wall_limit, metric, tail, log_path)


def tracked_files(workdir: Path) -> list[str]:
    """The files git tracks in the trial's work tree: what a remote trial needs, and nothing else."""
    listed = subprocess.run(["git", "-C", str(workdir), "ls-files", "-z"], capture_output=True, check=False)
    if listed.returncode != 0:
        raise SkylabError(
            f"could not list the files of {workdir}: {listed.stderr.decode(errors='replace').strip()}"
        )
    return [name for name in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if name]
