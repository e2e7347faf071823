"""Strategies propose: given the experiment, its history and the current best, a strategy edits the
editable files of a work tree and says in one line what it changed. It never runs training and
never decides keep or revert; the orchestrator does both.

The protocol and its types are in `base`; this module adds the registry, STRATEGIES: the command
line's `--strategy` choices, `make_strategy` and the strategy contract suite are built from it, so
a new strategy is added here (and its module) and nowhere else. Each strategy's module is imported
only when it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skylab.errors import SkylabError
from skylab.strategy.base import PendingTrial, Proposal, ProposalContext, Scalar, Strategy

if TYPE_CHECKING:
    from skylab.experiment.config import ExperimentConfig

__all__ = [
    "STRATEGIES",
    "PendingTrial",
    "Proposal",
    "ProposalContext",
    "Scalar",
    "Strategy",
    "StrategyKind",
    "make_strategy",
]


@dataclass(frozen=True)
class StrategyKind:
    name: str
    help: str  # one line for `--help`
    make: Callable[[ExperimentConfig], Strategy]  # checks its settings now, before any trial


def _sweep(config: ExperimentConfig) -> Strategy:
    from skylab.strategy.sweep import SweepStrategy

    return SweepStrategy(config)


def _llm(config: ExperimentConfig) -> Strategy:
    from skylab.strategy.llm import make_llm_strategy

    return make_llm_strategy(config)


STRATEGIES: dict[str, StrategyKind] = {
    kind.name: kind
    for kind in (
        StrategyKind("sweep", "grid, random or TPE over the constants of [sweep]", _sweep),
        StrategyKind("llm", "a model edits the editable files ([llm])", _llm),
    )
}


def make_strategy(name: str, config: ExperimentConfig) -> Strategy:
    """The strategy called `name`, its settings checked; a SkylabError naming the known ones when
    there is none."""
    kind = STRATEGIES.get(name)
    if kind is None:
        raise SkylabError(f"unknown strategy {name!r} (strategies: {', '.join(STRATEGIES)})")
    return kind.make(config)
