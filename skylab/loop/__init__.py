"""The research loop: propose, validate, commit, run, record, keep or revert.

orchestrator  threads, locks and the order of steps (no rule of its own)
judge         every keep/revert rule, pure: no git, threads or I/O
checks        pure checks of a proposal before any compute is spent
jobs          the types that travel between them: Job, Worker, RunOutcome
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skylab.loop.jobs import RunOutcome
    from skylab.loop.orchestrator import Orchestrator

__all__ = ["Orchestrator", "RunOutcome"]


def __getattr__(name: str) -> object:
    """The orchestrator and its outcome, imported on first use: commands that only need the
    judge's pure rules (`skylab push` and `pull`) would otherwise import every module of the loop."""
    if name == "Orchestrator":
        from skylab.loop.orchestrator import Orchestrator

        return Orchestrator
    if name == "RunOutcome":
        from skylab.loop.jobs import RunOutcome

        return RunOutcome
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
