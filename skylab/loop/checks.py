"""Checks of a proposal before any compute is spent on it. Pure: they read what they are given.

Each returns None when the trial should train, or (status, reason) to record it without training.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from skylab.experiment.config import ExperimentConfig
from skylab.experiment.constants import read_constants
from skylab.store.history import History
from skylab.store.notes import FAILED, Status
from skylab.strategy import PendingTrial, Scalar

Problem = tuple[Status, str]


def static_problem(
    editable: Sequence[str], workdir: Path, changed: list[str], is_baseline: bool
) -> Problem | None:
    """Reasons not to spend compute on a trial at all: files outside the editable ones, no change
    (except for the unchanged starting point), Python that does not parse."""
    outside = [p for p in changed if p not in editable]
    if outside:
        return Status.CRASH, f"changes files that are not editable: {', '.join(outside)}"
    if not changed and not is_baseline:
        return Status.NOOP, "the proposal changed nothing"
    for path in changed:
        file = workdir / path
        if path.endswith(".py") and file.exists():
            try:
                ast.parse(file.read_text(encoding="utf-8"), filename=path)
            except SyntaxError as exc:
                return Status.CRASH, f"{path}:{exc.lineno}: {exc.msg} (not run)"
    return None


def same_change(
    history: History,
    pending: Sequence[tuple[PendingTrial, str]],
    tree: str,
    commits_with_tree: Callable[[str], Iterable[str]],
) -> Problem | None:
    """An earlier or in-flight trial with exactly these files (`tree`): training it again tells
    nothing new. `commits_with_tree(tree)` gives the commits with that tree (past trials' among
    them). An interrupted trial's change deserves its run, so it does not count."""
    for in_flight, in_flight_tree in pending:
        if in_flight_tree == tree:
            return Status.DUPLICATE, f"the same change as trial {in_flight.name}, in flight: not trained"
    judged = (Status.SUCCESS, *FAILED)
    by_commit = history.by_commit()
    earlier = [
        trial
        for commit in commits_with_tree(tree)
        if (trial := by_commit.get(commit)) is not None
        and trial.note is not None
        and trial.note.status in judged
    ]
    if earlier:
        first = min(earlier, key=lambda t: (t.note.started_at if t.note else "", t.tag, t.number))
        return Status.DUPLICATE, f"the same change as trial {first.name}: not trained again"
    return None


def current_params(config: ExperimentConfig, workdir: Path) -> dict[str, Scalar]:
    """The sweep parameters' values in the work tree: the baseline is a point of the search too."""
    sweep = config.sweep
    if sweep is None:
        return {}
    return sweep_params(config, (workdir / sweep.file).read_text(encoding="utf-8"))


def sweep_params(config: ExperimentConfig, source: str) -> dict[str, Scalar]:
    """The sweep parameters' values in `source`, the text of the sweep's file."""
    sweep = config.sweep
    if sweep is None:
        return {}
    constants = read_constants(source, sweep.file)
    names = {p.name for p in sweep.parameters}
    return {k: v for k, v in constants.items() if k in names and isinstance(v, int | float | str | bool)}
