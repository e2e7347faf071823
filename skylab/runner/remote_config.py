"""`remote.toml`: where the remote runner trains, validated like experiment.toml (one clear line)."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from skylab.experiment.tomlfile import Table, read_settings, read_toml, setting
from skylab.runner.gpus import is_gpu_id

REMOTE_CONFIG_NAME = "remote.toml"


@dataclass(frozen=True)
class RemoteConfig:
    path: Path
    host: str
    user: str = setting()
    port: int = setting(22, "int", low=1, high=65535, what="a TCP port (1-65535)")
    key_path: Path | None = None
    num_gpus: int = setting(1, "int", low=1)
    workdir: str = setting("skylab")  # on the remote host; relative paths start at the login directory
    python: str = setting("python3")  # the interpreter that replaces `python` in the experiment's command
    host_key_checking: bool = setting(True, "bool")
    known_hosts: Path | None = None
    connect_timeout: float = setting(15.0, "number", above=0)
    env: dict[str, str] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()  # every host trials may use (host is the first); one worker per slot
    gpus: tuple[str, ...] = ()  # GPU ids on each host to pin workers to, num_gpus per worker

    def slots(self) -> list[RemoteConfig]:
        """One config per worker: each host × each group of num_gpus GPUs, pinned by CUDA_VISIBLE_DEVICES."""
        groups = [self.gpus[i : i + self.num_gpus] for i in range(0, len(self.gpus), self.num_gpus)]
        result = []
        for host in self.hosts or (self.host,):
            for group in groups or [()]:
                env = dict(self.env)
                if group:
                    env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
                result.append(replace(self, host=host, env=env))
        return result

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"


def load_remote_config(path: Path) -> RemoteConfig:
    display = str(path)
    raw = read_toml(path, display, f"file not found (the remote runner reads {REMOTE_CONFIG_NAME})")
    top = Table(display, "", raw)
    table = top.table("remote", required=True)
    assert table is not None
    hosts = _hosts(table)
    key = table.string("key_path", None)
    key_path = Path(key).expanduser() if key else None
    if key_path is not None:
        if not key_path.is_file():
            raise table.error("key_path", f"{key_path} does not exist")
        if key_path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise table.error("key_path", f"{key_path} is readable by others: run `chmod 600 {key_path}`")
    gpus = tuple(str(g) for g in table.get("gpus", (list,), "a list of GPU ids, e.g. [0, 1, 2, 3]", []))
    if not all(is_gpu_id(g) for g in gpus):
        raise table.error("gpus", "must list GPU indices (0, 1, ...) or GPU/MIG UUIDs")
    known = table.string("known_hosts", None)
    config = read_settings(
        table,
        RemoteConfig,
        path=path,
        host=hosts[0],
        hosts=tuple(hosts),
        key_path=key_path,
        known_hosts=Path(known).expanduser() if known else None,
        env=_env(table.table("env")),
        gpus=gpus,
    )
    if gpus and len(gpus) % config.num_gpus:
        raise table.error("gpus", f"lists {len(gpus)} GPUs, not a multiple of num_gpus = {config.num_gpus}")
    table.finish()
    top.finish()
    return config


def _env(table: Table | None) -> dict[str, str]:
    """[remote.env]: variables set for every trial on the remote host."""
    env: dict[str, str] = {}
    if table is not None:
        for name in table.data:
            if not name.isidentifier():
                raise table.error(name, "is not a valid environment variable name")
            env[name] = str(table.get(name, (str, int, float), "a string or number"))
        table.finish()
    return env


def _hosts(table: Table) -> list[str]:
    """`host = "a"` or `hosts = ["a", "b"]`: the same user, port and key on each."""
    if "hosts" in table.data:
        if "host" in table.data:
            raise table.error("hosts", "give host or hosts, not both")
        hosts = table.get("hosts", (list,), "a list of host names")
        if not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise table.error("hosts", "must be a non-empty list of host names")
        return list(hosts)
    return [table.string("host")]
