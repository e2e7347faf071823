"""Where trials train, and how many at once: every runner kind Skylab knows, in one table. The
command line's `--runner` choices, the workers a run gets (`make_runners`) and the runner contract
suite are all built from RUNNERS, so a new kind is added here (and its module) and nowhere else.
An unknown kind is an error.

Workers: `--gpus 0,1,2,3` gives four local workers, one per GPU; `--workers N` without GPUs gives N
workers that share the machine (CPU trials, or a train.py that picks its own device); remote.toml's
hosts and gpus give one worker per host × GPU group; a Slurm cluster takes `--workers` jobs at a
time. Each kind's module is imported only when that kind is used, so `skylab --help` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from skylab.errors import SkylabError
from skylab.runner import Runner

if TYPE_CHECKING:
    from skylab.experiment.config import ExperimentConfig


@dataclass(frozen=True)
class WorkerSettings:
    """What the command line says about where and how many trials train at once."""

    config: ExperimentConfig
    workers: int | None = None  # trials at once (None: one per GPU or slot, else 1)
    gpus: tuple[str, ...] = ()  # the GPUs given with --gpus, one worker pinned to each
    remote_config: Path | None = None  # remote.toml given with --remote-config


@dataclass(frozen=True)
class RunnerKind:
    name: str
    help: str  # one line for `--help`
    make: Callable[[WorkerSettings], list[Runner]]  # one runner per worker, checked now
    prepares: bool  # whether `skylab prepare --runner NAME` can prepare data there


def local_pins(workers: int | None, gpus: tuple[str, ...] | list[str]) -> list[str | None]:
    """The GPU of each local worker: with more workers than GPUs, workers share GPUs in turn."""
    if not gpus:
        return [None] * (workers or 1)
    count = workers or len(gpus)
    return [gpus[i % len(gpus)] for i in range(count)]


def _local(settings: WorkerSettings) -> list[Runner]:
    from skylab.runner.local import LocalRunner

    return [LocalRunner(gpu=gpu) for gpu in local_pins(settings.workers, settings.gpus)]


def _slurm(settings: WorkerSettings) -> list[Runner]:
    from skylab.runner.slurm import SlurmRunner, check_slurm

    check_slurm()
    return [SlurmRunner(settings.config.slurm) for _ in range(settings.workers or 1)]


def _remote(settings: WorkerSettings) -> list[Runner]:
    """One runner per slot of remote.toml (host × GPU group), connected now so a bad host fails
    before any trial starts."""
    from skylab.runner.remote import RemoteRunner
    from skylab.runner.remote_config import REMOTE_CONFIG_NAME, load_remote_config

    remote = load_remote_config(settings.remote_config or settings.config.root / REMOTE_CONFIG_NAME)
    if settings.gpus:
        remote = replace(remote, gpus=tuple(settings.gpus))
    slots = remote.slots()
    if settings.workers is not None:
        if settings.workers > len(slots):
            raise SkylabError(
                f"--workers {settings.workers}: {remote.path} has {len(slots)} slot(s) (hosts × GPU "
                "groups); list more hosts or gpus there"
            )
        slots = slots[: settings.workers]
    runners: list[Runner] = []
    for slot in slots:
        runner = RemoteRunner(slot)
        runner.connect(attempts=1)
        runners.append(runner)
    return runners


RUNNERS: dict[str, RunnerKind] = {
    kind.name: kind
    for kind in (
        RunnerKind("local", "on this machine, one worker per --gpus GPU or --workers", _local, prepares=True),
        RunnerKind("remote", "over SSH on the hosts of remote.toml", _remote, prepares=True),
        RunnerKind("slurm", "as Slurm jobs, --workers at a time", _slurm, prepares=False),
    )
}


def runner_kind(name: str) -> RunnerKind:
    """The kind called `name`; a SkylabError naming the known ones otherwise."""
    kind = RUNNERS.get(name)
    if kind is None:
        raise SkylabError(f"unknown runner {name!r} (runners: {', '.join(RUNNERS)})")
    return kind


def make_runners(name: str, settings: WorkerSettings) -> list[Runner]:
    """One runner per worker of the kind called `name`, checked now so a bad setting fails before
    any trial starts."""
    return runner_kind(name).make(settings)
