"""A real single-node Slurm for the Slurm runner's tests: munged, slurmctld and slurmd from Debian's
packages, configured in a temporary directory for this machine alone, started by a fixture and
stopped by their pids. Client commands find it through SLURM_CONF."""

from __future__ import annotations

import contextlib
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

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
NODE = "skylabnode"


@dataclass
class LocalSlurm:
    conf: Path
    pids: list[int]

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def squeue(self) -> str:
        return subprocess.run(
            ["squeue", "-h", "-o", "%i %T %j"], env=self.env(), capture_output=True, text=True
        ).stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(root: Path, munge_socket: Path) -> str:
    user = getpass.getuser()
    ctld, slurmd = _free_port(), _free_port()
    return f"""\
ClusterName=skylab
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=2
NodeName={NODE} NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def _node_idle(conf: Path) -> bool:
    env = {**os.environ, "SLURM_CONF": str(conf)}
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
    return out.strip() in ("idle", "mix", "alloc")


def start_slurm(root: Path) -> LocalSlurm:
    for folder in ("state", "spool", "munge"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    munge = root / "munge"
    os.chmod(munge, 0o700)
    key, socket_path = munge / "munge.key", munge / "munge.socket"
    subprocess.run(["/usr/sbin/mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
    os.chmod(key, 0o400)
    pids = []
    munged = subprocess.Popen(
        [
            "/usr/sbin/munged",
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={socket_path}",
            f"--pid-file={munge}/munged.pid",
            f"--log-file={munge}/munged.log",
            f"--seed-file={munge}/munged.seed",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids.append(munged.pid)
    _wait_for(socket_path.exists, "munged's socket")
    conf = root / "slurm.conf"
    conf.write_text(_config(root, socket_path))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for daemon in (["/usr/sbin/slurmctld", "-D", "-i"], ["/usr/sbin/slurmd", "-D", "-N", NODE]):
        process = subprocess.Popen(
            [*daemon, "-f", str(conf)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        pids.append(process.pid)
    slurm = LocalSlurm(conf, pids)
    try:
        _wait_for(lambda: _node_idle(conf), "the Slurm node to come up", timeout=60)
    except RuntimeError:
        stop_slurm(slurm)
        logs = "\n".join(p.read_text()[-2000:] for p in root.glob("*.log"))
        raise RuntimeError(f"local Slurm did not start:\n{logs}") from None
    return slurm


def stop_slurm(slurm: LocalSlurm) -> None:
    for pid in reversed(slurm.pids):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for pid in slurm.pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    if not all(shutil.which(d) or Path(d).exists() for d in DAEMONS):
        pytest.skip("Slurm and munge are not installed (`make system-deps` installs them)")
    instance = start_slurm(tmp_path_factory.mktemp("slurm"))
    yield instance
    stop_slurm(instance)
