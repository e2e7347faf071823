"""The keep rule, stage by stage: after each measurement of a candidate, keep it, revert it, or
measure it again. Pure: numbers in, a step and its reason out.

A candidate is measured at most 1 + confirm times (seeds 0, 1, ...), always against the run's best:
- after the first, it is screened out unless it beats the best's value at the same seed (the
  best's mean when that seed is unknown) by more than `filter_sigmas` · σ;
- after each later one but the last, it is kept at once when its mean gain clears `early_sigmas`
  · se, and reverted when the chance that the measurements still to come lift the mean over the
  final bar is below `futility` (judged with the gain measured so far);
- after the last, it is kept when its mean gain clears max(min_delta, `sigmas` · se).

The gain is the mean of same-seed differences (paired) when every measurement of the candidate
has a partner in the best's and the run's paired differences say that is the more precise
comparison; otherwise the difference of the two means. σ is the run's pooled σ of one
measurement; σ_d that of one same-seed difference. An experiment that proved deterministic
(σ = 0) gets no confirmations: its one measurement is the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from statistics import NormalDist

from skylab.loop.evidence import Evidence, Rules, improvement


class Step(Enum):
    MEASURE = "measure"  # too early to tell: measure the candidate again
    KEEP = "keep"
    REVERT = "revert"


@dataclass(frozen=True)
class Comparison:
    """A candidate's gain over the best and how precisely it is known."""

    gain: float  # the candidate's mean improvement over the best (negative: worse)
    se: float | None  # its standard error (None: σ unknown)
    unit: float | None  # σ of one more measurement's gain: σ, or σ_d when paired
    n: int
    n_reference: int
    paired: bool

    def counts(self) -> str:
        if self.paired:
            return f"(paired on {self.n} seed{'s' if self.n > 1 else ''})"
        return f"(n {self.n} vs {self.n_reference})"

    def se_after(self, n: int) -> float | None:
        """The standard error the gain will have once the candidate has `n` measurements."""
        if self.unit is None:
            return None
        return (
            self.unit / math.sqrt(n) if self.paired else self.unit * math.sqrt(1 / n + 1 / self.n_reference)
        )


def compare(
    candidate: Evidence, reference: Evidence, sigma: float | None, sigma_pair: float | None, rules: Rules
) -> Comparison:
    """The candidate's gain over `reference`: paired when `rules.paired`, every candidate seed has
    a partner, σ_d is known and paired is the smaller standard error; else the two means'."""
    n, m = candidate.n, reference.n
    unpaired_se = None if sigma is None else sigma * math.sqrt(1 / n + 1 / m)
    partners = [reference.at_seed(seed) for seed in candidate.seeds] if candidate.seeds else [None]
    if rules.paired and sigma_pair is not None and None not in partners and len(partners) == n:
        paired_se = sigma_pair / math.sqrt(n)
        if unpaired_se is None or paired_se < unpaired_se:
            differences = [
                improvement(value, partner, rules.direction)
                for value, partner in zip(candidate.values, partners, strict=True)
                if partner is not None
            ]
            return Comparison(math.fsum(differences) / n, paired_se, sigma_pair, n, m, True)
    gain = improvement(candidate.mean, reference.mean, rules.direction)
    return Comparison(gain, unpaired_se, sigma, n, m, False)


def last_measurement(rules: Rules, sigma: float | None) -> int:
    """How many measurements a candidate gets at most: 1 + confirm, or 1 once σ = 0."""
    return 1 if sigma == 0.0 else 1 + rules.confirm


def step(
    candidate: Evidence,
    reference: Evidence,
    sigma: float | None,
    sigma_pair: float | None,
    rules: Rules,
    simpler: bool = False,
) -> tuple[Step, str]:
    """What follows the candidate's measurements so far, and why in one line. A `simpler` change
    (keep_simpler, and it removes code) is never stopped early: equal-but-simpler needs them all."""
    last = last_measurement(rules, sigma)
    if candidate.n >= last:
        return final(compare(candidate, reference, sigma, sigma_pair, rules), sigma, rules)
    if simpler:
        return Step.MEASURE, "simpler: measured in full"
    if candidate.n == 1:
        return screen(candidate, reference, sigma, sigma_pair, rules)
    comparison = compare(candidate, reference, sigma, sigma_pair, rules)
    if comparison.se is None:
        return Step.MEASURE, "σ unknown"
    early = max(rules.min_delta, rules.early_sigmas * comparison.se)
    if comparison.gain > early:
        return Step.KEEP, (
            f"kept after {candidate.n} of {last}: improvement {comparison.gain:.4g} > "
            f"{rules.early_sigmas:g}σ·se {early:.4g} {comparison.counts()}"
        )
    chance = chance_to_clear(comparison, last, rules)
    if chance < rules.futility:
        return Step.REVERT, (
            f"stopped after {candidate.n} of {last}: improvement {comparison.gain:.4g} has a "
            f"{100 * chance:.2g} % chance to clear the final bar {comparison.counts()}"
        )
    return Step.MEASURE, f"improvement {comparison.gain:.4g} so far {comparison.counts()}"


