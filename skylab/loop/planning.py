"""The judge's answers while one trial is being measured: how many measurements it gets, whether
those so far already decide it, and when the best is measured beside it.

One `TrialPlan` is made for each measurement recorded (under the orchestrator's decision lock), so
the run as it is at that moment is read once and shared by its answers.
"""

from __future__ import annotations

from functools import cached_property

from skylab.loop.decision import Decider, note_evidence
from skylab.loop.evidence import Measurement
from skylab.loop.interleave import (
    THROUGHPUT,
    Beside,
    latest_throughput,
    number_list,
    pairing_reason,
    reference_evidence,
)
from skylab.loop.jobs import Job
from skylab.loop.judge import measurements_wanted
from skylab.loop.stages import Step, last_measurement, step
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.store.notes import TrialNote


class TrialPlan:
    """A `measuring.MeasurementPlan` for `job`, against the run's best as the store holds it now."""

    def __init__(self, decider: Decider, store: TrialStore, job: Job) -> None:
        self.decider, self.store, self.job = decider, store, job
        self.tolerance = decider.rules.throughput_tolerance

    @cached_property
    def _now(self) -> tuple[History, str, Trial | None]:
        return self.decider.run_best_now(self.store, self.job)

    def _run_trials(self) -> list[Trial]:
        return self._now[0].for_tag(self.decider.tag)

    def wanted(self, first: TrialNote) -> int:
        """How many measurements the trial gets in all, from its first (see
        judge.measurements_wanted; a study's trial gets the number it asked for, or one once the
        experiment is deterministic)."""
        job, decider = self.job, self.decider
        history, tip, reference = self._now
        if job.wanted is not None:
            return 1 if decider.sigma(history, tip) == 0.0 else job.wanted
        removed = decider.lines_removed(self.store, job)
        measured = Measurement(first.status, first.value, first.peak_vram_mb, first.reason, removed)
        sigma, sigma_pair = decider.sigma(history, tip), decider.sigma_pair(history, tip, first, reference)
        against = reference_evidence(first, reference, self._run_trials())
        return measurements_wanted(measured, job.measures_start, against, sigma, decider.rules, sigma_pair)

    def decided(self, so_far: TrialNote) -> bool:
        """Whether a candidate's measurements so far (`so_far`, combined) already decide it, so the
        ones still queued are not trained (see stages.step: an early keep, or futility)."""
        job, decider = self.job, self.decider
        if not job.candidate or job.measures_start or job.wanted is not None:
            return False
        history, tip, reference = self._now
        evidence = note_evidence(so_far)
        against = reference_evidence(so_far, reference, self._run_trials())
        if evidence is None or against is None:
            return False
        sigma = decider.sigma(history, tip, so_far.measurements)
        sigma_pair = decider.sigma_pair(history, tip, so_far, reference)
        simpler = decider.lines_removed(self.store, job) > 0
        verdict, _ = step(evidence, against, sigma, sigma_pair, decider.rules, simpler)
        return verdict is not Step.MEASURE

    def beside(self, so_far: TrialNote, screened_in: bool) -> Beside | None:
        """The run's best, to be measured beside this candidate from now on (see
        interleave.pairing_reason); None for a study's trial, the starting point, a rule that never
        confirms, or when pairing is off."""
        job, rules = self.job, self.decider.rules
        if not job.candidate or job.measures_start or job.wanted is not None or rules.interleave == "never":
            return None
        history, tip, reference = self._now
        if reference is None or reference.note is None or reference.commit == job.trial.commit:
            return None
        if last_measurement(rules, self.decider.sigma(history, tip)) == 1:
            return None  # greedy, or deterministic: one measurement decides, nothing is confirmed
        rates = number_list(so_far.other, THROUGHPUT)
        best_rate = latest_throughput(reference, self._run_trials())
        why = pairing_reason(
            rules.interleave, screened_in, rates[-1] if rates else None, best_rate, rules.throughput_tolerance
        )
        return Beside(reference.commit, reference.name, why) if why else None
