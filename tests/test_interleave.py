"""The best measured beside a candidate: drift cancels, pairs alternate, uneven pairs are measured
again, a failed re-measurement is said, and a stopped run resumes its pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skylab.loop.evidence import Evidence
from skylab.loop.interleave import (
    PAIRED_MEASUREMENTS,
    PAIRED_WITH,
    departs,
    pairing_reason,
    refined_evidence,
    throughput,
    uneven_pairs,
)
from skylab.loop.jobs import Job
from skylab.loop.measuring import MeasuredTrial, _record, _restore
from skylab.store.gitstore import TrialStore
from skylab.store.notes import TrialNote
from skylab.store.refs import TrialRef
from skylab.strategy import Proposal
from tests.conftest import run_skylab
from tests.factory import add_trial, rewrite_note
from tests.loop_experiment import make_loop_experiment
from tests.test_loop import orchestrate

NO_EFFECT = {0: [0.0, 0.01, -0.01], 1: [0.0, 0.01, -0.01]}  # Z = 1 measures exactly what Z = 0 does
# After the start's three measurements the machine is 20 % faster, and every value 0.05 lower.
FASTER = [(3, -0.05, 1.2)]


def order(exp: Path) -> list[str]:
    return (exp / "clock").read_text().splitlines()


def run_notes(exp: Path) -> list[TrialNote]:
    return [t.note for t in TrialStore.open(exp).load().trials if t.note is not None]


def drifting(directory: Path, decision: str, parameters: str = "Z = [0, 1]", **knobs: object) -> Path:
    """The loop experiment, counting its measurements in `directory`/clock, on a machine that
    changes as MACHINE says."""
    constants: dict[str, Any] = {"NOISE": NO_EFFECT, "MACHINE": FASTER, "CLOCK": str(directory / "clock")}
    constants.update(knobs)
    return make_loop_experiment(directory, parameters=parameters, decision=decision, **constants)


def test_a_machine_that_sped_up_keeps_a_no_effect_change_unless_the_best_is_measured_beside_it(
    tmp_path: Path,
) -> None:
    old = drifting(tmp_path / "never", 'interleave = "never"\nfresh_samples = 0')
    orchestrate(old)
    start, fooled = run_notes(old)
    assert fooled.decision.value == "keep"  # 0.05 better, all of it the machine's: a false keep
    assert fooled.measurements == pytest.approx([10.95, 10.96])

    exp = drifting(tmp_path / "auto", "fresh_samples = 0")  # the defaults: interleave = "auto"
    _, log = orchestrate(exp)
    start, candidate = run_notes(exp)
    assert candidate.decision.value == "revert"
    assert candidate.measurements == pytest.approx([10.95])
    assert candidate.other[PAIRED_WITH] == "t/1"
    assert json.loads(candidate.other[PAIRED_MEASUREMENTS]) == pytest.approx([10.95])
    assert candidate.other["paired_because"] == "throughput 1200 vs the best's 1000 (+20 %)"
    assert json.loads(candidate.other["throughput"]) == [1200.0]
    assert candidate.verdict.startswith("screened out: improvement 0 ≤ 1σ")
    assert candidate.verdict.endswith("t/1 measured beside it")
    # Candidate seed 0, then the best's seed 0 right after it, on the same (faster) machine.
    assert order(exp) == ["0 0 0 0", "0 0 0 1", "0 0 0 2", "0 0 1 0", "0 0 0 0"]
    assert candidate.wall_seconds is not None and start.wall_seconds is not None
    assert candidate.wall_seconds > start.wall_seconds / 3 * 1.5  # both measurements' compute
    assert "trial t/2 (the best t/1 beside it, SKYLAB_SEED=0)" in log
    assert (exp / ".skylab" / "logs" / "t" / "2.beside.log").exists()
    assert TrialStore.open(exp).best() == TrialStore.open(exp).load().trials[0].commit
    table = run_skylab("history", "--json", "-C", str(exp), check=True).stdout
    assert json.loads(table)[1]["other"][PAIRED_WITH] == "t/1"


def test_always_alternates_candidate_and_best_and_judges_the_pairs(tmp_path: Path) -> None:
    always = 'interleave = "always"\nfresh_samples = 0'
    exp = drifting(tmp_path / "q", always, "X = [0, 1]", MACHINE=[], NOISE={0: [0.0, 0.02, -0.02]})
    orchestrate(exp)
    _, better = run_notes(exp)
    assert better.decision.value == "keep" and better.measurements == pytest.approx([6.0, 6.02])
    assert json.loads(better.other[PAIRED_MEASUREMENTS]) == pytest.approx([11.0, 11.02])
    assert json.loads(better.other["paired_seeds"]) == [0, 1]
    assert better.other["paired_because"] == "screened in"
    assert better.verdict.startswith("kept after 2 of 3") and "t/1 measured beside it" in better.verdict
    assert order(exp)[3:] == ["1 0 0 0", "0 0 0 0", "1 0 0 1", "0 0 0 1"]  # alternating, same seeds


def test_a_pair_measured_while_the_machine_changed_is_measured_again(tmp_path: Path) -> None:
    # The candidate's seed-1 measurement ran at 70 % speed, its partner at full speed: uneven.
    always, noise = 'interleave = "always"\nfresh_samples = 0', {0: [0.0, 0.02, -0.02]}
    once = [(5, 0.0, 0.7), (6, 0.0, 1.0)]
    exp = drifting(tmp_path / "once", always, "X = [0, 1]", MACHINE=once, NOISE=noise)
    orchestrate(exp)
    _, candidate = run_notes(exp)
    assert order(exp)[3:] == ["1 0 0 0", "0 0 0 0", "1 0 0 1", "0 0 0 1", "1 0 0 1", "0 0 0 1"]
    assert len(candidate.measurements) == 2 and "paired_flag" not in candidate.other
    assert json.loads(candidate.other["throughput"]) == [1000.0, 1000.0]  # the pair measured again

    # Uneven again the second time: judged as it is, and the verdict says so.
    twice = [(5, 0.0, 0.7), (6, 0.0, 1.0), (7, 0.0, 0.7), (8, 0.0, 1.0)]
    exp = drifting(tmp_path / "twice", always, "X = [0, 1]", MACHINE=twice, NOISE=noise)
    orchestrate(exp)
    _, candidate = run_notes(exp)
    assert "throughput uneven in the pair of seed 1, measured twice" in candidate.verdict
    assert candidate.other["paired_flag"].startswith("throughput uneven")


def test_a_failed_measurement_of_the_best_gives_up_pairing_and_says_so(tmp_path: Path) -> None:
    exp = drifting(tmp_path / "q", "fresh_samples = 0", CRASH_AT=(4,))
    orchestrate(exp)
    _, candidate = run_notes(exp)
    assert candidate.status.value == "success"  # the candidate's own measurements decide it
    assert PAIRED_WITH not in candidate.other
    assert "t/1 measured beside it ended in crash" in candidate.other["paired_flag"]
    assert "judged against its earlier measurements" in candidate.verdict


def test_the_best_measured_beside_candidates_refines_its_estimate() -> None:
    from skylab.store.history import Trial

    best = TrialNote.begun("t", 1, "val_bpb", "", "", "start")
    best.measurements, best.seeds = [11.0, 11.02, 10.98], [0, 1, 2]
    later = TrialNote.begun("t", 2, "val_bpb", "", "", "candidate")
    later.other = {PAIRED_WITH: "t/1", PAIRED_MEASUREMENTS: "[10.95, 10.97]", "paired_seeds": "[0, 1]"}
    trials = [Trial("t", 1, "a" * 40, best), Trial("t", 2, "b" * 40, later)]
    evidence = refined_evidence(trials[0], trials)
    assert evidence is not None and evidence.n == 5
    assert evidence.at_seed(0) == 10.95 and evidence.at_seed(2) == 10.98  # each seed's latest
    assert Evidence((1.0, 2.0), (0, 0)).at_seed(0) == 2.0


def test_throughput_and_pairing_rules() -> None:
    assert throughput({"tok_per_sec": 812}, 30.0) == 812.0
    assert throughput({"total_tokens_M": 3.0}, 30.0) == 100_000.0
    assert throughput({"num_steps": 60}, 30.0) == 2.0
    assert throughput({"num_steps": 60}, None) is None and throughput({}, 30.0) is None
    assert throughput({"tok_per_sec": True}, 30.0) is None
    assert departs(890, 1000, 0.1) and not departs(910, 1000, 0.1)
    assert pairing_reason("auto", True, 1000, 1050, 0.1) == ""  # steady: no cost
    assert pairing_reason("always", True, 1000, 1050, 0.1) == "screened in"
    assert pairing_reason("always", False, 1000, 1050, 0.1) == ""
    assert pairing_reason("auto", False, 800, 1000, 0.1).startswith("throughput 800 vs the best's 1000")
    assert pairing_reason("never", True, 800, 1000, 0.1) == ""
    assert uneven_pairs({0: 1.0, 1: 0.7, 2: 1.02}, 0.1) == [1]
    assert uneven_pairs({0: 0.8, 1: 0.82}, 0.1) == []  # the code's own effect: every pair alike


def test_a_half_paired_trial_survives_a_restart_and_resumes_in_order() -> None:
    from skylab.loop.interleave import Beside

    job = Job(TrialRef("t", 2, "c" * 40), "p" * 40, Proposal("candidate", {"Z": 1}), ["train.py"], "sweep")
    note = TrialNote.begun("t", 2, "val_bpb", "p" * 40, "", "candidate")
    note.value = 10.95
    trial = MeasuredTrial(job, 3, {0: note}, Beside("b" * 40, "t/1", "screened in"))
    trial.best_notes = {0: note}
    trial.notes[1] = note
    restored = _restore(json.loads(json.dumps(_record(trial))))
    assert restored is not None and restored.beside == trial.beside and set(restored.best_notes) == {0}
    todo = [(j.beside is not None, j.seed) for j in restored.to_run(set())]
    assert todo == [(True, 1), (False, 2), (True, 2)]
    assert all(j.checkout == "b" * 40 for j in restored.to_run(set()) if j.beside)


def test_interleave_is_checked_in_one_line(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", decision=None)
    config = exp / "experiment.toml"
    config.write_text(config.read_text() + '\n[decision]\ninterleave = "sometimes"\n')
    result = run_skylab("run", "--max-trials", "1", "-C", str(exp))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    problem = 'decision.interleave: must be "auto", "always" or "never", not "sometimes"'
    assert result.stderr.strip() == f"error: {config}: {problem}"


def test_history_with_pairs_is_rebuilt_from_notes(store: TrialStore) -> None:
    ref = add_trial(store, "n", 2.40, measurements=[2.38, 2.40, 2.42])
    cand = add_trial(store, "n", 2.39, measurements=[2.39, 2.39])
    note = store.note_for(cand.commit)
    assert note is not None
    note.other.update({PAIRED_WITH: ref.name, PAIRED_MEASUREMENTS: "[2.41, 2.40]", "paired_seeds": "[0, 1]"})
    rewrite_note(store, cand.commit, note)
    again = store.note_for(cand.commit)
    assert again is not None and again.other[PAIRED_MEASUREMENTS] == "[2.41, 2.40]"


@pytest.mark.slow
def test_with_free_workers_pairs_are_measured_and_decisions_stay_consistent(tmp_path: Path) -> None:
    from tests.test_parallel import assert_consistent_chain

    always = 'interleave = "always"\nfresh_samples = 0'
    exp = drifting(
        tmp_path / "q", always, "X = [0, 1, 2]", MACHINE=[], NOISE={0: [0.0, 0.02, -0.02]}, SLEEP=1.0
    )
    result = run_skylab("run", "--tag", "t", "--workers", "3", "-C", str(exp))
    assert result.returncode == 0, result.stderr
    candidates = run_notes(exp)[1:]
    for note in candidates:  # every measurement of a candidate has the best's beside it, same seed
        assert json.loads(note.other["paired_seeds"]) == note.seeds
    # X = 2 (3.0) and X = 1 (6.0) trained side by side; whichever was judged second was judged against
    # the other, the best by then: not with pairs of t/1, but with every measurement of that best.
    best = TrialStore.open(exp).best()
    assert best is not None and TrialStore.open(exp).note_for(best).params == {"X": 2}  # type: ignore[union-attr]
    assert_consistent_chain(exp)
    assert not list((exp / ".git" / "skylab" / "measuring").glob("*.json"))


def test_the_rule_in_words_says_when_the_best_is_measured_beside_a_candidate() -> None:
    from dataclasses import replace

    from skylab.loop.evidence import Rules
    from skylab.loop.judge import describe

    rules = Rules("minimize", noise_samples=3, confirm=2, sigmas=1.5, filter_sigmas=1.0, paired=True)
    assert "beside" not in describe(rules, 0.01)  # "never", the Rules default
    auto = describe(replace(rules, interleave="auto", throughput_tolerance=0.15), 0.01)
    assert "the best measured beside it when throughput moves > 15 %" in auto
    always = describe(replace(rules, interleave="always"), 0.01)
    assert "the best measured beside every screened-in candidate" in always
