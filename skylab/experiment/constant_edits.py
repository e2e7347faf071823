"""`skylab constants`: the module-level constants of an experiment's editable file, listed or set
(only those values change, every other byte stays: see `constants`)."""

from __future__ import annotations

from typing import Any

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig, experiment_file
from skylab.experiment.constants import parse_assignment, read_constants, set_constant_texts


def constants_file(config: ExperimentConfig, file: str | None) -> str:
    """The editable file asked for (default: the sweep's, else the first editable one); a
    SkylabError naming the editable files for any other."""
    name = file or (config.sweep.file if config.sweep else config.editable_files[0])
    if name not in config.editable_files:
        raise SkylabError(
            f"{name} is not an editable file of {config.name} ({', '.join(config.editable_files)})"
        )
    return name


def list_constants(config: ExperimentConfig, name: str) -> dict[str, Any]:
    """The literal module-level constants of the editable file `name`, in file order."""
    return read_constants((config.root / name).read_text(encoding="utf-8"), name)


def set_constants_in(config: ExperimentConfig, name: str, assignments: list[str]) -> dict[str, str]:
    """Set `NAME=VALUE` assignments in the editable file `name`, each value keeping its constant's
    type (see constants.typed_text; one refused: nothing is written); the source text written,
    by name."""
    texts = dict(parse_assignment(a) for a in assignments)
    path = experiment_file(config.root, name)
    source, written = set_constant_texts(path.read_text(encoding="utf-8"), texts, name)
    path.write_text(source, encoding="utf-8")
    return written
