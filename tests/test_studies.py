"""Studies of a finished run, end to end through the command line: ablate the kept chain (a change
whose revert conflicts, one that no longer matters, --prune) and confirm at a longer budget."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from skylab.store.gitstore import TrialStore
from skylab.strategy import Proposal, ProposalContext
from tests.conftest import SKYLAB, run_skylab
from tests.loop_experiment import OLD_RULE, make_loop_experiment
from tests.test_loop import orchestrate, trials, wait_for

# Greedy, and equal-but-simpler is a keep: what --prune's candidate is judged by.
SIMPLER = "noise_samples = 1\nconfirm = 0\nsigmas = 0\nkeep_simpler = true"
SEED_LINE = 'seed = int(os.environ.get("SKYLAB_SEED", "0"))\n'
NOISE_LINE = "noise = NOISE[Z][seed % len(NOISE[Z])] if NOISE else 0.0\n"


class Edits:
    """A real strategy that applies one text edit to train.py per proposal, from the run's tip."""

    name = "scripted"

    def __init__(self, edits: list[tuple[str, Callable[[str], str]]]) -> None:
        self.edits = edits

    def propose(self, context: ProposalContext) -> Proposal | None:
        if not self.edits:
            return None
        description, edit = self.edits.pop(0)
        path = context.workdir / "train.py"
        path.write_text(edit(path.read_text()))
        return Proposal(description)


def chain_of_four(tmp_path: Path) -> Path:
    """t/1 baseline 11 → t/2 X=2 (3) → t/3 X=3 (2) → t/4 Y=-1 below the noise line (1) → t/5 Y=-1 and Z=1
    after the seed line (0.5), all kept. Undoing t/2 conflicts with t/3 (the same line); t/4 no
    longer matters once t/5 sets Y too."""
    exp = make_loop_experiment(tmp_path / "q", decision=SIMPLER, NOISE={0: [0.0], 1: [-0.5]})
    edits = Edits(
        [
            ("X = 2", lambda text: text.replace("\nX = 0\n", "\nX = 2\n")),
            ("X = 3", lambda text: text.replace("\nX = 2\n", "\nX = 3\n")),
            ("Y = -1 below", lambda text: text.replace(NOISE_LINE, NOISE_LINE + "Y = -1\n")),
            ("Y = -1 and Z = 1", lambda text: text.replace(SEED_LINE, "Y = -1\nZ = 1\n" + SEED_LINE)),
        ]
    )
    orchestrate(exp, edits)
    rows = trials(exp)
    assert [r["value"] for r in rows] == [11.0, 3.0, 2.0, 1.0, 0.5] and all(
        r["decision"] == "keep" for r in rows
    )
    return exp


def test_ablate_measures_each_kept_change_and_prune_keeps_the_simpler_trial(tmp_path: Path) -> None:
    exp = chain_of_four(tmp_path)
    out = run_skylab("ablate", "--prune", "-C", str(exp), check=True).stdout
    assert "t/2: undoing it conflicts with later changes in train.py; skipped" in out
    cells = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    table = {line.split()[0]: line for line in cells if line.startswith("t/")}
    assert "t/3 t/6 +1 helps, beyond noise" in table["t/3"]  # without X = 3: 1.5
    assert "t/5 t/8 +0.5 helps, beyond noise" in table["t/5"]  # without t/5: 1.0
    assert "t/4 t/7 +0 within noise" in table["t/4"]  # t/5 sets Y anyway
    rows = {r["trial"]: r for r in trials(exp)}
    ablation = rows["t/7"]
    assert (
        ablation["strategy"] == "ablation" and ablation["decision"] == "revert" and ablation["value"] == 0.5
    )
    note = TrialStore.open(exp).load().by_commit()[ablation["commit"]].note
    assert note is not None and note.other["ablates"] == "t/4" and note.other["ablation_of"] == "t/5"
    # --prune: t/5 without t/4, trained and judged as an ordinary trial: equal and simpler, kept.
    pruned = rows["t/9"]
    assert pruned["strategy"] == "prune" and pruned["decision"] == "keep" and pruned["value"] == 0.5
    assert pruned["is_best"] and "simpler (1 line fewer)" in (
        TrialStore.open(exp).load().by_commit()[pruned["commit"]].note.verdict  # type: ignore[union-attr]
    )
    pruned_text = (TrialStore.open(exp).changes.file_at(pruned["commit"], "train.py") or b"").decode()
    assert pruned_text.count("\nY = -1\n") == 1 and "Y = -1\nZ = 1\n" + SEED_LINE in pruned_text
    # Ablations never moved the best; the report shows the contributions.
    report = (exp / ".skylab" / "reports").glob("*.html")
    html = next(iter(report)).read_text()
    assert "What each change contributed" in html and "⚑ within noise" in html


