"""An honest best: the best measured again on seeds no selection ever used.

The best's own mean is selected: of many candidates, the one whose measurements came out best is
kept, so its mean overstates its truth (the winner's curse). Every candidate runs seeds 0, 1, ...,
so seeds from FRESH_SEED on have never decided anything: measured there, the same files give an
unbiased estimate. The measurements are a study's trial of their own (strategy `fresh`, never
kept), so the best's note stays what it was judged on and the two estimates sit side by side.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

from skylab.errors import SkylabError
from skylab.experiment.config import MAX_MEASUREMENTS, ExperimentConfig
from skylab.loop.jobs import Job
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.studies.common import FRESH, measured, require_measured, run_start, study_job

FRESH_SEED = 10 * MAX_MEASUREMENTS  # above any seed a trial's own measurements use (0 .. 99)


@dataclass(frozen=True)
class FreshEstimate:
    """The best's selected mean beside its mean on fresh seeds, each with its standard error."""

    trial: str
    selected: float
    selected_se: float | None
    selected_n: int
    fresh: float
    fresh_se: float | None
    fresh_n: int
    measured_by: str  # the fresh trial's name

    @classmethod
    def of(
        cls, trial: str, selected: list[float], fresh: list[float], sigma: float | None, measured_by: str
    ) -> FreshEstimate:
        """From the two sets of measurements (both non-empty) and σ of one measurement."""

        def se(n: int) -> float | None:
            return None if sigma is None else sigma / math.sqrt(n)

        return cls(
            trial,
            math.fsum(selected) / len(selected),
            se(len(selected)),
            len(selected),
            math.fsum(fresh) / len(fresh),
            se(len(fresh)),
            len(fresh),
            measured_by,
        )

    def text(self, digits: int = 4) -> str:
        """'2.3597 ±0.018 selected, 2.371 ±0.02 on fresh seeds'."""

        def shown(value: float, se: float | None) -> str:
            return f"{value:.{digits}f}" + ("" if se is None else f" ±{se:.2g}")

        return (
            f"{shown(self.selected, self.selected_se)} selected, "
            f"{shown(self.fresh, self.fresh_se)} on fresh seeds"
        )


def fresh_job(store: TrialStore, config: ExperimentConfig, tag: str, trial: Trial, samples: int) -> Job:
    """`trial`'s files committed again in run `tag`, measured `samples` times on seeds from FRESH_SEED."""
    require_measured(trial)
    tree = store.git.tree_of(trial.commit)
    assert tree is not None, "a trial's commit is in the repository"
    last = FRESH_SEED + samples - 1
    seeds = f"seed {FRESH_SEED}" if samples == 1 else f"seeds {FRESH_SEED}–{last}"
    description = f"fresh: {trial.name} on {seeds}, never used to select it"
    job = study_job(
        store, config, tag, tree, trial.commit, description, FRESH, {"fresh_of": trial.name}, samples
    )
    return dataclasses.replace(job, seed_offset=FRESH_SEED)


def needs_fresh(history: History, trial: Trial | None, samples: int) -> bool:
    """Whether a run that ends with `trial` as its best should measure it on fresh seeds: it was
    selected (not the unchanged start of its run) and has no fresh measurement with `samples` yet."""
    if trial is None or samples <= 0 or not measured(trial):
        return False
    if run_start(history, trial)[0].commit == trial.commit:
        return False  # a run's starting point was measured before anything was selected
    estimate = fresh_estimate(history.trials, trial)
    return estimate is None or estimate.fresh_n < samples


def check_fresh(history: History, trial: Trial) -> None:
    """A one-line error when `trial` has nothing to measure afresh."""
    require_measured(trial)
    if run_start(history, trial)[0].commit == trial.commit:
        raise SkylabError(
            f"trial {trial.name} is its run's starting point: it was never selected, so its mean is already "
            "unbiased"
        )


def fresh_estimate(trials: Iterable[Trial], trial: Trial) -> FreshEstimate | None:
    """The latest fresh measurement of `trial` among `trials`, beside its selected mean (None:
    none succeeded). Both standard errors use the σ the fresh trial was recorded with: the run's
    pooled σ, its own measurements included."""
    selected = measured(trial)
    latest = None
    for candidate in trials:
        note = candidate.note
        studies_it = note is not None and note.strategy == FRESH and note.other.get("fresh_of") == trial.name
        if studies_it and measured(candidate):
            latest = candidate
    if latest is None or latest.note is None or not selected:
        return None
    return FreshEstimate.of(trial.name, selected, measured(latest), latest.note.sigma, latest.name)
