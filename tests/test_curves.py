"""Progress lines read as a measurement trains, and the one early stop: a loss that is no longer a
number stops the measurement (status `diverged`); a loss that is only high never does."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest

from skylab.errors import ConfigError
from skylab.experiment.config import DEFAULT_PROGRESS_PATTERN, load_config
from skylab.loop.curves import CurveGuide, DivergenceWatch, Progress, parse_progress
from skylab.store.gitstore import TrialStore
from skylab.store.notes import Status
from tests.conftest import git
from tests.loop_experiment import make_loop_experiment
from tests.test_loop import orchestrate

PATTERN = re.compile(DEFAULT_PROGRESS_PATTERN)


@pytest.mark.parametrize(
    ("line", "progress"),
    [
        ("step 00020 | loss 3.1416 | lr 1.000 | tok/s 3,049", Progress(20, 3.1416)),  # the templates'
        (
            "step 00020 (6.7%) | loss: 3.141593 | lrm: 1.00 | dt: 320ms",
            Progress(20, 3.141593),
        ),  # autoresearch
        ("step 7 | loss nan", Progress(7, float("nan"))),
        ("Step 7 loss=inf", Progress(7, float("inf"))),
        ("step 7 | loss 1.5e+03", Progress(7, 1500.0)),
        ("val_bpb: 1.2345", None),
        ("loss 3.0 without a step", None),
    ],
)
def test_progress_lines_are_read_in_the_common_formats(line: str, progress: Progress | None) -> None:
    found = parse_progress(line, PATTERN)
    if progress is None:
        assert found is None
    else:
        assert found is not None and found.step == progress.step
        assert repr(found.loss) == repr(progress.loss)  # nan equals itself only as text


def test_a_non_finite_loss_fires_the_watch_and_a_high_one_never_does() -> None:
    shown: list[str] = []
    late_bloomer = DivergenceWatch(DEFAULT_PROGRESS_PATTERN, shown.append)
    for step, loss in enumerate([9.0, 1e6, 5e4, 40.0, 3.0]):  # far worse early, better at the end
        late_bloomer.see(f"step {step:05d} | loss {loss}")
    assert not late_bloomer.fired.is_set() and len(shown) == 5  # every line still shown
    runaway = DivergenceWatch(DEFAULT_PROGRESS_PATTERN)
    for line in ["step 00019 | loss 4.2", "step 00020 | loss nan", "step 00021 | loss 4.0"]:
        runaway.see(line)
    assert runaway.fired.is_set() and runaway.reason.startswith("training loss nan at step 20")
    assert list(runaway.tail)[-1] == "step 00021 | loss 4.0"


def test_a_measurement_whose_loss_goes_nan_is_stopped_and_recorded_as_diverged(tmp_path: Path) -> None:
    exp = make_loop_experiment(
        tmp_path / "q", parameters="X = [0, 1]", wall=300, DIVERGE_ABOVE=0, AFTER_NAN=120
    )
    started = time.monotonic()
    orchestrate(exp)
    baseline, diverged = TrialStore.open(exp).load().trials
    assert diverged.note is not None and diverged.status is Status.DIVERGED
    assert diverged.note.reason.startswith("training loss nan at step 1")
    assert "step 00001 | loss nan" in diverged.note.log_tail
    assert (exp / diverged.note.other["log"]).is_file()  # its log, as any failed measurement's
    assert diverged.note.wall_seconds is not None and diverged.note.wall_seconds < 60  # not its 120 s
    assert time.monotonic() - started < 100
    assert TrialStore.open(exp).best() == baseline.commit


def test_stop_diverged_false_lets_it_train_to_the_end(tmp_path: Path) -> None:
    exp = make_loop_experiment(
        tmp_path / "q",
        parameters="X = [0, 1]",
        decision="stop_diverged = false",
        DIVERGE_ABOVE=0,
        AFTER_NAN=1,
    )
    orchestrate(exp)
    _, candidate = TrialStore.open(exp).load().trials
    assert candidate.status is Status.SUCCESS  # its script printed a metric after the nan: judged on it


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [("step (", "is not a regular expression"), (r"step (?P<step>\d+)", "needs a named group (?P<loss>")],
)
def test_a_bad_progress_pattern_is_refused_with_its_key(tmp_path: Path, pattern: str, problem: str) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    toml = exp / "experiment.toml"
    toml.write_text(
        toml.read_text().replace("[execution]\n", f"[execution]\nprogress_pattern = '{pattern}'\n")
    )
    git("commit", "-qam", "pattern", cwd=exp)
    with pytest.raises(ConfigError, match=re.escape(problem)) as raised:
        load_config(exp)
    assert "execution.progress_pattern" in str(raised.value)


def test_a_curve_is_summed_up_at_its_quarters_and_stays_bounded() -> None:
    from skylab.loop.curves import MAX_POINTS, curve_summary

    assert curve_summary([]) == ""
    assert curve_summary([10.0, 9.0, 8.0]) == "10 9 8 8"
    assert curve_summary([float(100 - n) for n in range(100)]) == "76 51 26 1"
    long = DivergenceWatch(DEFAULT_PROGRESS_PATTERN)
    for step in range(10 * MAX_POINTS):
        long.see(f"step {step} | loss {10 * MAX_POINTS - step}")
    assert len(long.losses) < MAX_POINTS  # thinned evenly, never grown without bound
    assert long.summary().split()[-1] == curve_summary(long.losses).split()[-1]


def test_each_trials_curve_is_in_its_note_and_in_the_llms_context(tmp_path: Path) -> None:
    from skylab.strategy import ProposalContext
    from skylab.strategy.llm_context import history_section

    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0, 1]")
    orchestrate(exp)
    store = TrialStore.open(exp)
    history = store.load()
    assert [t.note.other.get("loss_curve") for t in history.trials if t.note] == ["10 9 8 8", "10 9 8 8"]
    text = history_section(
        ProposalContext(load_config(exp), history, "t", store.start_point(), None, exp), 10_000
    )
    assert "loss at 25/50/75/100 % of its steps 10 9 8 8" in text


def test_progress_lines_give_their_training_seconds_when_they_print_them() -> None:
    line = "step 00010 | loss 5.1234 | lr 1.000 | tok/s 3,049 | mfu 0.0% | epoch 1 | train 12.3s/30s"
    assert parse_progress(line, PATTERN) == Progress(10, 5.1234, 12.3)
    assert parse_progress("step 7 | loss 4.0", PATTERN) == Progress(7, 4.0, None)


def test_a_curve_with_training_seconds_is_summed_up_by_time() -> None:
    from skylab.loop.curves import curve_summary

    # Ten untimed steps at 0 s (compilation), then one point a second to 8 s: the quarters are by
    # time (2, 4, 6, 8 s), not by line.
    seconds: list[float | None] = [*([0.0] * 10), *(float(t) for t in range(1, 9))]
    losses = [10.0] * 10 + [float(10 - t) for t in range(1, 9)]
    assert curve_summary(losses, seconds) == "8 6 4 2"
    assert curve_summary(losses) == "10 10 6 2"  # by line, had the lines no time


def guide() -> CurveGuide:
    # The best and the start as the loop experiment's normal curve has them: 3 + 7 e^(-6 s).
    start = tuple(3 + 7 * math.exp(-6 * share) for share in (0.25, 0.5, 0.75, 1.0))
    return CurveGuide(start, start, 10.0)


def test_a_loss_far_above_the_best_at_the_same_time_is_stopped_and_a_late_bloomer_never() -> None:
    normal = [3 + 7 * math.exp(-6 * share) for share in (0.1, 0.25, 0.5, 0.75, 0.9)]
    shares = (0.1, 0.25, 0.5, 0.75, 0.9)
    explode = [loss * (1 + 3 * share) for loss, share in zip(normal, shares, strict=True)]
    late = [
        loss + 0.6 * math.sin(math.pi * share) * (1 - share) - 0.05 * share
        for loss, share in zip(normal, shares, strict=True)
    ]
    verdicts = [
        guide().verdict(Progress(None, loss, 10 * share)) for loss, share in zip(explode, shares, strict=True)
    ]
    assert verdicts[:2] == ["", ""]  # not before a quarter; at a quarter, 3.4 above is within 3 × 1.5
    assert verdicts[2].startswith("training loss 8.371 at 50 % of the budget is 5.02 above the best's 3.349")
    assert all(
        not guide().verdict(Progress(None, loss, 10 * share))
        for loss, share in zip(late, shares, strict=True)
    )
    assert not guide().verdict(Progress(None, 1e6, None))  # a line without its time: no curve rule


def curve_experiment(directory: Path, curve: str) -> Path:
    """The start trains the normal curve, X = 1 trains `curve`, 0.5 s a line over 20 lines."""
    return make_loop_experiment(
        directory,
        parameters="X = [0, 1]",
        wall=300,
        CURVE=curve,
        CURVE_LINES=20,
        CURVE_ABOVE=0,
        CURVE_SLEEP=0.5,
    )


def test_a_runaway_curve_is_stopped_as_diverged_and_a_late_bloomer_runs_to_the_end(tmp_path: Path) -> None:
    runaway = curve_experiment(tmp_path / "r", "explode")
    orchestrate(runaway)
    start, stopped = TrialStore.open(runaway).load().trials
    assert start.note is not None and start.note.other["loss_curve"] == "4.562 3.349 3.078 3.017"
    assert stopped.status is Status.DIVERGED and stopped.note is not None
    assert stopped.note.reason.startswith(
        "training loss 8.371 at 50 % of the budget is 5.02 above the best's"
    )
    assert "step 00010 |" in stopped.note.log_tail and "step 00020 |" not in stopped.note.log_tail
    late = curve_experiment(tmp_path / "l", "late")
    orchestrate(late)
    _, bloomer = TrialStore.open(late).load().trials
    assert (
        bloomer.status is Status.SUCCESS
        and bloomer.note is not None
        and bloomer.note.decision.value == "keep"
    )
