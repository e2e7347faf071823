"""Decisions that beat the noise, end to end: seeded repeats, σ, confirmation, resume, settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from skylab.store.gitstore import TrialStore
from tests.conftest import SKYLAB, run_skylab
from tests.loop_experiment import GREEDY, OLD_RULE, make_loop_experiment
from tests.test_loop import orchestrate, trials, wait_for

# Z has no true effect; it only picks the 'noise' each seed gets. Z = 1's first measurement happens
# to be lower than the baseline's, its later ones are not: a lucky draw, the way machine load makes one.
LUCKY_NOISE = {0: [0.0, 0.02, -0.02], 1: [-0.015, 0.02, 0.0]}


def notes(exp: Path) -> list:  # type: ignore[type-arg]
    return [t.note for t in TrialStore.open(exp).load().trials]


def test_greedy_keeps_a_lucky_no_effect_change_the_noise_rule_does_not(tmp_path: Path) -> None:
    greedy = make_loop_experiment(
        tmp_path / "greedy", parameters="Z = [0, 1]", decision=GREEDY, NOISE=LUCKY_NOISE
    )
    orchestrate(greedy)
    baseline, lucky = trials(greedy)
    assert (baseline["value"], lucky["value"]) == (11.0, 10.985)
    assert lucky["decision"] == "keep"  # one lucky measurement beat another: noise, kept

    careful = make_loop_experiment(
        tmp_path / "careful", parameters="Z = [0, 1]", decision=OLD_RULE, NOISE=LUCKY_NOISE
    )
    _, log = orchestrate(careful)
    baseline, lucky = trials(careful)
    assert baseline["measurements"] == [11.0, 11.02, 10.98] and baseline["value"] == pytest.approx(11.0)
    assert lucky["measurements"] == [10.985, 11.02, 11.0]  # promising at first, so confirmed twice
    assert lucky["decision"] == "revert" and lucky["value"] == pytest.approx(11.001667, abs=1e-6)
    start, candidate = notes(careful)
    assert start.seeds == [0, 1, 2] and candidate.seeds == [0, 1, 2]
    assert candidate.sigma == pytest.approx(0.02, rel=0.2) and candidate.sem == pytest.approx(
        candidate.sigma / 3**0.5
    )
    assert candidate.verdict.startswith("improvement -0.001667 ≤ 2σ·se") and "(n 3 vs 3)" in candidate.verdict
    assert TrialStore.open(careful).best() == baseline["commit"]
    assert "→ revert (improvement -0.001667 ≤ 2σ·se" in log and "within noise)" in log
    table = run_skylab("history", "-C", str(careful), check=True).stdout
    assert "11.0017 ±0.01" in table and "(3)" in table  # mean ± se (n)


def test_a_real_effect_is_confirmed_and_kept(tmp_path: Path) -> None:
    exp = make_loop_experiment(
        tmp_path / "q", parameters="X = [0, 1]", decision=None, NOISE={0: [0.0, 0.02, -0.02]}
    )
    orchestrate(exp)
    baseline, better = trials(exp)
    assert better["parent"] == baseline["commit"] and better["decision"] == "keep"
    assert better["measurements"] == [6.0, 6.02]  # 250σ better after two: the third is not spent
    assert better["value"] == pytest.approx(6.01) and better["is_best"]
    assert notes(exp)[1].verdict.startswith("kept after 2 of 3: improvement 4.99 > 3σ·se")
    assert not list((exp / ".git" / "skylab" / "measuring").glob("*.json"))  # nothing left half-measured

    old = make_loop_experiment(
        tmp_path / "o", parameters="X = [0, 1]", decision=OLD_RULE, NOISE={0: [0.0, 0.02, -0.02]}
    )
    orchestrate(old)
    assert len(trials(old)[1]["measurements"]) == 3
    assert notes(old)[1].verdict.startswith("improvement 5 > 2σ·se")


def test_a_deterministic_experiment_pays_two_repeats_of_its_start_and_no_more(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", decision=None)  # no noise: every seed measures the same
    _, log = orchestrate(exp, max_trials=4)
    start, *candidates = notes(exp)
    assert start.measurements == [11.0, 11.0, 11.0] and start.seeds == [0, 1, 2]
    assert all(len(n.measurements) == 1 for n in candidates)  # no confirmation is spent
    assert log.count("the experiment is deterministic") == 1
    assert [n.decision.value for n in candidates] == [r["decision"] for r in trials(exp)[1:]]
    assert candidates[0].sigma == 0.0


def test_maximize_with_noise_keeps_only_what_beats_it(tmp_path: Path) -> None:
    noise = {0: [0.0, 0.02, -0.02], 1: [0.015, -0.02, 0.0]}
    exp = make_loop_experiment(
        tmp_path / "q",
        direction="maximize",
        parameters="Z = [0, 1]\nX = [0, 1]",
        decision=OLD_RULE,
        NOISE=noise,
    )
    orchestrate(exp)
    rows = {(r["params"]["Z"], r["params"]["X"]): r for r in trials(exp)}
    # X = 1 lowers the quadratic, which is worse when maximizing; Z = 1 is a lucky draw: both reverted.
    assert rows[(1, 0)]["decision"] == "revert" and len(rows[(1, 0)]["measurements"]) == 3
    assert rows[(0, 1)]["decision"] == "revert" and len(rows[(0, 1)]["measurements"]) == 1
    assert TrialStore.open(exp).best() == rows[(0, 0)]["commit"]


def test_a_crash_in_a_confirmation_reverts_and_says_which(tmp_path: Path) -> None:
    exp = make_loop_experiment(
        tmp_path / "q",
        parameters="X = [0, 1]",
        decision=OLD_RULE,
        NOISE={0: [0.0, 0.02, -0.02]},
        CRASH_ABOVE=0,
        CRASH_FROM_SEED=2,
    )
    orchestrate(exp)
    _, confirmed = trials(exp)
    assert confirmed["status"] == "crash" and confirmed["decision"] == "revert"
    assert confirmed["measurements"] == [6.0, 6.02]
    note = notes(exp)[1]
    assert note.reason.startswith("its repeat with SKYLAB_SEED=2 ended in crash")
    assert "CUDA out of memory" in note.log_tail


@pytest.mark.slow
def test_kill_9_mid_confirmation_loses_no_measurement_and_repeats_none(tmp_path: Path) -> None:
    exp = make_loop_experiment(
        tmp_path / "q",
        parameters="X = [0, 1]",
        decision=OLD_RULE,
        NOISE={0: [0.0, 0.02, -0.02]},
        SLEEP_FROM_SEED=2,
        SLEEP_REPEATS=60.0,
    )
    run = subprocess.Popen([SKYLAB, "run", "--tag", "t", "-C", str(exp)], start_new_session=True)
    logs = exp / ".skylab" / "logs" / "t"
    wait_for(lambda: (logs / "2.seed2.log").exists(), timeout=60)  # trial 2's seeds 0 and 1 are in
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    subprocess.run(["pkill", "-9", "-f", f"{exp}/.skylab/worktrees"], check=False)
    first_repeat = (logs / "2.seed1.log").stat().st_mtime_ns
    partial = list((exp / ".git" / "skylab" / "measuring").glob("*.json"))
    assert len(partial) == 1 and sorted(json.loads(partial[0].read_text())["notes"]) == ["0", "1"]

    env = {**os.environ, "SKIP_REPEAT_SLEEP": "1"}
    again = subprocess.run(
        [SKYLAB, "run", "--tag", "t", "-C", str(exp)], capture_output=True, text=True, env=env, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert "continuing trial t/2" in again.stdout + again.stderr
    rows = trials(exp)
    assert [r["status"] for r in rows] == ["success", "success"]  # trial 2 finished, not interrupted
    assert rows[1]["measurements"] == [6.0, 6.02, 5.98] and rows[1]["decision"] == "keep"
    assert (logs / "2.seed1.log").stat().st_mtime_ns == first_repeat  # not measured again
    assert not list((exp / ".git" / "skylab" / "measuring").glob("*.json"))


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("noise_samples = 0", "decision.noise_samples: must be between 1 and 100, not 0"),
        ("confirm = -1", "decision.confirm: must be between 0 and 100, not -1"),
        ("sigmas = -0.5", "decision.sigmas: must be between 0 and 100, not -0.5"),
        ('min_delta = "small"', "decision.min_delta: must be a number, not a string"),
        ("confirm = 1.5", "decision.confirm: must be an integer, not a float"),
        ("samples = 3", "decision.samples: unknown key"),
    ],
)
def test_decision_settings_are_checked_in_one_line(tmp_path: Path, line: str, problem: str) -> None:
    exp = make_loop_experiment(tmp_path / "q", decision=None)
    config = exp / "experiment.toml"
    config.write_text(config.read_text() + f"\n[decision]\n{line}\n")
    result = run_skylab("run", "--max-trials", "1", "-C", str(exp))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {config}: {problem}"] or problem in result.stderr


def noisy_history(store: TrialStore) -> None:
    """A run judged with repeats: its notes carry measurements, σ and se, as the loop writes them."""
    from tests.factory import add_trial, rewrite_note

    for value, samples in ((2.40, [2.38, 2.40, 2.42]), (2.30, [2.29, 2.30, 2.31]), (2.29, [2.29])):
        ref = add_trial(store, "n", value, measurements=samples)
        note = store.note_for(ref.commit)
        assert note is not None
        note.sigma = 0.015
        note.sem = 0.015 / len(samples) ** 0.5 if len(samples) > 1 else None
        rewrite_note(store, ref.commit, note)


def test_the_report_shows_the_noise(store: TrialStore, experiment: Path) -> None:
    from skylab.experiment.config import load_config
    from skylab.report.html import build_report_data, render_report

    noisy_history(store)
    data = build_report_data(store, load_config(experiment))
    h = data.headline
    assert (h.best, h.best_n, h.best_sem) == (2.29, 1, None)  # the last kept one, measured once
    assert h.z == pytest.approx(0.11 / (0.015 * (1 + 1 / 3) ** 0.5)) and not h.within_noise
    chart = json.loads(data.chart_json)
    bars = [p[1] for p in chart["points"]]
    assert bars[0] > 0 and bars[1] > 0 and bars[2] is None  # ±se where a mean of several was recorded
    assert chart["sigma"] == pytest.approx(0.015)  # the page draws the ±σ band from it
    html = render_report(data)
    assert "standard errors beyond noise" in html


def test_the_noise_band_and_error_bars_in_chromium(
    store: TrialStore, experiment: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from skylab.experiment.config import load_config
    from skylab.report.html import generate
    from tests.browser import chromium, open_report

    noisy_history(store)
    path = generate(store, load_config(experiment), tmp_path / "report.html")
    with chromium(tmp_path / "profile") as driver:
        d: Any = driver
        open_report(d, path)
        assert d.find_elements(By.ID, "noise-band") and d.find_element(By.ID, "noise-legend").is_displayed()
        assert len(d.find_elements(By.CSS_SELECTOR, "#chart line.err")) == 2


def test_the_model_is_told_what_counts_as_real(store: TrialStore, experiment: Path) -> None:
    from skylab.experiment.config import load_config
    from skylab.strategy import ProposalContext
    from skylab.strategy.llm_context import build_context, rules

    noisy_history(store)
    history = store.load()
    context = ProposalContext(load_config(experiment), history, "n", store.start_point(), None, experiment)
    told = rules(context)
    assert "varies by σ = 0.015" in told and "must beat the best's by more than 1σ (0.015)" in told
    assert "kept early once its gain clears 3 standard errors" in told and "1.5 standard errors" in told
    assert "The best is measured again when a trial's throughput differs from the best's" in told
    assert "2.300000 ± 0.0087 (mean of 3)" in build_context(context, 200_000)


def test_the_plan_line_states_the_rule(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", decision=None)
    out = run_skylab("run", "--tag", "t", "--max-trials", "1", "-C", str(exp), check=True).stdout
    assert (
        "decisions: start measured 3×; a candidate up to 3×: screened out below 1σ after one, kept early "
        "above 3σ·se, stopped below a 5 % chance, else kept when better by > 1.5σ·se, or equal and simpler; "
        "same-seed pairs when more precise; the best measured beside it when throughput moves > 10 % "
        "(σ unknown until a repeat); the best measured again on 2 fresh seeds at the end" in out
    )
    old = make_loop_experiment(tmp_path / "o", decision=OLD_RULE)
    out = run_skylab("run", "--tag", "t", "--max-trials", "1", "-C", str(old), check=True).stdout
    assert "decisions: start measured 3×; a candidate up to 3×: kept when better by > 2σ·se, or equal" in out
    greedy = make_loop_experiment(tmp_path / "g")
    out = run_skylab("run", "--tag", "t", "--max-trials", "1", "-C", str(greedy), check=True).stdout
    assert "decisions: greedy: one measurement each, kept when better" in out


@pytest.mark.slow
def test_free_workers_take_the_repeats_and_decisions_stay_consistent(tmp_path: Path) -> None:
    from tests.test_parallel import assert_consistent_chain

    exp = make_loop_experiment(
        tmp_path / "q",
        parameters="X = [0, 1, 2]",
        decision=OLD_RULE,
        NOISE={0: [0.0, 0.02, -0.02]},
        SLEEP=1.5,
    )
    result = run_skylab("run", "--tag", "t", "--workers", "3", "-C", str(exp))
    assert result.returncode == 0, result.stderr
    logs = exp / ".skylab" / "logs" / "t"
    # The starting point's two repeats ran at the same time, on two workers, not one after the other.
    ended = [(logs / f"1.seed{k}.log").stat().st_mtime for k in (1, 2)]
    assert abs(ended[0] - ended[1]) < 1.0
    rows = trials(exp)
    assert rows[0]["measurements"] == [11.0, 11.02, 10.98]
    assert [len(r["measurements"]) for r in rows[1:]] == [3, 3]  # each beat the best: confirmed
    assert_consistent_chain(exp)


def test_the_screen_is_seed_for_seed_so_a_best_whose_seed_0_was_its_worst_holds_no_one_back(
    tmp_path: Path,
) -> None:
    # Every commit measures seed 0 worst by 0.5 (its data order, say). X = 0.02 is truly 0.12 better:
    # its seed 0 (11.38) loses to the best's mean (11.17) but beats the best's own seed 0 (11.5).
    exp = make_loop_experiment(
        tmp_path / "q", parameters="X = [0, 0.02]", decision=OLD_RULE, NOISE={0: [0.5, 0.0, 0.0]}
    )
    orchestrate(exp)
    baseline, candidate = trials(exp)
    assert baseline["measurements"] == [11.5, 11.0, 11.0]
    assert candidate["measurements"] == pytest.approx([11.3804, 10.8804, 10.8804])  # confirmed, not cut


def test_the_staged_rule_spends_measurements_only_where_they_can_change_the_decision(tmp_path: Path) -> None:
    # σ ≈ 0.02 from the start's repeats. Z = 1 gains 0.015 (< 1σ) at seed 0: screened out at once.
    # Z = 2 gains 0.05 at seed 0, then loses 0.04 at seed 1: no chance left, the third is not trained.
    noise = {0: [0.0, 0.02, -0.02], 1: [-0.015, 0.0, 0.0], 2: [-0.05, 0.06, 0.0]}
    exp = make_loop_experiment(tmp_path / "q", parameters="Z = [0, 1, 2]", decision=None, NOISE=noise)
    _, log = orchestrate(exp)
    _, screened, futile = notes(exp)
    assert screened.measurements == [10.985] and screened.decision.value == "revert"
    assert screened.verdict.startswith("screened out: improvement 0.015 ≤ 1σ")
    assert futile.measurements == [10.95, 11.06] and futile.decision.value == "revert"
    assert futile.verdict.startswith("stopped after 2 of 3: improvement -0.005 has a ")
    logs = exp / ".skylab" / "logs" / "t"
    assert (logs / "3.seed1.log").exists() and not (logs / "3.seed2.log").exists()  # no third started
    assert "screened out" in log and "stopped after 2 of 3" in log
    assert not list((exp / ".git" / "skylab" / "measuring").glob("*.json"))
    assert TrialStore.open(exp).best() == trials(exp)[0]["commit"]


@pytest.mark.slow
def test_with_free_workers_a_trial_decided_early_drops_the_repeat_still_training(tmp_path: Path) -> None:
    from tests.test_parallel import assert_consistent_chain

    exp = make_loop_experiment(
        tmp_path / "q",
        parameters="X = [0, 1, 2]",
        decision="fresh_samples = 0",
        NOISE={0: [0.0, 0.02, -0.02]},
        SLEEP=1.5,
    )
    result = run_skylab("run", "--tag", "t", "--workers", "3", "-C", str(exp))
    assert result.returncode == 0, result.stderr
    rows = trials(exp)
    # Both candidates' repeats trained side by side; the first one in decided each (kept after two).
    assert [len(r["measurements"]) for r in rows[1:]] == [2, 2]
    assert all(n.verdict.startswith("kept after 2 of 3") for n in notes(exp)[1:])
    assert_consistent_chain(exp)
    assert not list((exp / ".git" / "skylab" / "measuring").glob("*.json"))
