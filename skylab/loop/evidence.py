"""What the judge weighs: one trial's measurement, every measurement of a commit, and the rules.

Plain values with no behaviour beyond arithmetic, below both the judge and the keep rule's
stages, which read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from skylab.store.notes import Status


@dataclass(frozen=True)
class Measurement:
    """What a trial produced: its status as the runner saw it, its metric and its peak VRAM."""

    status: Status
    value: float | None
    peak_vram_mb: float | None = None
    reason: str = ""
    lines_removed: int = 0  # net lines of code its change removed (negative: added)
    train_seconds: float | None = None  # training time of one measurement, as train.py reported it
    mismatch: str = ""  # why it is not comparable with the run's starting point (see setup_mismatch)


@dataclass(frozen=True)
class Rules:
    """The experiment's decision settings (see `experiment.config.DecisionConfig`)."""

    direction: str  # "minimize" or "maximize"
    max_vram_gb: float | None = None
    noise_samples: int = 1
    confirm: int = 0
    sigmas: float = 0.0
    min_delta: float = 0.0
    keep_simpler: bool = False  # keep a change that removes code and is within noise of the best
    time_budget: float | None = None  # seconds of training a trial may use (5 % and 2 s of slack)
    # The staged rule (see loop.stages); these defaults are the rule before it, the config's are its own.
    filter_sigmas: float = 0.0
    early_sigmas: float = math.inf
    futility: float = 0.0
    paired: bool = False
    interleave: str = "never"  # when the best is measured beside a candidate (see loop.interleave)
    throughput_tolerance: float = 0.10


@dataclass(frozen=True)
class Evidence:
    """Every successful measurement of one commit, in seed order, with the seed of each when known
    (`seeds` empty for older notes)."""

    values: tuple[float, ...]
    seeds: tuple[int, ...] = ()

    def at_seed(self, seed: int) -> float | None:
        """The latest measurement made with `seed` (None when there is none, or seeds are unknown):
        a best measured again beside a later candidate is what it is now."""
        if len(self.seeds) != len(self.values) or seed not in self.seeds:
            return None
        return self.values[len(self.seeds) - 1 - self.seeds[::-1].index(seed)]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)


def improvement(candidate: float, reference: float, direction: str) -> float:
    """How much better `candidate` is than `reference` in the metric's direction (negative: worse)."""
    return reference - candidate if direction == "minimize" else candidate - reference
