"""Sweeps over module-level constants: grid, seeded random, or Optuna's TPE.

Each proposal rewrites just the named assignments of the sweep file (skylab.experiment.constants), so the
trial's diff is one line per parameter. History is the memory: points already tried in any run of
this experiment are skipped (grid, random), and TPE's study is rebuilt from the notes, so a resumed
or restarted search keeps learning.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from skylab.errors import ConfigError
from skylab.experiment.config import ExperimentConfig, ParameterSpace, SweepConfig, experiment_file
from skylab.experiment.constants import read_constants, set_constants
from skylab.store.notes import FAILED, Status, TrialNote
from skylab.strategy.base import Proposal, ProposalContext, Scalar

MAX_RANDOM_DRAWS = 10_000  # draws before random search says the space is used up
TPE_ASKS = 50  # asks in a row that only return known points before TPE says the space is used up


def describe(params: dict[str, Scalar]) -> str:
    return " ".join(f"{name}={value!r}" for name, value in params.items())


Point = tuple[tuple[str, Any], ...]  # a point of the sweep: (parameter, value), by name


def _key(params: dict[str, Any]) -> Point:
    return tuple(sorted(params.items()))


class SweepStrategy:
    name = "sweep"

    def __init__(self, config: ExperimentConfig) -> None:
        if config.sweep is None:
            raise ConfigError(str(config.path), "sweep", "the sweep strategy needs a [sweep] table")
        self.config = config
        self.sweep: SweepConfig = config.sweep
        self.names = [p.name for p in self.sweep.parameters]
        self._points: dict[str, tuple[TrialNote, Point | None]] = {}  # commit -> its note, its point
        self._check_constants()
        self._study: Any = None
        self._told: set[str] = set()
        self._open: dict[tuple[tuple[str, Any], ...], Any] = {}  # asked, not yet in the notes

    def _check_constants(self) -> None:
        path = self.config.root / self.sweep.file
        constants = read_constants(path.read_text(encoding="utf-8"), self.sweep.file)
        missing = [name for name in self.names if name not in constants]
        if missing:
            raise ConfigError(
                str(self.config.path),
                "sweep.parameters",
                f"{', '.join(missing)} not found as a literal module-level constant in {self.sweep.file}",
            )

    def propose(self, context: ProposalContext) -> Proposal | None:
        tried = self._tried(context)
        if self.sweep.mode == "grid":
            params = self._next_grid(tried)
        elif self.sweep.mode == "random":
            params = self._next_random(tried)
        else:
            params = self._next_tpe(context, tried)
        if params is None:
            return None
        path = experiment_file(context.workdir, self.sweep.file)
        path.write_text(
            set_constants(path.read_text(encoding="utf-8"), params, self.sweep.file), encoding="utf-8"
        )
        return Proposal(description=describe(params), params=params)

    def _tried(self, context: ProposalContext) -> set[Point]:
        """Points already run, and points other workers are running now: neither is worth a GPU.
        A note's point is worked out once and kept while the trial has that very note (a new note
        is a new object), so a proposal after 100,000 trials reads each once, not every time."""
        seen = self._points
        tried: set[Point] = set()
        for trial in context.history.trials:
            note = trial.note
            if note is None:
                continue
            kept = seen.get(trial.commit)
            if kept is None or kept[0] is not note:
                kept = seen[trial.commit] = (note, self._point(note.params))
            if kept[1] is not None:
                tried.add(kept[1])
        tried.update(point for p in context.pending if (point := self._point(p.params)) is not None)
        return tried

    def _point(self, params: dict[str, Any]) -> Point | None:
        """The sweep's point `params` names; None when they lack one of its parameters."""
        if not set(self.names) <= params.keys():
            return None
        return _key({k: v for k, v in params.items() if k in self.names})

    def _next_grid(self, tried: set[Point]) -> dict[str, Scalar] | None:
        axes = [p.grid_points() for p in self.sweep.parameters]
        for values in itertools.product(*axes):
            params = dict(zip(self.names, values, strict=True))
            if _key(params) not in tried:
                return params
        return None

    def _next_random(self, tried: set[Point]) -> dict[str, Scalar] | None:
        # The same seed always yields the same sequence; a resumed run skips what is already done.
        rng = random.Random(self.sweep.seed)
        for _ in range(MAX_RANDOM_DRAWS):
            params = {p.name: _sample(p, rng) for p in self.sweep.parameters}
            if _key(params) not in tried:
                return params
        return None

    def _next_tpe(self, context: ProposalContext, tried: set[Point]) -> dict[str, Scalar] | None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions = {p.name: distribution(p) for p in self.sweep.parameters}
        if self._study is None:
            # constant_liar: asks still open (trials in flight on other workers) count as poor
            # results, so parallel workers spread out instead of all asking for the same point.
            sampler = optuna.samplers.TPESampler(seed=self.sweep.seed, constant_liar=True)
            self._study = optuna.create_study(direction=self.config.direction, sampler=sampler)
        for trial in context.history.trials:  # rebuilt from the notes, then kept in step
            note = trial.note
            if note is None or trial.commit in self._told or not set(self.names) <= set(note.params):
                continue
            if note.budget_scale != 1:  # trained at another budget: its value is not comparable
                continue
            self._told.add(trial.commit)
            params = {name: note.params[name] for name in self.names}
            asked = self._open.pop(_key(params), None)
            if note.status is Status.SUCCESS and note.value is not None and math.isfinite(note.value):
                state, value = optuna.trial.TrialState.COMPLETE, note.value
            elif note.status in FAILED:
                state, value = optuna.trial.TrialState.FAIL, None
            else:
                state, value = optuna.trial.TrialState.PRUNED, None  # interrupted, noop: no result
            if asked is not None:  # our own ask: close it, so it stops counting as in flight
                self._study.tell(
                    asked, value if state == optuna.trial.TrialState.COMPLETE else None, state=state
                )
                continue
            if state == optuna.trial.TrialState.PRUNED:
                continue
            try:
                frozen = optuna.trial.create_trial(
                    params=params, distributions=distributions, value=value, state=state
                )
            except ValueError:
                continue  # a point from an older search space
            self._study.add_trial(frozen)
        for _ in range(TPE_ASKS):
            asked = self._study.ask(distributions)
            params = {name: _plain(asked.params[name]) for name in self.names}
            if _key(params) not in tried:
                # The result comes back through the notes; until then this ask stays open (in flight).
                self._open[_key(params)] = asked
                return params
            self._study.tell(asked, state=optuna.trial.TrialState.PRUNED)  # known: ask again
        return None  # every point TPE still wants has been tried: the space is used up