def screen(
    candidate: Evidence, reference: Evidence, sigma: float | None, sigma_pair: float | None, rules: Rules
) -> tuple[Step, str]:
    """The first measurement's screen: against the best's value at the same seed when it has one,
    unless (with `rules.paired`) the run's σ_d shows the best's mean the more precise reference:
    a seed with no effect of its own makes one same-seed difference noisier (σ_d = √2·σ) than the
    difference from a mean of n (σ·sqrt(1 + 1/n))."""
    seed = candidate.seeds[0] if candidate.seeds else 0
    partner = reference.at_seed(seed)
    mean_is_sharper = (
        sigma is not None and sigma_pair is not None and sigma_pair >= sigma * math.sqrt(1 + 1 / reference.n)
    )
    if rules.paired and mean_is_sharper:
        partner = None
    against = f"the best's seed {seed}" if partner is not None else "the best's mean"
    gain = improvement(candidate.values[0], reference.mean if partner is None else partner, rules.direction)
    bar = 0.0 if sigma is None else rules.filter_sigmas * sigma
    if gain > bar:
        return Step.MEASURE, f"passed the screen: improvement {gain:.4g} over {against}"
    if bar == 0:
        return Step.REVERT, f"screened out: improvement {gain:.4g} ≤ 0 over {against} (1 measurement)"
    return Step.REVERT, (
        f"screened out: improvement {gain:.4g} ≤ {rules.filter_sigmas:g}σ {bar:.4g} over {against} "
        "(1 measurement)"
    )


def final_bar(comparison: Comparison, rules: Rules, n: int | None = None) -> tuple[float, str]:
    """The improvement the mean must exceed with `n` measurements (default: as many as it has),
    and the bar's name ("" when it is a plain 0)."""
    se = comparison.se_after(comparison.n if n is None else n)
    noise = 0.0 if se is None else rules.sigmas * se
    if noise > 0 and noise > rules.min_delta:
        return noise, f"{rules.sigmas:g}σ·se"
    return rules.min_delta, "min_delta" if rules.min_delta > 0 else ""


def final(comparison: Comparison, sigma: float | None, rules: Rules) -> tuple[Step, str]:
    """The last measurement's verdict: the mean gain against max(min_delta, sigmas · se)."""
    bar, name = final_bar(comparison, rules)
    compared = f"{name} {bar:.4g}" if name else f"{bar:.4g}"  # "> 0", never "> 0 0"
    counts = comparison.counts()
    if sigma == 0.0:
        counts = counts[:-1] + "; σ 0: deterministic)"
    if comparison.gain > bar:
        return Step.KEEP, f"improvement {comparison.gain:.4g} > {compared} {counts}"
    within = ": within noise" if name.endswith("σ·se") else ""
    return Step.REVERT, f"improvement {comparison.gain:.4g} ≤ {compared} {counts}{within}"


def chance_to_clear(comparison: Comparison, last: int, rules: Rules) -> float:
    """The predictive chance that, after the remaining measurements, the mean gain clears the
    final bar: the true gain is taken as N(gain, se²), each new measurement's gain as that plus
    noise of σ (σ_d when paired), so the final mean is N(gain, (k/(n+k))² · unit² · (1/n + 1/k))."""
    n, k = comparison.n, last - comparison.n
    unit = comparison.unit
    bar, _ = final_bar(comparison, rules, last)
    if unit is None or unit == 0 or k <= 0:
        return 1.0 if comparison.gain > bar else 0.0
    spread = k / (n + k) * unit * math.sqrt(1 / n + 1 / k)
    return 1 - NormalDist(comparison.gain, spread).cdf(bar)