def test_a_second_ablate_reuses_the_ablations_it_has(tmp_path: Path) -> None:
    exp = chain_of_four(tmp_path)
    first = run_skylab("ablate", "--tag", "t", "t/5", "-C", str(exp), check=True).stdout
    trained = len(trials(exp))
    again = run_skylab("ablate", "--tag", "t", "t/5", "-C", str(exp), check=True).stdout
    assert len(trials(exp)) == trained  # nothing retrained
    for change, ablation in (("t/3", "t/6"), ("t/4", "t/7"), ("t/5", "t/8")):
        assert f"{change}: measured without it already as {ablation}; reused" in again
    table = [" ".join(line.replace("│", " ").split()) for line in first.splitlines() if "│ t/" in line]
    assert table == [
        " ".join(line.replace("│", " ").split()) for line in again.splitlines() if "│ t/" in line
    ]


def test_ablate_refuses_a_trial_without_kept_changes(tmp_path: Path) -> None:
    exp = chain_of_four(tmp_path)
    refused = run_skylab("ablate", "t/1", "-C", str(exp))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: trial t/1 has no kept change after its run's starting point to ablate"
    ]
    assert len(trials(exp)) == 5  # nothing was committed


def test_a_teammates_run_is_not_studied_here(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0, 3]")
    orchestrate(exp)
    (exp / ".git" / "skylab" / "own-runs").unlink()  # as if t were pulled from a teammate
    for command in (["ablate"], ["confirm", "--scale", "2"]):
        refused = run_skylab(*command, "-C", str(exp))
        assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
            "error: trial t/2 is from run t, which another clone runs (a teammate's): its trial numbers "
            "are theirs to claim, so study it in that clone"
        ]
    assert len(trials(exp)) == 2


def test_confirm_trains_both_at_k_times_the_budget_and_says_whether_the_win_holds(tmp_path: Path) -> None:
    """A win that fades with training time: X costs 1 per second of budget, so X = 3 beats the start
    by 6 at the 1 s budget and loses by 3 at 4 s. The template reads SKYLAB_TIME_BUDGET, so the
    4× trials really train with a 4 s budget."""
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0, 3]", PER_BUDGET_SECOND=1.0, SLEEP=0.2)
    orchestrate(exp)
    assert [r["value"] for r in trials(exp)] == [11.0, 5.0]
    out = run_skylab("confirm", "--scale", "4", "-C", str(exp), check=True).stdout
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "t/2 against its run's starting point t/1 (val_bpb improvement ± se):" in lines
    assert "at 1×: +6 (n 1 vs 1)" in lines
    assert "at 4×: -3 (n 1 vs 1): reverses at 4×: the starting point is better when trained longer" in lines
    rows = {r["trial"]: r for r in trials(exp)}
    assert rows["t/3"]["value"] == 14.0 and rows["t/4"]["value"] == 11.0  # X=3 at 4 s; the start
    store = TrialStore.open(exp)
    for name, confirms in (("t/3", "t/2"), ("t/4", "t/1")):
        note = store.load().by_commit()[rows[name]["commit"]].note
        assert note is not None and note.strategy == "confirm" and note.decision.value == "revert"
        assert note.other["scale"] == "4" and note.other["confirms"] == confirms
    assert rows["t/2"]["is_best"]  # confirmations never move the best
    html = next((exp / ".skylab" / "reports").glob("*.html")).read_text()
    assert "Does it hold when trained longer" in html and "reverses at 4×" in html


