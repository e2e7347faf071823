"""Several measurements of one trial: their seeds, the repeats still to run, and the one note they
make together when the trial is judged.

The k-th measurement of a commit runs with SKYLAB_SEED=k (k plus the job's seed offset, for a
measurement on fresh seeds), so measurement 0 is today's single run and a repeat differs only by
its seed. Each finished measurement is saved through the store before
anything else happens, so a crash loses none, and a resumed run runs only the ones still missing.
Any free worker may run a repeat; the orchestrator judges the trial once all are in.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skylab.loop.jobs import Job
from skylab.store.gitstore import TrialStore
from skylab.store.notes import NoteFormatError, Status, TrialNote
from skylab.store.refs import TrialRef
from skylab.strategy import Proposal

SEED_VARIABLE = "SKYLAB_SEED"
BUDGET_VARIABLE = "SKYLAB_TIME_BUDGET"  # experiment.toml's time_budget_seconds, for train.py to honour


@dataclass
class MeasuredTrial:
    """A trial with its measurements so far (seed -> that measurement's note)."""

    job: Job
    wanted: int
    notes: dict[int, TrialNote] = field(default_factory=dict)

    def complete(self) -> bool:
        return first_failure(self.notes) is not None or len(self.notes) >= self.wanted

    def missing(self) -> list[int]:
        return [seed for seed in range(self.wanted) if seed not in self.notes]


def succeeded(note: TrialNote) -> bool:
    return note.status is Status.SUCCESS and note.value is not None and math.isfinite(note.value)


def first_failure(notes: dict[int, TrialNote]) -> int | None:
    """The seed of the first measurement that did not succeed, if any."""
    return next((seed for seed, note in sorted(notes.items()) if not succeeded(note)), None)


def combined_note(notes: dict[int, TrialNote], seed_offset: int = 0) -> TrialNote:
    """The trial's note from all its measurements (k -> its k-th, run with SKYLAB_SEED =
    seed_offset + k): the mean as its value, every successful value in order with its seed, the
    compute of all of them (VRAM: the peak); a repeat that failed makes the trial a failure and
    says which one and why. Pure."""
    ordered = sorted(notes.items())
    note = dataclasses.replace(ordered[0][1], other=dict(ordered[0][1].other))
    good = [(seed, n) for seed, n in ordered if succeeded(n)]
    note.seeds = [seed_offset + seed for seed, _ in good]
    note.measurements = [n.value for _, n in good if n.value is not None]
    if note.measurements:
        note.value = math.fsum(note.measurements) / len(note.measurements)
    vram = [n.peak_vram_mb for _, n in ordered if n.peak_vram_mb is not None]
    note.peak_vram_mb = max(vram) if vram else None
    train = [n.train_seconds for _, n in ordered if n.train_seconds is not None]
    note.train_seconds = math.fsum(train) if train else None
    wall = [n.wall_seconds for _, n in ordered if n.wall_seconds is not None]
    note.wall_seconds = round(math.fsum(wall), 3) if wall else None
    seed = first_failure(notes)
    if seed:  # a failed first measurement is the note already
        failure = notes[seed]
        note.status, note.log_tail = failure.status, failure.log_tail
        note.reason = (
            f"its repeat with {SEED_VARIABLE}={seed_offset + seed} ended in {failure.status.value}: "
            f"{failure.reason}"
        )
        if "log" in failure.other:
            note.other["failed_log"] = failure.other["log"]
    return note


class Measurements:
    """The trials of one run being measured, and the repeats waiting for a worker. Not thread-safe:
    the orchestrator calls it under its decision lock."""

    def __init__(self) -> None:
        self.trials: dict[str, MeasuredTrial] = {}
        self.queue: deque[Job] = deque()

    def record(
        self,
        store: TrialStore,
        job: Job,
        note: TrialNote,
        wanted: Callable[[TrialNote], int],
        decided: Callable[[TrialNote], bool] = lambda _: False,
    ) -> TrialNote | None:
        """Add the measurement `note` of `job`; the trial's combined note once it is complete, else
        None (and the repeats it still needs are queued). `wanted` says, from the first measurement,
        how many the trial gets at most; `decided`, from the combined note of a later one, whether
        those so far already decide it (its queued repeats are then dropped). A measurement of a
        trial already judged is dropped."""
        commit = job.trial.commit
        trial = self.trials.get(commit)
        if trial is None:
            if job.seed != 0:
                return None  # its trial was judged meanwhile (another repeat failed, or it was decided)
            trial = self.trials[commit] = MeasuredTrial(job, wanted(note))
            self.queue.extend(dataclasses.replace(job, seed=seed) for seed in range(1, trial.wanted))
        trial.notes[job.seed] = note
        so_far = combined_note(trial.notes, job.seed_offset)
        if not trial.complete() and not (len(trial.notes) > 1 and decided(so_far)):
            store.partial.save(commit, _record(trial))
            return None
        del self.trials[commit]
        self.queue = deque(j for j in self.queue if j.trial.commit != commit)
        return so_far

    def resume(self, store: TrialStore, tag: str) -> list[Job]:
        """The partly measured trials of `tag` a stopped run left, taken up again: their missing
        repeats are queued; returns their jobs (each is in flight until judged)."""
        resumed = []
        for commit in store.partial.commits():
            trial = _restore(store.partial.load(commit))
            if trial is None or trial.job.trial.tag != tag or trial.job.trial.commit != commit:
                continue
            self.trials[commit] = trial
            self.queue.extend(dataclasses.replace(trial.job, seed=seed) for seed in trial.missing())
            resumed.append(trial.job)
        return resumed


def _record(trial: MeasuredTrial) -> dict[str, Any]:
    job = trial.job
    return {
        "job": {
            "tag": job.trial.tag,
            "number": job.trial.number,
            "commit": job.trial.commit,
            "parent": job.parent,
            "description": job.proposal.description,
            "params": job.proposal.params,
            "changed": job.changed,
            "strategy": job.strategy,
            "hand_made": job.hand_made,
            "source": job.source,
            "extra": job.extra,
            "measures_start": job.measures_start,
            "candidate": job.candidate,
            "budget_scale": job.budget_scale,
            "wanted": job.wanted,
            "seed_offset": job.seed_offset,
        },
        "wanted": trial.wanted,
        "notes": {str(seed): note.format() for seed, note in trial.notes.items()},
    }


def _restore(record: dict[str, Any] | None) -> MeasuredTrial | None:
    """The trial a saved record describes; None for a record this version cannot read."""
    try:
        assert record is not None
        saved = record["job"]
        job = Job(
            TrialRef(saved["tag"], int(saved["number"]), saved["commit"]),
            saved["parent"],
            Proposal(saved["description"], dict(saved["params"])),
            list(saved["changed"]),
            saved["strategy"],
            hand_made=bool(saved["hand_made"]),
            source=str(saved.get("source", "")),
            extra=dict(saved["extra"]),
            measures_start=bool(saved["measures_start"]),
            candidate=bool(saved.get("candidate", True)),
            budget_scale=float(saved.get("budget_scale", 1.0)),
            wanted=None if saved.get("wanted") is None else int(saved["wanted"]),
            seed_offset=int(saved.get("seed_offset", 0)),
        )
        notes = {int(seed): TrialNote.parse(text) for seed, text in record["notes"].items()}
        return MeasuredTrial(job, int(record["wanted"]), notes)
    except (AssertionError, KeyError, TypeError, ValueError, NoteFormatError):
        return None
