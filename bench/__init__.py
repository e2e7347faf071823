"""Benchmarks; helpers shared by the scripts below."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SKYLAB = str(Path(sys.executable).parent / "skylab")


def history_json(experiment: Path) -> list[dict[str, Any]]:
    """`skylab history --json` of an experiment, as a user's script would read it."""
    out = subprocess.run(
        [SKYLAB, "history", "--json", "-C", str(experiment)], check=True, capture_output=True, text=True
    ).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


SYNTHETIC_CONFIG = """\
[experiment]
name = "{name}"

[search]
editable_files = ["train.py"]
frozen_files = ["prepare.py"]
metric = "val_bpb"

[execution]
command = "python train.py"
time_budget_seconds = {budget:g}

[decision]
{decision}
"""


def synthetic_experiment(directory: Path, name: str, train: str, budget: float, decision: str) -> None:
    """A bench's experiment with known truth in `directory` (new): `train` as its train.py,
    nothing to prepare, the given [decision] lines, initialised as a Skylab repository."""
    from skylab.experiment.scaffold import init_experiment

    directory.mkdir(parents=True)
    (directory / "train.py").write_text(train)
    (directory / "prepare.py").write_text('"""Nothing to prepare."""\n')
    config = SYNTHETIC_CONFIG.format(name=name, budget=budget, decision=decision)
    (directory / "experiment.toml").write_text(config)
    init_experiment(directory)
