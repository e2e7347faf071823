"""The live panel as a researcher sees it: `skylab run` in a real terminal (tmux, 80 columns), with
text captures of the screen kept as test artifacts."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from skylab.loop.progress import Paced, Result, Running, RunState, panel, progress_bar, refresh_due
from tests.browser import ARTIFACTS
from tests.conftest import SKYLAB
from tests.loop_experiment import make_loop_experiment
from tests.test_loop import wait_for

PANEL_ROWS = ("run ", "best ", "training ", "recent ")


def test_the_panel_says_how_far_the_run_is_and_cuts_instead_of_wrapping() -> None:
    from rich.console import Console

    state = RunState("nov26-alice-3f2a", "llm", "val_bpb", 3600.0, max_trials=20, started=0.0)
    state.claimed, state.best, state.best_name, state.best_sem = 7, 2.3597, "nov26-alice-3f2a/5", 0.018
    state.sigma, state.keep_bar = 0.025, 0.041
    state.running[0] = Running("nov26-alice-3f2a/7", "raise MATRIX_LR " + "and more " * 20, 0.0, 100.0)
    state.running[0].last_line = "step 00042 | loss 3.2100 | " + "x" * 200
    state.results = [Result(f"nov26-alice-3f2a/{n}", 2.4 - n / 100, -0.01, "revert") for n in range(2, 7)]
    console = Console(width=80, record=True, color_system=None)
    console.print(panel(state, now=25.0))
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith("run      nov26-alice-3f2a · llm · trial 7 of 20 · 25s elapsed · 59m35s left")
    assert "best     val_bpb 2.359700 ±0.018 (nov26-alice-3f2a/5)" in lines
    assert "noise    σ 0.025 · a keep needs > 0.041 better" in lines
    assert lines[3].startswith("training nov26-alice-3f2a/7 ████░░░░░░░░░░░░ 25s/~1m40s · raise MATRIX_LR")
    assert lines[3].endswith("…") and lines[4].strip().startswith("step 00042") and lines[4].endswith("…")
    assert [line.split()[-4] for line in lines[5:]] == [f"nov26-alice-3f2a/{n}" for n in range(6, 1, -1)]
    # Several workers: one line each, no output lines.
    state.running[1] = Running("nov26-alice-3f2a/8", "lower WD", 20.0, 100.0)
    many = Console(width=80, record=True, color_system=None)
    many.print(panel(state, now=25.0))
    rows = [line.rstrip() for line in many.export_text().splitlines()]
    assert [r.split()[:2] for r in rows if r.startswith("worker")] == [["worker", "0"], ["worker", "1"]]
    assert not any("step 00042" in r for r in rows)
    assert progress_bar(2.0, 4) == "████" and progress_bar(0.5, 4) == "██░░"


def test_a_run_without_limits_says_it_runs_until_ctrl_c() -> None:
    from rich.console import Console

    console = Console(width=80, record=True, color_system=None)
    console.print(panel(RunState("t", "sweep", "val_bpb", None, started=0.0), now=3725.0))
    assert (
        console.export_text().splitlines()[0].rstrip()
        == "run      t · sweep · trial 0 · 1h02m elapsed · until Ctrl-C"
    )


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (`make system-deps`)")
def test_the_live_panel_in_an_80_column_terminal(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0, 1, 2, 3]", SLEEP=1.5)
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    command = f"{SKYLAB} run --tag t --max-trials 3 -C {exp}; echo SKYLAB-EXITED-$?; sleep 60"
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "40", command], check=True)

    def screen() -> str:
        shown = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True, check=False)
        return shown.stdout

    try:
        wait_for(lambda: "trial 2 of 3" in screen() and "training " in screen(), timeout=60)
        during = screen()
        wait_for(lambda: "SKYLAB-EXITED" in screen(), timeout=60)
        time.sleep(0.3)
        after = screen()
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "live-panel-during.txt").write_text(during)
    (ARTIFACTS / "live-panel-after.txt").write_text(after)
    assert all(len(line) <= 80 for line in during.splitlines())
    assert any(line.startswith("run      t · sweep · trial 2 of 3 · ") for line in during.splitlines())
    assert "best     val_bpb 11.000000 (t/1)" in during and "recent   t/1  11.000000  keep" in during
    assert "SKYLAB-EXITED-0" in after and after.count("stopped: reached --max-trials 3") == 1
    assert not any(line.startswith(PANEL_ROWS) for line in after.splitlines())  # no panel left behind
    assert "trial t/3: success val_bpb 3.000000 (-3.000000) → keep" in after


def test_a_slow_live_report_is_rewritten_at_most_a_twentieth_of_the_time() -> None:
    assert refresh_due(since_last_s=0, last_took_s=0.05) is False
    assert refresh_due(since_last_s=1, last_took_s=0.05) is True  # 50 ms: after every trial
    assert refresh_due(since_last_s=60, last_took_s=10) is False  # 10 s: not every minute
    assert refresh_due(since_last_s=190, last_took_s=10) is True
    now = [0.0]
    paced = Paced(lambda: now.__setitem__(0, now[0] + 10), clock=lambda: now[0])  # each rewrite takes 10 s
    paced()
    assert paced.runs == 1  # the first always runs
    for _ in range(18):  # a trial every 10 s for 3 minutes
        now[0] += 10
        paced()
    assert paced.runs == 1
    now[0] += 10
    paced()
    assert paced.runs == 2  # 190 s after the last rewrite ended, 10 s of 200 is 5 %