@pytest.mark.slow
def test_a_study_killed_mid_measurement_is_finished_by_the_next_run_and_never_kept(tmp_path: Path) -> None:
    """kill -9 while a confirmation's third measurement trains: its first two are kept, the next run
    of the tag measures only the third, and records the trial as measured, never a candidate."""
    exp = make_loop_experiment(
        tmp_path / "q",
        parameters="X = [0, 1]",
        decision=OLD_RULE,
        NOISE={0: [0.0, 0.02, -0.02]},
        SLEEP_FROM_SEED=2,
        SLEEP_REPEATS=60.0,
    )
    env = {**os.environ, "SKIP_REPEAT_SLEEP": "1"}
    subprocess.run([SKYLAB, "run", "--tag", "t", "-C", str(exp)], env=env, check=True, capture_output=True)
    assert [r["measurements"] for r in trials(exp)] == [[11.0, 11.02, 10.98], [6.0, 6.02, 5.98]]
    confirm = subprocess.Popen([SKYLAB, "confirm", "-k", "2", "-C", str(exp)], start_new_session=True)
    logs = exp / ".skylab" / "logs" / "t"
    wait_for(lambda: (logs / "3.seed2.log").exists(), timeout=60)
    os.killpg(confirm.pid, signal.SIGKILL)
    confirm.wait()
    subprocess.run(["pkill", "-9", "-f", f"{exp}/.skylab/worktrees"], check=False)

    again = subprocess.run(
        [SKYLAB, "run", "--tag", "t", "--queued-only", "-C", str(exp)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert again.returncode == 0, again.stderr
    assert "continuing trial t/3" in again.stdout
    rows = {r["trial"]: r for r in trials(exp)}
    assert rows["t/3"]["measurements"] == [6.0, 6.02, 5.98] and rows["t/3"]["strategy"] == "confirm"
    assert rows["t/3"]["decision"] == "revert" and not rows["t/3"]["is_best"] and rows["t/2"]["is_best"]
    assert rows["t/4"]["status"] == "interrupted"  # the start at 2× never began


def test_a_trial_on_other_data_than_the_runs_start_is_a_constraint(tmp_path: Path) -> None:
    """experiment.toml's [data] reaches every trial as SKYLAB_DATA and the plan names it; a trial
    reporting other data than the run's starting point is never compared with it."""
    exp = make_loop_experiment(tmp_path / "q", decision=SIMPLER)
    config = exp / "experiment.toml"
    config.write_text(config.read_text() + '\n[data]\nsource = ["demo"]\n')
    edits = Edits(
        [
            (
                "X = 3 on other data",
                lambda text: text.replace("\nX = 0\n", "\nX = 3\n").replace(
                    '\nDATA = ""', '\nDATA = "climbmix-10"'
                ),
            )
        ]
    )
    orchestrate(exp, edits)
    start, other = trials(exp)
    assert other["status"] == "constraint" and other["decision"] == "revert" and start["is_best"]
    first, note = (t.note for t in TrialStore.open(exp).load().trials)
    assert first is not None and first.summary["data"] == "demo"
    assert first.summary["steps"] == 3 and isinstance(first.summary["steps"], int)  # stays an integer
    assert (
        note is not None
        and note.summary["data"] == "climbmix-10"
        and note.reason
        == ("trained with data climbmix-10, not demo like the run's starting point t/1: not comparable")
    )
    plan = run_skylab("run", "--tag", "u", "--max-trials", "1", "-C", str(exp), check=True).stdout
    assert " · data demo · " in plan
