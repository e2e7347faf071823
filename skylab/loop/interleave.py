"""The best measured again beside a candidate, so that a machine's drift hits both alike.

A candidate measured now and a best measured an hour ago differ by the change and by whatever the
machine did in between (another job's load, a clock throttled, a neighbour on the same disk). When
a candidate is worth confirming (`interleave = "always"`), or when its throughput shows the
machine is not what it was when the best was measured (`"auto"`, the default: its throughput, from
the summary train.py prints, differs from the best's latest by more than `throughput_tolerance`),
the best's commit is measured again on the same seeds, alternating with the candidate's own
repeats: candidate seed 0, best seed 0, candidate seed 1, best seed 1, ... Each pair is then as
close in time as two measurements can be, and the candidate is judged against these contemporaneous
values of the best, never against the old ones.

The re-measurements are recorded in the candidate's note (`paired_*` lines); they refine the
best's own estimate for later comparisons (see `refined_evidence`: each seed's latest value, every
value in its mean), and count as compute. Within a trial, a pair whose throughput ratio departs from
its first pair's by more than the tolerance was measured while the machine changed under it: it is
measured again once, and flagged in the verdict if it still departs.

Pure: notes in, numbers and reasons out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from skylab.loop.evidence import Evidence
from skylab.store.history import Trial
from skylab.store.notes import TrialNote

PAIRED_WITH = "paired_with"  # the best re-measured beside the trial, by name
PAIRED_MEASUREMENTS = "paired_measurements"  # its values, in the trial's seed order
PAIRED_SEEDS = "paired_seeds"
PAIRED_THROUGHPUT = "paired_throughput"
PAIRED_BECAUSE = "paired_because"  # why the best was re-measured: screened in, or a throughput change
PAIRED_FLAG = "paired_flag"  # a pair judged although its throughput was uneven, or pairing given up
THROUGHPUT = "throughput"  # of each successful measurement, as `throughput` reads it


@dataclass(frozen=True)
class Beside:
    """The best a candidate's pairs are measured with: its commit and name, and why."""

    commit: str
    name: str
    because: str


def throughput(summary: Mapping[str, object], train_seconds: float | None) -> float | None:
    """How fast a measurement trained, from its summary: `tok_per_sec` when printed, else
    `total_tokens_M` or `num_steps` per training second (None when it says none of these)."""

    def number(key: str) -> float | None:
        value = summary.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) and value > 0 else None

    direct = number("tok_per_sec")
    if direct is not None:
        return direct
    if train_seconds is None or not train_seconds > 0:
        return None
    for key, unit in (("total_tokens_M", 1e6), ("num_steps", 1.0)):
        amount = number(key)
        if amount is not None:
            return amount * unit / train_seconds
    return None


def departs(value: float, reference: float, tolerance: float) -> bool:
    """Whether `value` differs from `reference` by more than the fraction `tolerance`."""
    return reference > 0 and abs(value / reference - 1) > tolerance


def pairing_reason(
    mode: str, screened_in: bool, candidate: float | None, best: float | None, tolerance: float
) -> str:
    """Why the best should be measured beside a candidate now ("" when it should not): with
    `always`, any candidate that passed the screen; with `auto` (and `always`), one whose latest
    throughput (`candidate`) departs from the best's latest (`best`) by more than `tolerance`."""
    if mode == "never":
        return ""
    if candidate is not None and best is not None and departs(candidate, best, tolerance):
        change = 100 * (candidate / best - 1)
        return f"throughput {candidate:.4g} vs the best's {best:.4g} ({change:+.0f} %)"
    if mode == "always" and screened_in:
        return "screened in"
    return ""


def number_list(other: Mapping[str, str], key: str) -> list[float]:
    """A JSON list of numbers among a note's other lines ([] when absent or unreadable)."""
    try:
        values = json.loads(other.get(key, "[]"))
    except ValueError:
        return []
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        return []
    return [float(v) for v in values]


def paired_evidence(note: TrialNote, best_name: str | None = None) -> Evidence | None:
    """The best's values measured beside `note`'s trial, with their seeds (None when it has none,
    or when they were of another best than `best_name`)."""
    name = note.other.get(PAIRED_WITH)
    if not name or (best_name is not None and name != best_name):
        return None
    values = number_list(note.other, PAIRED_MEASUREMENTS)
    seeds = [int(s) for s in number_list(note.other, PAIRED_SEEDS)]
    if not values:
        return None
    return Evidence(tuple(values), tuple(seeds) if len(seeds) == len(values) else ())


def pair_differences(note: TrialNote) -> list[float] | None:
    """The trial's values minus the best's measured beside it, seed for seed (None: not paired)."""
    paired = paired_evidence(note)
    if paired is None:
        return None
    return [
        value - partner
        for seed, value in zip(note.seeds, note.measurements, strict=False)
        if (partner := paired.at_seed(seed)) is not None
    ]


def refined_evidence(reference: Trial, trials: Iterable[Trial]) -> Evidence | None:
    """Every measurement of `reference`: its own, then those made beside later candidates (among
    `trials`, in order), with their seeds; at a seed measured more than once the latest stands
    for it (see Evidence.at_seed). None when it has none."""
    note = reference.note
    if note is None:
        return None
    values = list(note.samples())
    seeds = list(note.seeds) if len(note.seeds) == len(values) else []
    for trial in trials:
        paired = paired_evidence(trial.note, reference.name) if trial.note is not None else None
        if paired is None or trial.commit == reference.commit:
            continue
        values += paired.values
        seeds = seeds + list(paired.seeds) if seeds and paired.seeds else []
    if not values:
        return None
    return Evidence(tuple(values), tuple(seeds) if len(seeds) == len(values) else ())


def latest_throughput(reference: Trial, trials: Iterable[Trial]) -> float | None:
    """The throughput of `reference`'s latest measurement: beside a later candidate, else its own."""
    latest = None
    if reference.note is not None:
        own = number_list(reference.note.other, THROUGHPUT)
        latest = own[-1] if own else None
    for trial in trials:
        note = trial.note
        if note is not None and note.other.get(PAIRED_WITH) == reference.name:
            beside = number_list(note.other, PAIRED_THROUGHPUT)
            latest = beside[-1] if beside else latest
    return latest


def uneven_pairs(ratios: Mapping[int, float], tolerance: float) -> list[int]:
    """The seeds of the pairs whose throughput ratio (candidate / best, by seed) departs from the
    first pair's by more than `tolerance`: the code's effect on throughput is the same in every
    pair, the machine's is not."""
    ordered = sorted(ratios.items())
    if len(ordered) < 2:
        return []
    first = ordered[0][1]
    return [seed for seed, ratio in ordered[1:] if departs(ratio, first, tolerance)]


def reference_evidence(note: TrialNote, reference: Trial | None, trials: Iterable[Trial]) -> Evidence | None:
    """What a candidate (`note`) is compared with: the values of `reference` measured beside it
    when it has them, else every measurement of `reference` (see `refined_evidence`)."""
    if reference is None:
        return None
    paired = paired_evidence(note, reference.name)
    return paired if paired is not None else refined_evidence(reference, trials)
