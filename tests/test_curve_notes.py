"""Learning curves as state: every measurement's points on a notes ref of their own, recorded with
the trial (a diverged one too), kept out of `git log` and history, shared by push and pull."""

from __future__ import annotations

import math
from pathlib import Path

from skylab.store.curvenotes import (
    CURVE_POINTS,
    decode_points,
    encode_points,
    format_curves,
    parse_curves,
    thin,
)
from skylab.store.gitstore import TrialStore
from skylab.store.refs import CURVES_REF
from tests.conftest import git, run_skylab
from tests.factory import add_trial
from tests.loop_experiment import make_loop_experiment
from tests.test_loop import orchestrate


def test_every_measurement_of_a_trial_keeps_its_curve_on_its_own_notes_ref(tmp_path: Path) -> None:
    exp = make_loop_experiment(
        tmp_path / "q",
        parameters="X = [0, 1]",
        decision="fresh_samples = 0",
        NOISE={0: [0.0, 0.02, -0.02]},
        CURVE_LINES=200,
    )
    orchestrate(exp)
    store = TrialStore.open(exp)
    start, better = store.load().trials
    curves = store.curves.of(start.commit)
    assert sorted(curves) == [0, 1, 2]  # the starting point's three measurements
    first = curves[0]
    assert len(first) == CURVE_POINTS and first[0][0] == 1 and first[-1][0] == 200  # thinned, ends kept
    assert first[-1][2] == 1.0  # training seconds at the last line: the whole 1 s budget
    assert first[0][1] > first[-1][1]  # the loss came down
    assert sorted(store.curves.of(better.commit)) == [0, 1]  # kept after two: two curves
    # Not in the trial's note, so neither in `git log` nor in what history reads for each trial.
    assert better.note is not None and "curve_points" not in better.note.other
    assert "curves" not in better.note.other and "[[1," not in git("log", "--notes=skylab", cwd=exp)
    assert better.note.other["loss_curve"]  # the four-point summary stays where the LLM and report read it


def test_a_diverged_measurement_keeps_its_curve_up_to_the_nan(tmp_path: Path) -> None:
    exp = make_loop_experiment(
        tmp_path / "q", parameters="X = [0, 1]", DIVERGE_ABOVE=0, AFTER_NAN=30.0, wall=60
    )
    orchestrate(exp)
    store = TrialStore.open(exp)
    diverged = store.load().trials[1]
    assert diverged.note is not None and diverged.note.status.value == "diverged"
    points = store.curves.of(diverged.commit)[0]
    assert [p[0] for p in points] == [0, 1] and math.isnan(points[-1][1])


def test_curves_travel_with_push_and_pull(team: tuple[Path, Path, Path]) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    ref = add_trial(a, "alice-1", 1.5)
    a.curves.save(ref, {0: encode_points([(1, 9.5, 0.5), (2, 8.25, 1.0)])})
    report = run_skylab("push", "-C", str(alice), check=True).stdout
    assert CURVES_REF in report
    run_skylab("pull", "-C", str(bob), check=True)
    assert TrialStore.open(bob).curves.of(ref.commit) == {0: [(1, 9.5, 0.5), (2, 8.25, 1.0)]}

    # Both sides add curves of their own: the pull merges them, neither is lost.
    b = TrialStore.open(bob)
    theirs = add_trial(b, "bob-1", 1.4)
    b.curves.save(theirs, {0: encode_points([(5, 7.0, None)])})
    mine = add_trial(a, "alice-1", 1.3)
    a.curves.save(mine, {1: encode_points([(3, 6.0, 2.0)])})
    run_skylab("push", "-C", str(bob), check=True)
    run_skylab("pull", "-C", str(alice), check=True)
    a = TrialStore.open(alice)
    assert a.curves.of(theirs.commit) == {0: [(5, 7.0, None)]} and a.curves.of(mine.commit)[1] == [
        (3, 6.0, 2.0)
    ]
    assert a.curves.of(ref.commit)[0][0] == (1, 9.5, 0.5)


def test_the_curve_format_reads_back_and_refuses_what_is_not_one() -> None:
    points = [(i, 10 - i / 10, i / 2) for i in range(1000)]
    kept = thin(points)
    assert len(kept) == CURVE_POINTS and kept[0] == points[0] and kept[-1] == points[-1]
    text = format_curves({0: encode_points(kept), 1: encode_points([(None, float("nan"), None)])})
    back = parse_curves(text)
    assert back[0][:2] == [(0, 10.0, 0.0), kept[1]] and back[1][0][0] is None and math.isnan(back[1][0][1])
    assert parse_curves("skylab-note: 1\nseed 0: []\n") == {}
    assert decode_points("[[1, 2]]") == [] and decode_points("not json") == []


def test_a_script_that_exits_on_its_own_nan_is_recorded_diverged_not_crashed(tmp_path: Path) -> None:
    # The gpt-pretrain template prints the non-finite loss, then exits 1 by itself: that is a
    # divergence, whoever stopped it.
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0, 1]", DIVERGE_ABOVE=0, EXIT_ON_NAN=True)
    orchestrate(exp)
    store = TrialStore.open(exp)
    diverged = store.load().trials[1]
    assert diverged.note is not None and diverged.note.status.value == "diverged"
    assert diverged.note.reason.startswith("training loss nan at step 1")
