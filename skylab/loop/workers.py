"""How many trials run at once and where: one runner per worker, each pinned to its GPU or host.

`--gpus 0,1,2,3` gives four local workers, one per GPU; `--workers N` without GPUs gives N workers
that share the machine (CPU trials, or a train.py that picks its own device); remote.toml's hosts
and gpus give one worker per host × GPU group; a Slurm cluster takes `--workers` jobs at a time.
"""

from __future__ import annotations

from pathlib import Path

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.runner import Runner


def local_pins(workers: int | None, gpus: list[str]) -> list[str | None]:
    """The GPU of each local worker: with more workers than GPUs, workers share GPUs in turn."""
    if not gpus:
        return [None] * (workers or 1)
    count = workers or len(gpus)
    return [gpus[i % len(gpus)] for i in range(count)]


def make_runners(
    kind: str, config: ExperimentConfig, workers: int | None, gpus: list[str], remote_config: Path | None
) -> list[Runner]:
    """One runner per worker, checked now so a bad setting fails before any trial starts."""
    if kind == "local":
        from skylab.runner.local import LocalRunner

        return [LocalRunner(gpu=gpu) for gpu in local_pins(workers, gpus)]
    if kind == "slurm":
        from skylab.runner.slurm import SlurmRunner, check_slurm

        check_slurm()
        return [SlurmRunner(config.slurm) for _ in range(workers or 1)]
    from skylab.runner.remote import RemoteRunner
    from skylab.runner.remote_config import REMOTE_CONFIG_NAME, load_remote_config

    remote = load_remote_config(remote_config or config.root / REMOTE_CONFIG_NAME)
    if gpus:
        from dataclasses import replace

        remote = replace(remote, gpus=tuple(gpus))
    slots = remote.slots()
    if workers is not None:
        if workers > len(slots):
            raise SkylabError(
                f"--workers {workers}: {remote.path} has {len(slots)} slot(s) (hosts × GPU groups); "
                "list more hosts or gpus there"
            )
        slots = slots[:workers]
    runners: list[Runner] = []
    for slot in slots:
        remote_runner = RemoteRunner(slot)
        remote_runner.connect(attempts=1)
        runners.append(remote_runner)
    return runners
