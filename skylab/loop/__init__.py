"""The research loop: propose, validate, commit, run, record, keep or revert.

orchestrator  threads, locks and the order of steps (no rule of its own)
judge         every keep/revert rule, pure: no git, threads or I/O
checks        pure checks of a proposal before any compute is spent
jobs          the types that travel between them: Job, Worker, RunOutcome
"""

from __future__ import annotations

from skylab.loop.jobs import RunOutcome
from skylab.loop.orchestrator import Orchestrator

__all__ = ["Orchestrator", "RunOutcome"]
