"""Commands that share trials with teammates: push, pull."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from skylab.cli.common import (
    RepoOption,
    app,
    console,
    experiment_for,
    open_store,
)

if TYPE_CHECKING:
    pass

RemoteArgument = Annotated[str | None, typer.Argument(help="Remote name or URL (default: origin).")]


@app.command()
def push(remote: RemoteArgument = None, repo: RepoOption = Path(".")) -> None:
    """Share trials, run branches and notes (merged with the remote's, never overwritten)."""
    _sync("push", remote, repo)


@app.command()
def pull(remote: RemoteArgument = None, repo: RepoOption = Path(".")) -> None:
    """Bring in teammates' trials; the best of both sides becomes the best."""
    _sync("pull", remote, repo)


def _sync(direction: str, remote: str | None, repo: Path) -> None:
    from functools import partial

    from skylab.loop.judge import replaces_best, rules_for
    from skylab.store import sync

    store = open_store(repo)
    config = experiment_for(store)
    operation = sync.push if direction == "push" else sync.pull
    prefers = partial(replaces_best, rules=rules_for(config))
    report = operation(store, remote or sync.default_remote(store), prefers)
    for line in report.lines():
        console.print(f"• {line}", markup=False)
    if report.rejected or report.trial_collisions or report.left_out or report.note_conflicts:
        raise typer.Exit(1)  # done, but something of the remote's was not taken: look at the lines above
