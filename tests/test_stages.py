"""The staged keep rule: screen, early keep, futility, the last bar, same-seed pairs (pure)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skylab.experiment.config import DecisionConfig
from skylab.loop import stages
from skylab.loop.evidence import Evidence, Measurement, Rules
from skylab.loop.judge import judge, measurements_wanted, same_seed_differences
from skylab.loop.stages import Step
from skylab.store.notes import Decision, Status, TrialNote

DEFAULTS = DecisionConfig()
STAGED = Rules(
    "minimize",
    noise_samples=DEFAULTS.noise_samples,
    confirm=DEFAULTS.confirm,
    sigmas=DEFAULTS.sigmas,
    filter_sigmas=DEFAULTS.filter_sigmas,
    early_sigmas=DEFAULTS.early_sigmas,
    futility=DEFAULTS.futility,
    paired=DEFAULTS.paired,
)
OLD = Rules("minimize", noise_samples=3, confirm=2, sigmas=2.0)  # Rules' own defaults: the rule before
BEST = Evidence((3.00, 2.99, 3.01), (0, 1, 2))
SIGMA = 0.01


def seeds(*values: float) -> Evidence:
    return Evidence(values, tuple(range(len(values))))


def test_the_defaults_are_the_staged_rule() -> None:
    assert (DEFAULTS.filter_sigmas, DEFAULTS.early_sigmas, DEFAULTS.futility, DEFAULTS.sigmas) == (
        1.0,
        3.0,
        0.05,
        1.5,
    )
    assert (DEFAULTS.noise_samples, DEFAULTS.confirm, DEFAULTS.paired) == (3, 2, True)


def test_the_first_measurement_must_gain_one_sigma_over_the_best_at_its_seed() -> None:
    # The best's seed 0 measured 3.00: a gain of 0.005 (half a σ) is screened out, 0.015 passes.
    assert stages.step(seeds(2.995), BEST, SIGMA, None, STAGED) == (
        Step.REVERT,
        "screened out: improvement 0.005 ≤ 1σ 0.01 over the best's seed 0 (1 measurement)",
    )
    assert stages.step(seeds(2.985), BEST, SIGMA, None, STAGED)[0] is Step.MEASURE
    first = Measurement(Status.SUCCESS, 2.995)
    assert measurements_wanted(first, False, BEST, SIGMA, STAGED) == 1
    assert measurements_wanted(replace(first, value=2.985), False, BEST, SIGMA, STAGED) == 3
    # The old rule confirms any first measurement that beats the best's seed 0 at all.
    assert measurements_wanted(first, False, BEST, SIGMA, OLD) == 3


def test_a_clear_gain_is_kept_after_two_measurements() -> None:
    # gain 0.045; se = 0.01 · sqrt(1/2 + 1/3) = 0.00913; 3 se = 0.0274
    step, why = stages.step(seeds(2.95, 2.96), BEST, SIGMA, None, STAGED)
    assert step is Step.KEEP
    assert why == "kept after 2 of 3: improvement 0.045 > 3σ·se 0.02739 (n 2 vs 3)"
    verdict = judge(Measurement(Status.SUCCESS, 2.955), seeds(2.95, 2.96), BEST, 3.0, SIGMA, STAGED)
    assert verdict.decision is Decision.KEEP and verdict.new_best and verdict.why == why


def test_a_futile_candidate_stops_after_two_and_a_hopeful_one_goes_on() -> None:
    # mean gain -0.005 after two; the last bar is 1.5 · 0.01 · sqrt(1/3 + 1/3) = 0.0122, and the
    # third measurement moves the mean by about σ/√6 = 0.004: no chance.
    step, why = stages.step(seeds(2.99, 3.02), BEST, SIGMA, None, STAGED)
    assert step is Step.REVERT and why.startswith("stopped after 2 of 3: improvement -0.005 has a ")
    assert why.endswith(" % chance to clear the final bar (n 2 vs 3)")
    # A gain of 0.01 after two: a 29 % chance to end above 0.0122. Measured again.
    assert stages.step(seeds(2.985, 2.995), BEST, SIGMA, None, STAGED)[0] is Step.MEASURE
    assert judge(
        Measurement(Status.SUCCESS, 3.005), seeds(2.99, 3.02), BEST, 3.0, SIGMA, STAGED
    ).decision is (Decision.REVERT)


def test_the_chance_to_clear_is_what_the_predictive_model_says() -> None:
    comparison = stages.compare(seeds(2.985, 2.995), BEST, SIGMA, None, STAGED)
    chance = stages.chance_to_clear(comparison, 3, STAGED)
    bar = 1.5 * SIGMA * math.sqrt(1 / 3 + 1 / 3)
    spread = (1 / 3) * SIGMA * math.sqrt(1 / 2 + 1)
    assert chance == pytest.approx(1 - 0.5 * (1 + math.erf((bar - 0.01) / (spread * math.sqrt(2)))))
    assert 0.25 < chance < 0.33


def test_the_last_measurement_is_judged_at_one_and_a_half_standard_errors() -> None:
    # Three each: se = 0.01 · sqrt(2/3) = 0.00816, so the bar is 1.5 se = 0.0122 (the old 2 se: 0.0163).
    within = seeds(2.99, 2.98, 3.00)  # gain 0.01
    assert stages.step(within, BEST, SIGMA, None, STAGED)[0] is Step.REVERT
    between = seeds(2.987, 2.987, 2.987)  # gain 0.013: kept at 1.5 se, not at the old 2 se
    assert stages.step(between, BEST, SIGMA, None, STAGED)[0] is Step.KEEP
    assert stages.step(between, BEST, SIGMA, None, OLD)[0] is Step.REVERT


def test_a_simpler_change_is_measured_in_full_before_it_is_judged() -> None:
    assert stages.step(seeds(3.05), BEST, SIGMA, None, STAGED, simpler=True)[0] is Step.MEASURE
    assert stages.step(seeds(3.05, 3.0), BEST, SIGMA, None, STAGED, simpler=True)[0] is Step.MEASURE


def test_same_seed_pairs_cancel_a_seed_effect_when_they_are_the_more_precise() -> None:
    # Seeds differ a lot (σ 0.1 within a commit) but a change moves every seed alike: each of the
    # candidate's seeds is 0.02 better than the best's same seed, and σ_d (from earlier trials) is 0.002.
    best = Evidence((3.10, 3.00, 2.90), (0, 1, 2))
    candidate = Evidence((3.08, 2.98, 2.88), (0, 1, 2))
    step, why = stages.step(candidate, best, 0.1, 0.002, STAGED)
    assert step is Step.KEEP and why.endswith("(paired on 3 seeds)")
    assert stages.step(candidate, best, 0.1, 0.002, replace(STAGED, paired=False))[0] is Step.REVERT
    assert stages.step(candidate, best, 0.1, None, STAGED)[0] is Step.REVERT  # σ_d not known yet
    # Pairs are used only when they are the more precise comparison, and when every seed has a partner.
    assert not stages.compare(candidate, best, 0.01, 0.05, STAGED).paired
    two_seeds = Evidence((3.10, 3.00), (0, 1))
    assert not stages.compare(candidate, two_seeds, 0.1, 0.002, STAGED).paired


def test_same_seed_differences_pair_measurements_by_seed() -> None:
    note = TrialNote.begun("t", 2, "val_bpb", "", "", "")
    note.measurements, note.seeds = [2.9, 2.8, 2.7], [0, 1, 2]
    reference = TrialNote.begun("t", 1, "val_bpb", "", "", "")
    reference.measurements, reference.seeds = [3.0, 3.0], [0, 2]
    assert same_seed_differences(note, reference) == pytest.approx([-0.1, -0.3])
    reference.seeds = []  # an older note without seeds: nothing pairs
    assert same_seed_differences(note, reference) == []


def test_a_deterministic_experiment_decides_on_one_measurement() -> None:
    best = Evidence((3.0, 3.0, 3.0), (0, 1, 2))
    assert stages.step(seeds(2.999), best, 0.0, None, STAGED) == (
        Step.KEEP,
        "improvement 0.001 > 0 (n 1 vs 3; σ 0: deterministic)",
    )


def old_rule(candidate: Evidence, reference: Evidence, sigma: float) -> tuple[int, bool]:
    """The rule before the staged one, restated: confirm twice what beats the best's seed 0; keep
    a mean that beats the best's by more than 2σ·sqrt(1/n + 1/m)."""
    screen = reference.at_seed(0)
    wanted = 3 if candidate.values[0] < (reference.mean if screen is None else screen) else 1
    bar = 2 * sigma * math.sqrt(1 / candidate.n + 1 / reference.n)
    return wanted, reference.mean - candidate.mean > bar


values = st.floats(2.9, 3.1, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    best=st.lists(values, min_size=1, max_size=3),
    candidate=st.lists(values, min_size=3, max_size=3),
    sigma=st.floats(0.001, 0.1),
)
def test_the_old_settings_reproduce_the_old_rule(
    best: list[float], candidate: list[float], sigma: float
) -> None:
    rules = replace(STAGED, filter_sigmas=0.0, early_sigmas=math.inf, futility=0.0, sigmas=2.0, paired=False)
    reference, measured = Evidence(tuple(best), tuple(range(len(best)))), seeds(*candidate)
    wanted, kept = old_rule(measured, reference, sigma)
    first = Measurement(Status.SUCCESS, candidate[0])
    assert measurements_wanted(first, False, reference, sigma, rules) == wanted
    assert stages.step(seeds(*candidate[:2]), reference, sigma, None, rules)[0] is Step.MEASURE
    verdict = judge(Measurement(Status.SUCCESS, measured.mean), measured, reference, None, sigma, rules)
    assert (verdict.decision is Decision.KEEP) == kept
