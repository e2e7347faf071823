"""The judge: every keep/revert rule, unit-tested directly (no git, no threads, no I/O)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from skylab.experiment.objective import is_better
from skylab.loop.evidence import Evidence, Measurement, Rules
from skylab.loop.judge import Verdict
from skylab.loop.judge import judge as judge_evidence
from skylab.store.notes import Decision, Status

MIN = Rules("minimize", max_vram_gb=10)
MAX = Rules("maximize")


def ok(value: float, vram: float | None = 1000.0) -> Measurement:
    return Measurement(Status.SUCCESS, value, vram)


def judge(candidate: Measurement, reference: float | None, best: float | None, rules: Rules) -> Verdict:
    """The greedy case: one measurement each, σ unknown."""
    evidence = None if candidate.value is None else Evidence((candidate.value,))
    return judge_evidence(
        candidate, evidence, None if reference is None else Evidence((reference,)), best, None, rules
    )


def test_better_than_the_run_is_kept_and_better_than_all_is_the_best() -> None:
    verdict = judge(ok(1.0), 1.5, 1.2, MIN)
    assert verdict.decision is Decision.KEEP and verdict.new_best and verdict.status is Status.SUCCESS
    kept_not_best = judge(ok(1.3), 1.5, 1.2, MIN)  # beats its run, not another run's best
    assert kept_not_best.decision is Decision.KEEP and not kept_not_best.new_best


def test_ties_and_worse_values_are_reverted() -> None:
    for value in (1.5, 1.6):
        verdict = judge(ok(value), 1.5, 1.5, MIN)
        assert verdict.decision is Decision.REVERT and not verdict.new_best


def test_the_first_measurement_of_a_run_is_kept() -> None:
    verdict = judge(ok(7.0), reference=None, best=None, rules=MIN)
    assert verdict.decision is Decision.KEEP and verdict.new_best


def test_direction_maximize() -> None:
    assert judge(ok(0.9), 0.8, 0.85, MAX).new_best
    assert judge(ok(0.7), 0.8, 0.85, MAX).decision is Decision.REVERT


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.SUCCESS])
def test_anything_but_a_success_is_reverted_whatever_its_value(status: Status) -> None:
    verdict = judge(Measurement(status, 0.1, None, "why"), 1.5, 1.5, MIN)
    assert verdict.decision is Decision.REVERT and not verdict.new_best
    assert verdict.status is status and verdict.reason == "why"


@pytest.mark.parametrize("value", [math.nan, -math.inf, math.inf])
def test_a_non_finite_value_is_never_kept(value: float) -> None:
    assert judge(ok(value), 1.5, 1.5, MIN).decision is Decision.REVERT
    assert judge(ok(value), None, None, MIN).decision is Decision.REVERT
    assert not is_better(value, None, "minimize")


def test_a_missing_value_is_never_kept() -> None:
    assert judge(Measurement(Status.SUCCESS, None), None, None, MIN).decision is Decision.REVERT


def test_over_the_vram_limit_is_a_reverted_constraint_violation() -> None:
    verdict = judge(ok(0.5, vram=20_000.0), 1.5, 1.5, MIN)
    assert verdict.status is Status.CONSTRAINT and verdict.decision is Decision.REVERT
    assert verdict.reason == "peak VRAM 19.5 GB is over max_vram_gb = 10"
    assert judge(ok(0.5, vram=10 * 1024), 1.5, 1.5, MIN).decision is Decision.KEEP  # at the limit: fine
    unlimited = Rules("minimize", max_vram_gb=None)
    assert judge(ok(0.5, vram=20_000.0), 1.5, 1.5, unlimited).status is Status.SUCCESS  # no limit, no check


def test_a_failing_starting_point_is_hopeless_unless_the_machine_failed() -> None:
    from skylab.loop.judge import hopeless

    why = hopeless([], Status.CRASH, "crash: exited with status 1", True, "abcdef1234567")
    assert why.startswith("the starting point abcdef1234 does not train (crash: exited with status 1)")
    assert hopeless([], Status.INFRA, "infra: lost the host", True, "abcdef1234567") == ""
    assert hopeless([], Status.SUCCESS, "", True, "abcdef1234567") == ""


def test_five_identical_failures_in_a_row_are_hopeless_four_or_mixed_are_not() -> None:
    from skylab.loop.judge import failure_signature, hopeless

    same = failure_signature(Status.CRASH, "exited with status 1", "step 1\nRuntimeError: OOM\n\n")
    assert same == "crash: exited with status 1 (RuntimeError: OOM)"
    assert hopeless([same] * 3, Status.CRASH, same, False, "x") == ""
    assert hopeless([same] * 4, Status.CRASH, same, False, "x").startswith(
        "5 trials in a row failed the same way"
    )
    other = failure_signature(Status.TIMEOUT, "killed", "")
    assert hopeless([same, same, other, same], Status.CRASH, same, False, "x") == ""


def test_expected_trial_time_is_the_median_of_the_last_ten_successes() -> None:
    from skylab.loop.judge import expected_trial_seconds

    assert expected_trial_seconds([], 300.0, 30.0) == 330.0
    assert expected_trial_seconds([1.0, 2.0, 9.0], 300.0, 30.0) == 2.0
    assert expected_trial_seconds([100.0] * 5 + [1.0] * 10, 300.0, 30.0) == 1.0  # only the last ten count


# ----- noise: repeats, σ, confirmation -------------------------------------------------------------

NOISY = Rules("minimize", noise_samples=3, confirm=2, sigmas=2.0, min_delta=0.0)


def measured(*values: float) -> tuple[Measurement, Evidence]:
    return ok(sum(values) / len(values)), Evidence(values)


def test_pooled_sigma_pools_every_commit_measured_more_than_once() -> None:
    from skylab.loop.judge import pooled_sigma

    assert pooled_sigma([[1.0], [2.0]]) is None  # nothing measured twice: σ unknown
    assert pooled_sigma([[1.0, 1.0, 1.0]]) == 0.0  # identical repeats: deterministic
    # (1, 3): variance 2 with 1 dof; (5, 5, 8): squares 6 with 2 dof -> sqrt(8 / 3)
    assert pooled_sigma([[1.0, 3.0], [5.0, 5.0, 8.0], [9.0]]) == pytest.approx(math.sqrt(8 / 3))


def test_a_gain_within_noise_is_reverted_and_says_so() -> None:
    candidate, evidence = measured(2.30, 2.31, 2.32)  # mean 2.31: 0.01 better than 2.32
    reference = Evidence((2.31, 2.32, 2.33))
    verdict = judge_evidence(candidate, evidence, reference, 2.32, 0.01, NOISY)
    # se = 0.01 * sqrt(1/3 + 1/3) = 0.00816; the bar is 2 se = 0.0163 > 0.01
    assert verdict.decision is Decision.REVERT and not verdict.new_best
    assert verdict.why == "improvement 0.01 ≤ 2σ·se 0.01633 (n 3 vs 3): within noise"
    assert verdict.sem == pytest.approx(0.01 / math.sqrt(3))


def test_a_gain_beyond_noise_is_kept_with_its_numbers() -> None:
    candidate, evidence = measured(2.28, 2.29, 2.30)
    verdict = judge_evidence(candidate, evidence, Evidence((2.31, 2.32, 2.33)), 2.32, 0.01, NOISY)
    assert verdict.decision is Decision.KEEP and verdict.new_best
    assert verdict.why == "improvement 0.03 > 2σ·se 0.01633 (n 3 vs 3)"


def test_greedy_settings_are_exactly_the_strict_comparison() -> None:
    greedy = Rules("minimize")
    for value, kept in ((2.3199, True), (2.32, False), (2.33, False)):
        verdict = judge_evidence(ok(value), Evidence((value,)), Evidence((2.32,)), 2.32, 0.004, greedy)
        assert (verdict.decision is Decision.KEEP) is kept, value


def test_min_delta_is_a_floor_even_when_sigma_is_zero_or_unknown() -> None:
    rules = Rules("minimize", sigmas=2.0, min_delta=0.05)
    for sigma in (None, 0.0):
        small = judge_evidence(ok(2.28), Evidence((2.28,)), Evidence((2.32,)), 2.32, sigma, rules)
        assert small.decision is Decision.REVERT and small.why.startswith("improvement 0.04 ≤ min_delta 0.05")
        big = judge_evidence(ok(2.26), Evidence((2.26,)), Evidence((2.32,)), 2.32, sigma, rules)
        assert big.decision is Decision.KEEP


def test_maximize_with_noise() -> None:
    rules = Rules("maximize", sigmas=2.0)
    up, evidence = (ok(0.80), Evidence((0.79, 0.80, 0.81)))
    assert judge_evidence(up, evidence, Evidence((0.70, 0.71)), 0.71, 0.01, rules).decision is Decision.KEEP
    assert judge_evidence(up, evidence, Evidence((0.79, 0.80)), 0.8, 0.01, rules).decision is Decision.REVERT


def test_how_many_measurements_a_trial_gets() -> None:
    from skylab.loop.judge import measurements_wanted

    best = Evidence((2.32, 2.33, 2.31))
    assert measurements_wanted(ok(2.40), True, None, None, NOISY) == 3  # the starting point
    assert measurements_wanted(ok(2.30), False, best, 0.01, NOISY) == 3  # promising: confirmed
    assert measurements_wanted(ok(2.33), False, best, 0.01, NOISY) == 1  # not better: reverted at once
    assert measurements_wanted(ok(2.30), False, best, 0.0, NOISY) == 1  # deterministic: no repeats
    assert measurements_wanted(ok(2.30), False, best, None, NOISY) == 3  # σ unknown: confirm
    crashed = Measurement(Status.CRASH, None)
    assert measurements_wanted(crashed, True, None, None, NOISY) == 1
    assert measurements_wanted(ok(2.30), False, best, 0.01, Rules("minimize")) == 1  # greedy


def test_equal_but_simpler_is_kept_worse_or_more_code_is_not() -> None:
    rules = Rules("minimize", sigmas=2.0, keep_simpler=True)
    reference = Evidence((2.31, 2.32, 2.33))

    def verdict(values: tuple[float, ...], removed: int, rules: Rules = rules) -> Verdict:
        candidate = Measurement(Status.SUCCESS, sum(values) / len(values), 1000.0, "", removed)
        return judge_evidence(candidate, Evidence(values), reference, 2.32, 0.01, rules)

    simpler = verdict((2.32, 2.33, 2.34), removed=12)  # 0.01 worse: within 2σ·se = 0.0163
    assert simpler.decision is Decision.KEEP and simpler.new_best  # it replaces the best it equals
    assert (
        simpler.why
        == "simpler (12 lines fewer) and within noise of the best: improvement -0.01 ≥ -0.01633 (n 3 vs 3)"
    )
    assert verdict((2.34, 2.35, 2.36), removed=12).decision is Decision.REVERT  # worse beyond noise
    assert verdict((2.32, 2.33, 2.34), removed=-3).decision is Decision.REVERT  # more code
    off = Rules("minimize", sigmas=2.0, keep_simpler=False)
    assert verdict((2.32, 2.33, 2.34), removed=12, rules=off).decision is Decision.REVERT
    from skylab.loop.judge import measurements_wanted

    worse_at_first = Measurement(Status.SUCCESS, 2.33, None, "", 12)
    assert measurements_wanted(worse_at_first, False, reference, 0.01, NOISY) == 1
    assert measurements_wanted(worse_at_first, False, reference, 0.01, rules) == 1  # confirm = 0 here
    confirming = Rules("minimize", confirm=2, sigmas=2.0, keep_simpler=True)
    assert measurements_wanted(worse_at_first, False, reference, 0.01, confirming) == 3


def test_the_first_measurement_is_screened_against_the_bests_own_seed_zero() -> None:
    from skylab.loop.judge import measurements_wanted

    # The best's seed 0 was its worst run: against its mean a candidate's seed 0 of 2.90 looks
    # worse (2.90 > 2.867) and was reverted at once; seed for seed it beats 3.00, so it is confirmed.
    best = Evidence((3.00, 2.80, 2.80), seeds=(0, 1, 2))
    assert measurements_wanted(ok(2.90), False, best, 0.1, NOISY) == 3
    assert measurements_wanted(ok(3.05), False, best, 0.1, NOISY) == 1  # worse than its seed 0 too
    no_seeds = Evidence((3.00, 2.80, 2.80))  # an older note, seeds unknown: against the mean
    assert measurements_wanted(ok(2.90), False, no_seeds, 0.1, NOISY) == 1
    assert best.at_seed(1) == 2.80 and best.at_seed(7) is None and no_seeds.at_seed(0) is None


def test_a_zero_bar_reads_as_one_number() -> None:
    verdict = judge_evidence(ok(1.0), Evidence((1.0,)), Evidence((2.0,)), 2.0, 0.0, NOISY)
    assert verdict.decision is Decision.KEEP
    assert verdict.why == "improvement 1 > 0 (n 1 vs 1; σ 0: deterministic)"  # was "improvement 1 > 0 0"


def test_the_runs_sigma_counts_the_starting_point_measured_under_another_tag(tmp_path: Path) -> None:
    from skylab.loop.judge import run_sigma, sigma_of
    from skylab.store.gitstore import TrialStore
    from tests.factory import add_trial
    from tests.loop_experiment import make_loop_experiment

    store = TrialStore.open(make_loop_experiment(tmp_path / "q"))
    start = add_trial(store, "a", 2.50, measurements=[2.40, 2.50, 2.60], keep=True)  # spread 0.1
    add_trial(store, "b", 2.45, measurements=[2.449, 2.451], parent=start.commit, keep=False)
    history = store.load()
    own = sigma_of(t.note for t in history.for_tag("b"))
    assert own == pytest.approx(math.sqrt(0.000002))  # the run's own repeats alone: tiny
    pooled = run_sigma(history, "b", start.commit)
    assert pooled == pytest.approx(math.sqrt((0.02 + 0.000002) / 3))  # with the start's repeats
