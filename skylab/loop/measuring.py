"""Several measurements of one trial: their seeds, the repeats still to run, and the one note they
make together when the trial is judged.

The k-th measurement of a commit runs with SKYLAB_SEED=k (k plus the job's seed offset, for a
measurement on fresh seeds), so measurement 0 is today's single run and a repeat differs only by
its seed. Each finished measurement is saved through the store before
anything else happens, so a crash loses none, and a resumed run runs only the ones still missing.
Any free worker may run a repeat; the orchestrator judges the trial once all are in.

When the judge asks for it (see loop.interleave), the run's best is measured again beside the
trial, seed for seed, alternating with the trial's own repeats; a pair is weighed only once both its
measurements are in, and those re-measurements travel in the trial's note (`paired_*` lines) and
count as its compute. Invariant: every successful measurement of a paired trial has the best's
measurement with the same seed beside it when the trial is judged (unless pairing was given up,
which its note then says).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from skylab.loop.curves import CURVES_KEY, POINTS_KEY
from skylab.loop.interleave import (
    PAIRED_BECAUSE,
    PAIRED_FLAG,
    PAIRED_MEASUREMENTS,
    PAIRED_SEEDS,
    PAIRED_THROUGHPUT,
    PAIRED_WITH,
    THROUGHPUT,
    Beside,
    throughput,
    uneven_pairs,
)
from skylab.loop.jobs import Job
from skylab.store.gitstore import TrialStore
from skylab.store.notes import NoteFormatError, Status, TrialNote
from skylab.store.refs import TrialRef
from skylab.strategy import Proposal

SEED_VARIABLE = "SKYLAB_SEED"
BUDGET_VARIABLE = "SKYLAB_TIME_BUDGET"  # experiment.toml's time_budget_seconds, for train.py to honour


class MeasurementPlan(Protocol):
    """What the judge says while a trial is being measured (see loop.planning.TrialPlan)."""

    tolerance: float  # the throughput_tolerance a pair's two measurements must agree within

    def wanted(self, first: TrialNote) -> int:
        """How many measurements the trial gets at most, from its first (and the best's beside it)."""
        ...

    def decided(self, so_far: TrialNote) -> bool:
        """Whether the measurements so far already decide the trial (an early keep, or futility)."""
        ...

    def beside(self, so_far: TrialNote, screened_in: bool) -> Beside | None:
        """The best to measure beside the trial from now on, if any (see loop.interleave)."""
        ...


Slot = tuple[bool, int]  # one measurement of a trial: (of the best beside it?, its seed)


@dataclass
class MeasuredTrial:
    """A trial with its measurements so far (seed -> that measurement's note), and those of the best
    measured beside it (see loop.interleave)."""

    job: Job
    wanted: int  # 0: not known yet (the best's measurement beside the first is awaited)
    notes: dict[int, TrialNote] = field(default_factory=dict)
    beside: Beside | None = None
    best_notes: dict[int, TrialNote] = field(default_factory=dict)
    issued: set[Slot] = field(default_factory=set)  # measurements queued or run so far
    measured_again: list[int] = field(default_factory=list)  # seeds of pairs measured twice (uneven)
    flag: str = ""  # what the verdict must say about its pairs (uneven, or pairing given up)
    dropped_wall: float = 0.0  # wall seconds of measurements measured again or given up: compute spent
    gave_up: bool = False  # the best's measurement beside it failed: never paired again

    def unpartnered(self) -> list[int]:
        """The candidate's measured seeds still waiting for the best's beside them."""
        return [] if self.beside is None else [s for s in sorted(self.notes) if s not in self.best_notes]

    def complete(self) -> bool:
        if first_failure(self.notes) is not None:
            return True
        return 0 < self.wanted <= len(self.notes) and not self.unpartnered()

    def missing(self) -> list[int]:
        return [seed for seed in range(self.wanted) if seed not in self.notes]

    def to_run(self, queued: set[Slot]) -> list[Job]:
        """The measurements still to run, alternating candidate and best: the best's beside every
        seed the candidate measured or is measuring, then each missing seed's pair. Leaves out
        those training now (issued, not `queued`, not recorded)."""
        recorded = {(False, s) for s in self.notes} | {(True, s) for s in self.best_notes}
        running = self.issued - queued - recorded
        slots: list[Slot] = []
        if self.beside is not None:
            measured = sorted(set(self.notes) | {s for best, s in running if not best})
            slots += [(True, s) for s in measured if s not in self.best_notes and (True, s) not in running]
        for seed in self.missing():
            if (False, seed) not in running:
                slots.append((False, seed))
            if self.beside is not None and (True, seed) not in running:
                slots.append((True, seed))
        self.issued |= set(slots)
        return [
            dataclasses.replace(self.job, seed=seed, beside=self.beside if best else None)
            for best, seed in slots
        ]

    def combined(self) -> TrialNote:
        """The trial's note so far (see combined_note), with the best's values beside it and all
        the compute it took."""
        note = combined_note(self.notes, self.job.seed_offset)
        spent = self.dropped_wall
        if self.beside is not None and self.best_notes:
            good = [(seed, n) for seed, n in sorted(self.best_notes.items()) if succeeded(n)]
            note.other[PAIRED_WITH] = self.beside.name
            note.other[PAIRED_MEASUREMENTS] = json.dumps([n.value for _, n in good])
            note.other[PAIRED_SEEDS] = json.dumps([self.job.seed_offset + seed for seed, _ in good])
            note.other[PAIRED_BECAUSE] = self.beside.because
            rates = _throughputs([n for _, n in good])
            if rates:
                note.other[PAIRED_THROUGHPUT] = rates
            spent += math.fsum(n.wall_seconds or 0.0 for n in self.best_notes.values())
        if self.flag:
            note.other[PAIRED_FLAG] = self.flag
        if spent and note.wall_seconds is not None:
            note.wall_seconds = round(note.wall_seconds + spent, 3)
        return note

    def uneven(self, tolerance: float) -> list[int]:
        """The seeds of pairs whose throughput ratio departs from the first pair's (see
        interleave.uneven_pairs)."""
        ratios = {}
        for seed in sorted(set(self.notes) & set(self.best_notes)):
            mine = throughput(self.notes[seed].summary, self.notes[seed].train_seconds)
            theirs = throughput(self.best_notes[seed].summary, self.best_notes[seed].train_seconds)
            if mine is not None and theirs is not None and theirs > 0:
                ratios[seed] = mine / theirs
        return uneven_pairs(ratios, tolerance)


def _throughputs(notes: list[TrialNote]) -> str:
    """The JSON list of each note's throughput ("" unless every one says it)."""
    rates = [throughput(n.summary, n.train_seconds) for n in notes]
    if not rates or any(rate is None for rate in rates):
        return ""
    return json.dumps([float(f"{rate:.6g}") for rate in rates if rate is not None])


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
    rates = _throughputs([n for _, n in good])
    if rates:
        note.other[THROUGHPUT] = rates
    note.other.pop(POINTS_KEY, None)
    curves = {seed_offset + seed: n.other[POINTS_KEY] for seed, n in ordered if n.other.get(POINTS_KEY)}
    if curves:
        note.other[CURVES_KEY] = json.dumps(curves)
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


def announcement(job: Job) -> tuple[str, str]:
    """How a measurement starting is shown: its trial's name with which measurement it is, and
    what it trains."""
    name, description = job.trial.name, job.proposal.description
    if job.beside is not None:
        where = f" (the best {job.beside.name} beside it, {SEED_VARIABLE}={job.run_seed})"
        return name + where, f"{job.beside.name} measured again, so the two see the same machine"
    repeat = f" (repeat {job.seed}, {SEED_VARIABLE}={job.run_seed})" if job.seed else ""
    return name + repeat, description


def take_curves(note: TrialNote) -> dict[int, str]:
    """The curves of `note`'s measurements (seed -> encoded points), taken off the note: they are
    recorded on their own notes ref (see store.curvenotes), never in the trial's note."""
    try:
        curves = json.loads(note.other.pop(CURVES_KEY, "{}"))
    except ValueError:
        return {}
    return {int(seed): str(text) for seed, text in curves.items()} if isinstance(curves, dict) else {}


class Measurements:
    """The trials of one run being measured, and the repeats waiting for a worker. Not thread-safe:
    the orchestrator calls it under its decision lock."""

    def __init__(self) -> None:
        self.trials: dict[str, MeasuredTrial] = {}
        self.queue: deque[Job] = deque()

    def record(self, store: TrialStore, job: Job, note: TrialNote, plan: MeasurementPlan) -> TrialNote | None:
        """Add the measurement `note` of `job` (the trial's own, or the best's beside it); the
        trial's combined note once it is complete, else None (and what it still needs is queued).
        `plan` says, from the first measurement, how many the trial gets at most; from later ones,
        whether those so far already decide it (what is queued of it is then dropped), and when
        the best is to be measured beside it. A measurement of a trial already judged is dropped."""
        commit = job.trial.commit
        trial = self.trials.get(commit)
        if trial is None:
            if job.seed != 0 or job.beside is not None:
                return None  # its trial was judged meanwhile (another repeat failed, or it was decided)
            trial = self.trials[commit] = MeasuredTrial(job, 0, issued={(False, 0)})
        if job.beside is not None:
            if trial.beside is None or job.beside.commit != trial.beside.commit:
                return None  # pairing was given up meanwhile
            if succeeded(note):
                trial.best_notes[job.seed] = note
            else:
                self._give_up_pairing(trial, note)
        else:
            trial.notes[job.seed] = note
        if self._advance(trial, plan):
            del self.trials[commit]
            self.queue = deque(j for j in self.queue if j.trial.commit != commit)
            return trial.combined()
        store.partial.save(commit, _record(trial))
        return None

    def _advance(self, trial: MeasuredTrial, plan: MeasurementPlan) -> bool:
        """Queue what `trial` needs next; whether it is complete (or decided)."""
        if first_failure(trial.notes) is not None:
            return True
        if trial.unpartnered():
            return False  # a pair is judged only once both its measurements are in
        uneven = trial.uneven(plan.tolerance)
        again = [seed for seed in uneven if seed not in trial.measured_again]
        if again:  # measured while the machine changed under it: once more, first
            for seed in again:
                trial.dropped_wall += (trial.notes.pop(seed).wall_seconds or 0.0) + (
                    trial.best_notes.pop(seed).wall_seconds or 0.0
                )
                trial.issued -= {(False, seed), (True, seed)}
                trial.measured_again.append(seed)
            self._requeue(trial, front=True)
            return False
        if uneven:
            seeds = ", ".join(str(trial.job.seed_offset + seed) for seed in uneven)
            trial.flag = f"throughput uneven in the pair of seed {seeds}, measured twice: judged as it is"
        so_far = trial.combined()
        if trial.beside is None:  # no pairs yet, so nothing above was uneven
            wanted = trial.wanted or plan.wanted(so_far)
            beside = None if trial.gave_up else plan.beside(so_far, wanted > 1)
            if beside is not None:  # how many it gets is decided again, against the best now
                trial.beside = beside
                self._requeue(trial, front=True)
                return False
            if trial.wanted == 0:
                trial.wanted = wanted
                self._requeue(trial, front=False)
        if trial.wanted == 0:  # paired from the first: decided on the pair
            trial.wanted = plan.wanted(so_far)
            self._requeue(trial, front=True)
        return trial.complete() or (len(trial.notes) > 1 and plan.decided(so_far))

    def _requeue(self, trial: MeasuredTrial, front: bool) -> None:
        """Put what `trial` still needs in the queue, in its order (at the front: a pair's two
        measurements stay close in time)."""
        commit = trial.job.trial.commit
        mine = [job for job in self.queue if job.trial.commit == commit]
        queued = {(job.beside is not None, job.seed) for job in mine}
        rest = [job for job in self.queue if job.trial.commit != commit]
        jobs = trial.to_run(queued)
        self.queue = deque([*jobs, *rest] if front else [*rest, *jobs])

    def _give_up_pairing(self, trial: MeasuredTrial, note: TrialNote) -> None:
        """The best's measurement beside the trial failed: the trial is judged without pairs."""
        assert trial.beside is not None
        reason = note.reason or note.status.value
        trial.flag = (
            f"{trial.beside.name} measured beside it ended in {note.status.value} ({reason[:120]}): "
            "judged against its earlier measurements"
        )
        trial.dropped_wall += math.fsum(n.wall_seconds or 0.0 for n in [note, *trial.best_notes.values()])
        trial.beside, trial.best_notes, trial.gave_up = None, {}, True
        commit = trial.job.trial.commit
        self.queue = deque(j for j in self.queue if j.trial.commit != commit or j.beside is None)
        trial.issued = {slot for slot in trial.issued if not slot[0]}

    def resume(self, store: TrialStore, tag: str) -> list[Job]:
        """The partly measured trials of `tag` a stopped run left, taken up again: their missing
        repeats are queued; returns their jobs (each is in flight until judged)."""
        resumed = []
        for commit in store.partial.commits():
            trial = _restore(store.partial.load(commit))
            if trial is None or trial.job.trial.tag != tag or trial.job.trial.commit != commit:
                continue
            self.trials[commit] = trial
            trial.issued = {(False, s) for s in trial.notes} | {(True, s) for s in trial.best_notes}
            self.queue.extend(trial.to_run(set()))
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
        "beside": None if trial.beside is None else dataclasses.asdict(trial.beside),
        "best_notes": {str(seed): note.format() for seed, note in trial.best_notes.items()},
        "measured_again": trial.measured_again,
        "flag": trial.flag,
        "dropped_wall": trial.dropped_wall,
        "gave_up": trial.gave_up,
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
        beside = record.get("beside")
        return MeasuredTrial(
            job,
            int(record["wanted"]),
            notes,
            None if beside is None else Beside(*(str(beside[k]) for k in ("commit", "name", "because"))),
            {int(seed): TrialNote.parse(text) for seed, text in record.get("best_notes", {}).items()},
            measured_again=[int(seed) for seed in record.get("measured_again", [])],
            flag=str(record.get("flag", "")),
            dropped_wall=float(record.get("dropped_wall", 0.0)),
            gave_up=bool(record.get("gave_up", False)),
        )
    except (AssertionError, KeyError, TypeError, ValueError, NoteFormatError):
        return None
