"""`skylab prepare`: run an experiment's own data preparation with a progress display.

The experiment's prepare.py is frozen and self-contained; Skylab imports it from the experiment
directory and calls its `prepare(sources, num_shards, progress)` function, drawing the progress it
reports. Its own errors (a class named PrepareError) become one line and exit status 2.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from skylab.errors import SkylabError
from skylab.experiment.config import DataConfig, ExperimentConfig, load_config

if TYPE_CHECKING:
    from skylab.runner.remote import RemoteRunner


def load_prepare_module(root: Path) -> ModuleType:
    path = root / "prepare.py"
    if not path.is_file():
        raise SkylabError(f"{root} has no prepare.py: this experiment has nothing to prepare")
    spec = importlib.util.spec_from_file_location("prepare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(root))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(root))
    return module


def chosen_data(
    config: ExperimentConfig, sources: list[str] | None, shards: int | None
) -> tuple[list[str], int]:
    """What `skylab prepare` prepares: the sources and shards given, else experiment.toml's [data],
    else the reference corpus."""
    declared = config.data or DataConfig()
    return (sources or list(declared.source)), (shards if shards is not None else declared.shards)


def data_note(config: ExperimentConfig, sources: list[str], shards: int) -> str:
    """A line for data prepared that the experiment's trials will not train on ("" when they will)."""
    if config.data is None or (list(config.data.source), config.data.shards) == (sources, shards):
        return ""
    return (
        f"note: trials train on {config.data.describe()} ([data] in experiment.toml), not on this data; "
        "name it there to train on it"
    )


def run_prepare(experiment: Path, sources: list[str] | None, shards: int | None, console: Console) -> None:
    config = load_config(experiment)
    sources, shards = chosen_data(config, sources, shards)
    if config.data is not None:  # the module reads the declared data's folder, as a trial does
        os.environ.update(config.data.environment())
    if not (config.root / "prepare.py").is_file():
        console.print(f"{config.name} has nothing to prepare: it has no prepare.py", markup=False)
        return
    module = load_prepare_module(config.root)
    if not hasattr(module, "prepare"):
        console.print(
            f"{config.name} has nothing to prepare: its prepare.py defines no prepare() "
            "(its data ships with it)",
            markup=False,
        )
        return
    error_type = getattr(module, "PrepareError", None)
    tasks: dict[str, TaskID] = {}
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:

        def report(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        try:
            meta = module.prepare(sources, shards, report)
        except Exception as exc:
            if error_type is not None and isinstance(exc, error_type):
                raise SkylabError(str(exc)) from None
            raise
    console.print(
        f"prepared {meta['train_tokens']:,} train and {meta['val_tokens']:,} validation tokens "
        f"from {meta['source']} in {meta.get('directory', module.DATA_DIR)}",
        markup=False,
    )
    note = data_note(config, sources, shards)
    if note:
        console.print(note, markup=False)


def remote_preparer(root: Path, remote_config: Path | None) -> RemoteRunner:
    """The runner that prepares on the remote host of `remote_config` (default: the experiment's
    remote.toml), connected now so a bad host fails before anything is sent."""
    from skylab.runner.remote import RemoteRunner
    from skylab.runner.remote_config import REMOTE_CONFIG_NAME, load_remote_config

    runner = RemoteRunner(load_remote_config(remote_config or root / REMOTE_CONFIG_NAME))
    runner.connect(attempts=1)
    return runner


def run_remote_prepare(
    runner: RemoteRunner, experiment: Path, sources: list[str] | None, shards: int | None, console: Console
) -> int:
    """Prepare the data once on the remote host: sync the experiment there, run its prepare.py.

    Source paths name files on the remote host; the cache is the host's ($SKYLAB_CACHE from
    remote.toml's [remote.env], else its ~/.cache/skylab), so trials never re-send the data.
    """
    config = load_config(experiment)
    sources, shards = chosen_data(config, sources, shards)
    root = config.root
    files = [name for name in (*config.editable_files, *config.frozen_files, "experiment.toml")]
    remote_dir = runner.workdir_for(root) + "-prepare"
    runner.connect()
    runner.sync(root, files, remote_dir)
    command = ["python", "prepare.py", "--source", *sources, "--shards", str(shards)]
    from skylab.runner.remote import remote_shell_command, training_argv

    single = dataclasses.replace(runner.remote, num_gpus=1)
    shell = remote_shell_command(runner.remote, remote_dir, training_argv(single, shlex.join(command)))
    console.print(f"preparing on {runner.remote.host} in {remote_dir}", markup=False)
    return runner.execute(shell, lambda line: console.print(line, markup=False, highlight=False))
