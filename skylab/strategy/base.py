"""The strategy protocol and what it takes and gives: a strategy edits the editable files of a work
tree and says in one line what it changed. It never runs training and never decides keep or revert.

A strategy is anything with `name` and `propose(context) -> Proposal | None` (None: exhausted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from skylab.store.notes import Scalar as Scalar  # re-exported: a strategy names its values so

if TYPE_CHECKING:
    from skylab.experiment.config import ExperimentConfig
    from skylab.store.history import History, Trial


@dataclass
class Proposal:
    description: str
    params: dict[str, Scalar] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)  # e.g. LLM tokens_in / tokens_out
    notes: dict[str, str] = field(default_factory=dict)  # more fields for the trial's note (one line each)
    abandoned: str = ""  # why the strategy gave it up (e.g. the model never finished): recorded, not trained


@dataclass(frozen=True)
class PendingTrial:
    """A trial another worker is training right now: proposing it again would waste a GPU."""

    name: str
    description: str
    params: dict[str, Scalar] = field(default_factory=dict)


def _no_diff(trial: Trial) -> str:
    return ""


@dataclass
class ProposalContext:
    config: ExperimentConfig
    history: History
    tag: str
    tip: str  # the commit the proposal starts from: the run's best so far
    tip_trial: Trial | None
    workdir: Path  # a work tree checked out at `tip`; the strategy edits files here
    diff_of: Callable[[Trial], str] = _no_diff  # a past trial's change, read-only access to the store
    log_of: Callable[[Trial], str] = _no_diff  # a past trial's whole log ("" when it has none)
    pending: tuple[PendingTrial, ...] = ()  # trials in flight on other workers, oldest first
    remaining: str = ""  # what the run has left, in words: "12 trials, 1h05m left"


class Strategy(Protocol):
    name: str

    def propose(self, context: ProposalContext) -> Proposal | None: ...
