"""The metric's direction: which of two values is better. Below config and the judge, which both ask."""

from __future__ import annotations

import math


def is_better(candidate: float, incumbent: float | None, direction: str) -> bool:
    """Whether `candidate` strictly beats `incumbent` ("minimize" or "maximize"); a non-finite
    candidate never does, and anything finite beats no incumbent."""
    if not math.isfinite(candidate):
        return False
    if incumbent is None:
        return True
    return candidate < incumbent if direction == "minimize" else candidate > incumbent
