"""A real OpenSSH server on 127.0.0.1 for the remote runner's tests: throwaway host and user keys,
started by a fixture and stopped by its pid."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@dataclass
class SSHServer:
    port: int
    user: str
    key: Path
    known_hosts: Path
    pid: int

    def remote_toml(self, workdir: Path, **extra: str) -> str:
        import sys

        lines = [
            "[remote]",
            'host = "127.0.0.1"',
            f'user = "{self.user}"',
            f"port = {self.port}",
            f'key_path = "{self.key}"',
            f'known_hosts = "{self.known_hosts}"',
            f'workdir = "{workdir}"',
            f'python = "{sys.executable}"',
            *(f"{k} = {v}" for k, v in extra.items()),
        ]
        return "\n".join(lines) + "\n"

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    if not Path(SSHD).exists() or shutil.which("rsync") is None:
        pytest.skip("openssh-server and rsync are not installed (`make system-deps` installs them)")
    root = tmp_path_factory.mktemp("sshd")
    _keygen(root / "host_key")
    _keygen(root / "user_key")
    authorized = root / "authorized_keys"
    authorized.write_text((root / "user_key.pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {root / 'host_key'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin yes",
                "StrictModes no",
                "UsePAM no",
                "LogLevel ERROR",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                detail = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"sshd did not start: {detail}") from None
            time.sleep(0.1)
    known = root / "known_hosts"
    kind, key = (root / "host_key.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    try:
        yield SSHServer(port, getpass.getuser(), root / "user_key", known, process.pid)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
