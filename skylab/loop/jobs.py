"""What travels through the loop: a job (a committed trial about to train), a worker, the outcome."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from skylab.experiment.durations import format_duration
from skylab.loop.interleave import Beside
from skylab.loop.worktree import TrialWorktree
from skylab.runner import Runner
from skylab.store.gitstore import TrialStore
from skylab.store.history import Trial
from skylab.store.notes import Status, TrialNote, utc_now
from skylab.store.refs import TrialRef
from skylab.strategy import Proposal
from skylab.terminal import plural

MERGE_FORWARD = "merge-forward"  # the strategy name of trials that carry an overtaken change forward


@dataclass
class RunOutcome:
    trials: int
    stopped_because: str
    best: Trial | None


@dataclass
class Worker:
    """One trial at a time: a work tree, a runner pinned to its GPU or host, a store handle."""

    index: int
    store: TrialStore
    worktree: TrialWorktree
    runner: Runner


@dataclass
class Job:
    """A trial committed and about to train (or to be recorded without training)."""

    trial: TrialRef
    parent: str
    proposal: Proposal
    changed: list[str]
    strategy: str
    problem: tuple[Status, str] | None = None  # set: recorded as is, never trained
    hand_made: bool = False
    source: str = ""  # a hand-made job's commit as the researcher made it (the trial's, or its origin)
    extra: dict[str, str] = field(default_factory=dict)  # more note fields, e.g. what it carries
    measures_start: bool = False  # the unchanged starting point, measured before any proposal
    seed: int = 0  # which measurement of the trial this is: it runs with SKYLAB_SEED=seed_offset + seed
    seed_offset: int = 0  # where its seeds start: 0, or seeds no selection used (a fresh measurement)
    candidate: bool = True  # False: measured and recorded, never kept and never the best (a study)
    budget_scale: float = 1.0  # trains for this many times the experiment's time budget
    wanted: int | None = None  # how many measurements it gets (None: as the judge says from the first)
    beside: Beside | None = None  # set: this measures that best again beside the trial, not the trial

    @property
    def checkout(self) -> str:
        """The commit this measurement trains: the trial's, or the best's measured beside it."""
        return self.trial.commit if self.beside is None else self.beside.commit

    @property
    def run_seed(self) -> int:
        """The SKYLAB_SEED this measurement runs with."""
        return self.seed_offset + self.seed


def starting_note(job: Job, metric: str, ran_by: str, worker: str | None) -> TrialNote:
    """The note of a trial about to train: reverted until the judge says otherwise, with who ran
    it (and on which worker, when there are several), its proposal and the LLM tokens it cost."""
    trial = job.trial
    note = TrialNote.begun(
        trial.tag,
        trial.number,
        metric,
        job.parent,
        utc_now(),
        job.proposal.description,
    )
    note.strategy, note.params = job.strategy, dict(job.proposal.params)
    note.other.update({key: str(value) for key, value in job.proposal.usage.items()})
    note.other.update(job.extra)
    note.other["ran_by"] = ran_by
    if worker is not None:
        note.other["worker"] = worker
    return note


def queued_line(jobs: Collection[Job], expected: float, workers: int) -> str:
    """What a study queued, in one line: its trials, their measurements, about how long they take."""
    measurements = sum(job.wanted or 1 for job in jobs)
    seconds = sum((job.wanted or 1) * job.budget_scale for job in jobs) * expected / max(1, workers)
    trials, runs = plural(len(jobs), "trial"), plural(measurements, "measurement")
    return f"queued {trials}, {runs} (~{format_duration(seconds)})"
