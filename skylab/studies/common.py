"""What both studies share: the run's starting point on a trial's chain, the measurement count
and note fields of a study's trials, and how a gap between two means is stated with its noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.loop.checks import sweep_params
from skylab.loop.evidence import Evidence, Rules, improvement
from skylab.loop.jobs import Job
from skylab.loop.judge import threshold
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.store.notes import Scalar, Status, TrialNote
from skylab.store.refs import TrialRef
from skylab.strategy import Proposal

ABLATION = "ablation"  # the strategy name of an ablation trial
PRUNE = "prune"  # ... of the candidate built without the changes that did not matter
CONFIRM = "confirm"  # ... of a confirmation trial
FRESH = "fresh"  # ... of the best measured again on fresh seeds
STUDIED = {ABLATION: "ablation_of", CONFIRM: "confirmation_of", FRESH: "fresh_of"}  # what it studies


def studied_trial(note: TrialNote | None) -> str:
    """The trial a study's note is about (`ablation_of`, `confirmation_of`); "" for any other note."""
    if note is None or note.strategy not in STUDIED:
        return ""
    return note.other.get(STUDIED[note.strategy], "")


def measured(trial: Trial) -> list[float]:
    """The trial's successful measurements (one value for a note written before repeats existed)."""
    if trial.note is None or trial.note.status is not Status.SUCCESS:
        return []
    return trial.note.samples()


def require_measured(trial: Trial) -> list[float]:
    values = measured(trial)
    if not values:
        raise SkylabError(f"trial {trial.name} has no successful measurement to compare with")
    return values


def run_start(history: History, trial: Trial) -> tuple[Trial, list[Trial]]:
    """The run's starting point on `trial`'s chain (its first trial of `trial`'s run: the
    unchanged start, measured first) and the trials after it, oldest first, `trial` last."""
    chain = history.kept_chain(trial.commit)
    first = next((i for i, t in enumerate(chain) if t.tag == trial.tag), 0)
    return chain[first], chain[first + 1 :]


def study_job(
    store: TrialStore,
    config: ExperimentConfig,
    tag: str,
    tree: str,
    parent: str,
    description: str,
    strategy: str,
    extra: dict[str, str],
    wanted: int | None,
    budget_scale: float = 1.0,
    candidate: bool = False,
) -> Job:
    """`tree` committed on `parent` as the next trial of `tag`: measured `wanted` times (seeds
    0, 1, ...) at `budget_scale` × the time budget, recorded with `extra` in its note, never kept;
    with `candidate`, judged as an ordinary trial instead (`wanted` None: as the judge says)."""
    ref: TrialRef = store.create_trial(tag, tree, parent, description)
    changed = sorted(store.changes.diff_paths(parent, ref.commit))
    proposal = Proposal(description, params_at(store, config, ref.commit))
    return Job(
        ref,
        parent,
        proposal,
        changed,
        strategy,
        extra=extra,
        candidate=candidate,
        budget_scale=budget_scale,
        wanted=wanted,
    )


def params_at(store: TrialStore, config: ExperimentConfig, commit: str) -> dict[str, Scalar]:
    """The sweep parameters' values in `commit` (empty without a sweep, or when they do not parse)."""
    if config.sweep is None:
        return {}
    source = store.changes.file_at(commit, config.sweep.file)
    try:
        return sweep_params(config, source.decode("utf-8")) if source is not None else {}
    except (SkylabError, UnicodeDecodeError):
        return {}


@dataclass(frozen=True)
class Gap:
    """How much better one mean is than another, in the metric's direction, with its noise."""

    gain: float  # positive: the first is better
    se: float | None  # standard error of the difference (None: σ unknown)
    bar: float  # what a keep would need the gain to exceed (the run's decision settings)
    n: tuple[int, int]

    def beyond_noise(self) -> bool:
        return self.gain > self.bar

    def worse_beyond_noise(self) -> bool:
        return -self.gain > self.bar

    def text(self) -> str:
        spread = f" ±{self.se:.2g}" if self.se is not None else ""
        return f"{self.gain:+.4g}{spread}"


def gap(first: list[float], second: list[float], sigma: float | None, rules: Rules) -> Gap:
    """How much better the mean of `first` is than the mean of `second` (both non-empty)."""
    a, b = Evidence(tuple(first)).mean, Evidence(tuple(second)).mean
    se = None if sigma is None else sigma * math.sqrt(1 / len(first) + 1 / len(second))
    bar = threshold(sigma, len(first), len(second), rules)
    return Gap(improvement(a, b, rules.direction), se, bar, (len(first), len(second)))
