"""Confirmation at a longer budget: does a trial's win over the run's starting point hold when both
train K times as long? A 5-minute winner that loses at 20 minutes is the most expensive mistake in
this field, so both are measured again at K× (as many times as each was, the same seeds) and the
gap at K× is set beside the gap at 1×.
"""

from __future__ import annotations

from dataclasses import dataclass

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.loop.evidence import Rules
from skylab.loop.jobs import Job
from skylab.loop.judge import pooled_sigma, sigma_of
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.studies.common import (
    CONFIRM,
    Gap,
    gap,
    measured,
    require_measured,
    run_start,
    studied_trial,
    study_job,
)


def scale_text(scale: float) -> str:
    return f"{scale:g}"


def confirmation_jobs(
    store: TrialStore, config: ExperimentConfig, history: History, trial: Trial, scale: float
) -> list[Job]:
    """`trial` and its run's starting point, each committed again (same files) and measured at
    `scale` × the time budget as many times as it was at 1×."""
    start = check_confirmation(history, trial)
    jobs = []
    for which in (trial, start):
        wanted = len(require_measured(which))
        tree = store.git.tree_of(which.commit)
        assert tree is not None, "a trial's commit is in the repository"
        description = f"confirm: {which.name} at {scale_text(scale)}× the time budget"
        extra = {"confirms": which.name, "scale": scale_text(scale), "confirmation_of": trial.name}
        jobs.append(
            study_job(
                store, config, trial.tag, tree, which.commit, description, CONFIRM, extra, wanted, scale
            )
        )
    return jobs


def check_confirmation(history: History, trial: Trial) -> Trial:
    """The run's starting point `trial` is compared with; a one-line error when there is none."""
    start, _ = run_start(history, trial)
    if start.commit == trial.commit:
        raise SkylabError(f"trial {trial.name} is its run's starting point: there is nothing to confirm")
    require_measured(trial)
    require_measured(start)
    return start


@dataclass(frozen=True)
class ScaleCheck:
    """A trial against its run's starting point at 1× and at K× the time budget."""

    trial: str
    start: str
    scale: str
    at_1: Gap
    at_k: Gap | None  # None: a K× measurement failed
    failed: str  # why, when at_k is None

    def verdict(self) -> str:
        at = f"at {self.scale}×"
        if self.at_k is None:
            return f"unknown {at}: {self.failed}"
        if self.at_k.beyond_noise():
            return f"holds {at}"
        if self.at_k.worse_beyond_noise():
            return f"reverses {at}: the starting point is better when trained longer"
        return f"does not hold {at}: within noise of the starting point"


def scale_checks(history: History, trial: Trial, rules: Rules) -> list[ScaleCheck]:
    """Every scale `trial` was confirmed at (its latest confirmation at each), in order of scale.
    σ at 1× is the run's; σ at K× is pooled over the K× measurements when any was repeated,
    else the run's. Pure."""
    start, _ = run_start(history, trial)
    base, reference = measured(trial), measured(start)
    if not base or not reference or start.commit == trial.commit:
        return []
    latest: dict[tuple[str, str], Trial] = {}
    for candidate in history.trials:
        note = candidate.note
        if note is not None and note.strategy == CONFIRM and studied_trial(note) == trial.name:
            latest[(note.other.get("scale", ""), note.other.get("confirms", ""))] = candidate
    sigma = sigma_of(t.note for t in history.for_tag(trial.tag))
    at_1 = gap(base, reference, sigma, rules)
    checks = []
    for scale in sorted({s for s, _ in latest}, key=_as_number):
        ours, theirs = latest.get((scale, trial.name)), latest.get((scale, start.name))
        if ours is None or theirs is None:
            continue
        longer, longer_reference = measured(ours), measured(theirs)
        if not longer or not longer_reference:
            broken = ours if not longer else theirs
            why = f"{broken.name} ended in {broken.status.value}"
            checks.append(ScaleCheck(trial.name, start.name, scale, at_1, None, why))
            continue
        sigma_k = pooled_sigma([longer, longer_reference])  # None unless one was repeated
        at_k = gap(longer, longer_reference, sigma_k if sigma_k is not None else sigma, rules)
        checks.append(ScaleCheck(trial.name, start.name, scale, at_1, at_k, ""))
    return checks


def _as_number(scale: str) -> float:
    try:
        return float(scale)
    except ValueError:
        return float("inf")
