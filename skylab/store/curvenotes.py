"""A trial's learning curves: each measurement's (step, loss, training seconds) as its train.py
printed them, thinned to CURVE_POINTS, in a notes ref of their own (`refs/notes/skylab-curves`).

Kept apart from the trial's note on purpose: `git log` shows refs/notes/skylab, and history reads
every note of it, so curves there would make both slower with every trial; here they are read
only when someone asks for one trial's curves, yet they travel with push and pull like the notes.
Curves are state (what training printed), written once per trial, never derived from anything.

    skylab-curves: 1
    seed 0: [[1,10.41,0.31],[40,6.2,12.5],...,[930,3.02,300.0]]
    seed 1: ...

A point's step or seconds is null when the progress line did not print it; a loss may be NaN
(the point where a measurement diverged).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

CURVES_HEADER = "skylab-curves"
CURVES_VERSION = 1
CURVE_POINTS = 48  # points kept of one measurement's curve: its first, its last and evenly between

Point = tuple[int | None, float, float | None]  # step, loss, training seconds


def thin(points: Sequence[Point], limit: int = CURVE_POINTS) -> list[Point]:
    """At most `limit` of `points`, evenly spaced, the first and the last always among them."""
    if len(points) <= limit:
        return list(points)
    last = len(points) - 1
    picked = sorted({round(i * last / (limit - 1)) for i in range(limit)})
    return [points[i] for i in picked]


def encode_points(points: Sequence[Point]) -> str:
    """One measurement's points as one JSON line (losses to 5 significant digits)."""
    rounded = [
        [step, float(f"{loss:.5g}") if math.isfinite(loss) else loss, None if s is None else round(s, 2)]
        for step, loss, s in points
    ]
    return json.dumps(rounded, separators=(",", ":"))


def decode_points(text: str) -> list[Point]:
    """`encode_points` read back ([] when unreadable)."""
    try:
        raw = json.loads(text)
    except ValueError:
        return []
    points: list[Point] = []
    if not isinstance(raw, list):
        return []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[1], int | float)):
            return []
        step, loss, seconds = item
        points.append(
            (
                step if isinstance(step, int) and not isinstance(step, bool) else None,
                float(loss),
                float(seconds)
                if isinstance(seconds, int | float) and not isinstance(seconds, bool)
                else None,
            )
        )
    return points


def format_curves(curves: dict[int, str]) -> str:
    """The curves note of a trial: seed -> that measurement's encoded points."""
    lines = [f"{CURVES_HEADER}: {CURVES_VERSION}"]
    lines += [f"seed {seed}: {text}" for seed, text in sorted(curves.items()) if text]
    return "\n".join(lines) + "\n"


def parse_curves(text: str) -> dict[int, list[Point]]:
    """A curves note read back: seed -> points ({} when it is not one)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith(f"{CURVES_HEADER}:"):
        return {}
    curves = {}
    for line in lines[1:]:
        key, sep, value = line.partition(": ")
        name, _, seed = key.partition(" ")
        if sep and name == "seed" and seed.lstrip("-").isdigit():
            points = decode_points(value)
            if points:
                curves[int(seed)] = points
    return curves
