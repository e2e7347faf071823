"""`skylab init` in an autoresearch checkout: train.py and prepare.py, no experiment.toml. The
experiment.toml it gets says what the checkout already does: train.py is edited, prepare.py is
frozen, val_bpb is minimised, the command runs the way the checkout runs (`uv run train.py` in a uv
project, when this machine has uv), and the time budget is prepare.py's TIME_BUDGET when that is
a literal number.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Callable
from pathlib import Path

DEFAULT_BUDGET = 300  # seconds: the reference's, when prepare.py does not say


def is_autoresearch_checkout(directory: Path) -> bool:
    return (
        (directory / "train.py").is_file()
        and (directory / "prepare.py").is_file()
        and not (directory / "experiment.toml").exists()
    )


def time_budget(prepare_source: str) -> int | float:
    """prepare.py's module-level `TIME_BUDGET = <number>`; DEFAULT_BUDGET when it is anything else
    (computed, read from the environment, missing) or the file does not parse."""
    try:
        tree = ast.parse(prepare_source)
    except SyntaxError:
        return DEFAULT_BUDGET
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == "TIME_BUDGET" and isinstance(value, ast.Constant):
            number = value.value
            if isinstance(number, int | float) and not isinstance(number, bool) and number > 0:
                return number
    return DEFAULT_BUDGET


def run_command(directory: Path, which: Callable[[str], str | None] = shutil.which) -> str:
    """How the checkout runs train.py: through uv in a uv project when `uv` is on PATH (`which`
    finds it); a uv project on a machine without uv runs its own `.venv/bin/python` when it has
    one, else plain python, as does any other checkout."""
    uv_project = (directory / "uv.lock").is_file() or _declares_uv(directory / "pyproject.toml")
    if uv_project and which("uv") is not None:
        return "uv run train.py"
    if uv_project and (directory / ".venv" / "bin" / "python").is_file():
        return ".venv/bin/python train.py"
    return "python train.py"


def _declares_uv(pyproject: Path) -> bool:
    try:
        return "[tool.uv" in pyproject.read_text(encoding="utf-8")
    except OSError:
        return False


def experiment_toml(directory: Path) -> str:
    """The experiment.toml of an autoresearch checkout in `directory`."""
    budget = time_budget((directory / "prepare.py").read_text(encoding="utf-8", errors="replace"))
    return f"""# Written by `skylab init` for this autoresearch checkout: edit it to suit.

[experiment]
name = {_toml_string(directory.resolve().name or "autoresearch")}

[search]
editable_files = ["train.py"]
frozen_files = ["prepare.py"]
metric = "val_bpb"
direction = "minimize"

[execution]
command = "{run_command(directory)}"
time_budget_seconds = {budget}
"""


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