def _sample(space: ParameterSpace, rng: random.Random) -> Scalar:
    if space.values is not None:
        return rng.choice(space.values)
    assert space.low is not None and space.high is not None
    if space.is_int:
        if space.log:
            return round(math.exp(rng.uniform(math.log(space.low), math.log(space.high))))
        step = int(space.step or 1)
        return rng.randrange(int(space.low), int(space.high) + 1, step)
    if space.log:
        value = math.exp(rng.uniform(math.log(space.low), math.log(space.high)))
    elif space.step:
        value = space.low + space.step * rng.randrange(0, int((space.high - space.low) / space.step) + 1)
    else:
        value = rng.uniform(space.low, space.high)
    return float(f"{value:.4g}")  # four significant digits: readable, and plenty for a sweep


def distribution(space: ParameterSpace) -> Any:
    """The Optuna distribution of one parameter's search space."""
    import optuna

    if space.values is not None:
        return optuna.distributions.CategoricalDistribution(list(space.values))
    if space.is_int:
        step = int(space.step or 1) if not space.log else 1
        return optuna.distributions.IntDistribution(
            int(space.low or 0), int(space.high or 0), log=space.log, step=step
        )
    return optuna.distributions.FloatDistribution(
        space.low or 0.0, space.high or 0.0, log=space.log, step=space.step
    )


def _plain(value: Any) -> Scalar:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value  # type: ignore[no-any-return]
