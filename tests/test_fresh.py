"""An honest best: after a run, the best measured again on seeds no selection used."""

from __future__ import annotations

from pathlib import Path

import pytest

from skylab.experiment.config import load_config
from skylab.report.html import build_report_data
from skylab.store.gitstore import TrialStore
from tests.conftest import run_skylab
from tests.loop_experiment import make_loop_experiment

# NOISE[Z][seed % 3]: seeds 0 and 1 (the selection) read 0 and +0.02; fresh seeds 1000 and 1001 read
# +0.02 and -0.02. X = 1 is a true gain of 5.
NOISE = {0: [0.0, 0.02, -0.02]}


def test_the_best_is_measured_on_fresh_seeds_after_the_run(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0, 1]", decision=None, NOISE=NOISE)
    result = run_skylab("run", "--tag", "t", "-C", str(exp), check=True)
    out = result.stdout
    assert "measuring the best, t/2, on 2 fresh seeds: its mean was selected" in out
    history = TrialStore.open(exp).load()
    _, kept, fresh = history.trials
    assert kept.note is not None and kept.note.measurements == [6.0, 6.02]  # kept after two
    assert fresh.note is not None and fresh.note.strategy == "fresh"
    assert fresh.note.other["fresh_of"] == "t/2" and fresh.note.seeds == [1000, 1001]
    assert fresh.note.measurements == [6.02, 5.98] and fresh.note.decision.value == "revert"
    assert history.best == kept.commit  # measured, never a candidate: the best stays the trial judged
    assert "best val_bpb 6.010000 ±0.015 selected, 6.000000 ±0.015 on fresh seeds (t/2)" in out
    table = run_skylab("history", "-C", str(exp), check=True).stdout
    assert "best t/2: 6.0100 ±0.015 selected, 6.0000 ±0.015 on fresh seeds (t/3)" in table
    headline = build_report_data(TrialStore.open(exp), load_config(exp)).headline
    assert headline.fresh == "6.0100 ±0.015 selected, 6.0000 ±0.015 on fresh seeds"
    assert headline.trials == 2  # the fresh measurement is a study, not a trial of the search
    # The gain in standard errors is the fresh mean's (5.0, not the selected 4.99) over
    # se = σ·sqrt(1/2 + 1/3), σ as the latest judged trial knew it.
    sigma = kept.note.sigma
    assert sigma is not None and headline.z == pytest.approx(5.0 / (sigma * (1 / 2 + 1 / 3) ** 0.5))

    again = run_skylab("run", "--tag", "t", "-C", str(exp), check=True).stdout
    assert "measuring the best" not in again  # measured already: not again


def test_no_fresh_measurement_when_turned_off_or_when_nothing_was_selected(tmp_path: Path) -> None:
    off = make_loop_experiment(
        tmp_path / "off", parameters="X = [0, 1]", decision="fresh_samples = 0", NOISE=NOISE
    )
    run_skylab("run", "--tag", "t", "-C", str(off), check=True)
    assert [t.note.strategy for t in TrialStore.open(off).load().trials if t.note] == ["sweep", "sweep"]
    worse = make_loop_experiment(tmp_path / "w", parameters="X = [0, -1]", decision=None, NOISE=NOISE)
    out = run_skylab("run", "--tag", "t", "-C", str(worse), check=True).stdout
    # The best is the start: never selected, so its mean is unbiased and nothing is measured again.
    assert "measuring the best" not in out and "on fresh seeds (" not in out
    assert [t.note.strategy for t in TrialStore.open(worse).load().trials if t.note] == ["sweep", "sweep"]


def test_confirm_fresh_measures_any_trial_on_demand(tmp_path: Path) -> None:
    exp = make_loop_experiment(
        tmp_path / "q", parameters="X = [0, 1]", decision="fresh_samples = 0", NOISE=NOISE
    )
    run_skylab("run", "--tag", "t", "-C", str(exp), check=True)
    out = run_skylab("confirm", "--fresh", "t/2", "-C", str(exp), check=True).stdout
    assert (
        "t/2 (val_bpb): 6.0100 ±0.015 selected, 6.0000 ±0.015 on fresh seeds (n 2, then 2 on fresh seeds)"
        in out
    )
    start = run_skylab("confirm", "--fresh", "t/1", "-C", str(exp))
    assert start.returncode == 2
    assert start.stderr.strip().splitlines() == [
        "error: trial t/1 is its run's starting point: it was never selected, so its mean is already unbiased"
    ]


def test_fresh_samples_is_checked(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", decision=None)
    config = exp / "experiment.toml"
    config.write_text(config.read_text() + "\n[decision]\nfresh_samples = -1\n")
    result = run_skylab("run", "--tag", "t", "-C", str(exp))
    assert (
        result.returncode == 2
        and "decision.fresh_samples: must be between 0 and 100, not -1" in result.stderr
    )
