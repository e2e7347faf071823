"""Where the next trial comes from, in order: a merge-forward the last keep queued, a study's
prepared trials, the researcher's hand commits (one at a time, oldest first), then the strategy.

`TrialSources.next` answers with a Job, WAIT (ask again once a trial finishes) or a Stop saying
why the run ends; the orchestrator registers the job as in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.loop.decision import Decider
from skylab.loop.handcommits import pop as pop_hand_commit
from skylab.loop.handcommits import queued as queued_hand_commits
from skylab.loop.jobs import Job, Worker
from skylab.loop.proposals import DISCARDED, hand_job, proposed_job
from skylab.store.history import History
from skylab.strategy import PendingTrial, Strategy

MAX_DISCARDS_IN_A_ROW = 3
WAIT = "wait"


@dataclass(frozen=True)
class Stop:
    """No trial comes next for this worker; `reason` says why the run ends ("": the strategy has
    nothing left to propose)."""

    reason: str = ""


class TrialSources:
    """The sources of one run's trials. Not thread-safe: the orchestrator asks one at a time."""

    def __init__(
        self,
        config: ExperimentConfig,
        tag: str,
        strategy: Strategy | None,
        queued_only: bool,
        decider: Decider,
        say: Callable[[str], None],
    ) -> None:
        self.config, self.tag, self.strategy = config, tag, strategy
        self.queued_only = queued_only
        self.decider = decider
        self.say = say
        self.prepared: deque[Job] | None = None  # a study's trials: the run trains these alone
        self._discards = 0  # proposals discarded in a row

    def next(
        self,
        worker: Worker,
        history: History,
        pending: list[tuple[PendingTrial, str]],
        hand_in_flight: bool,
        remaining: str,
    ) -> Job | str | Stop:
        """The next job for `worker`, given history and the trials in flight as of one moment."""
        if self.decider.forward:
            return self.decider.forward.popleft()
        if self.prepared is not None:
            return self.prepared.popleft() if self.prepared else Stop("every trial it asked for was measured")
        # Hand commits are trained one at a time, in the order they were made: each is then judged
        # knowing whether the one below it was kept (see hand_job).
        if hand_in_flight and queued_hand_commits(worker.store, self.tag):
            return WAIT
        hand = None if hand_in_flight else pop_hand_commit(worker.store, self.tag)
        if hand is not None:
            return hand_job(self.config, self.tag, worker, hand, history) or WAIT
        if self.queued_only or self.strategy is None:
            return Stop("no queued commits left")
        tip = self.decider.tip(worker.store)
        tip_trial = history.by_commit().get(tip)
        if tip_trial is None and pending:
            return WAIT  # the starting point is being measured: proposals start from its result
        outcome = proposed_job(
            self.config,
            self.strategy,
            self.tag,
            worker,
            history,
            pending,
            tip,
            tip_trial,
            self.say,
            remaining,
        )
        if outcome == DISCARDED:
            self._discards += 1
            if self._discards >= MAX_DISCARDS_IN_A_ROW:
                raise SkylabError("the strategy's proposals kept changing files that are not editable")
            return WAIT
        self._discards = 0
        return Stop() if outcome is None else outcome
