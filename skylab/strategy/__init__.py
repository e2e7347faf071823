"""Strategies propose: given the experiment, its history and the current best, a strategy edits the
editable files of a work tree and says in one line what it changed. It never runs training and
never decides keep or revert; the orchestrator does both.

The protocol and its types are in `base`; this module adds the factory, which imports each
strategy only when it is asked for.
"""

from __future__ import annotations

from skylab.experiment.config import ExperimentConfig
from skylab.strategy.base import PendingTrial, Proposal, ProposalContext, Scalar, Strategy

__all__ = ["PendingTrial", "Proposal", "ProposalContext", "Scalar", "Strategy", "make_strategy"]


def make_strategy(name: str, config: ExperimentConfig) -> Strategy:
    if name == "sweep":
        from skylab.strategy.sweep import SweepStrategy

        return SweepStrategy(config)
    if name == "llm":
        from skylab.strategy.llm import make_llm_strategy

        return make_llm_strategy(config)
    raise ValueError(f"unknown strategy {name!r}")
