"""Keep or revert, and whether the result is the new best: every rule in one pure function.

No git, no threads, no I/O: the orchestrator gathers the numbers (the candidate's measurement, the
run's best when it finished, the best of all runs) and records what the verdict says.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from skylab.experiment.config import ExperimentConfig
from skylab.experiment.objective import is_better
from skylab.loop import stages
from skylab.loop.evidence import Evidence, Measurement, Rules, improvement
from skylab.loop.interleave import PAIRED_MEASUREMENTS, PAIRED_WITH, number_list, pair_differences
from skylab.store.history import History, Trial
from skylab.store.notes import Decision, Status, TrialNote
from skylab.terminal import plural


@dataclass(frozen=True)
class Verdict:
    status: Status  # the runner's status, or CONSTRAINT when a limit was broken
    reason: str  # why the trial did not succeed ("" when it did)
    decision: Decision
    new_best: bool  # kept, and better than the best of all runs
    why: str = ""  # how the decision was reached, in one line: the numbers it compared
    sem: float | None = None  # the standard error of the candidate's mean (None: σ unknown)


def rules_for(config: ExperimentConfig) -> Rules:
    """The judge's rules for an experiment: its direction, its VRAM limit, its [decision] settings."""
    decision = config.decision
    return Rules(
        config.direction,
        config.max_vram_gb,
        decision.noise_samples,
        decision.confirm,
        decision.sigmas,
        decision.min_delta,
        decision.keep_simpler,
        config.time_budget_seconds,
        decision.filter_sigmas,
        decision.early_sigmas,
        decision.futility,
        decision.paired,
        decision.interleave,
        decision.throughput_tolerance,
    )


def sigma_of(notes: Iterable[TrialNote | None], *more: Sequence[float]) -> float | None:
    """The pooled σ over every note with more than one measurement at the experiment's budget (and
    the best's measurements beside it, see loop.interleave), and the measurements in `more` (a
    trial not yet recorded; see `pooled_sigma`)."""
    repeated: list[Sequence[float]] = []
    for n in notes:
        if n is None or n.budget_scale != 1:
            continue
        repeated.append(n.measurements)
        if PAIRED_WITH in n.other:  # the best measured beside it: repeats of the best's commit
            repeated.append(number_list(n.other, PAIRED_MEASUREMENTS))
    return pooled_sigma([*repeated, *more])


def run_sigma(
    history: History, tag: str, tip: str | None, *more: Sequence[float], metric: str | None = None
) -> float | None:
    """The σ a run judges with: pooled over its own trials and every trial it compares against,
    the kept chain leading to its branch's tip (`tip`), so the starting point's repeats count even
    when they were measured under another run's tag (and `more`: a trial not yet recorded)."""
    return sigma_of((trial.note for trial in compared_trials(history, tag, tip, metric)), *more)


def compared_trials(history: History, tag: str, tip: str | None, metric: str | None = None) -> list[Trial]:
    """The trials a run's noise is estimated from: its own and the kept chain leading to its
    branch's tip (`tip`), each once; with `metric`, only those that measured it."""
    trials = {trial.commit: trial for trial in history.for_tag(tag)}
    if tip is not None:
        trials.update((trial.commit, trial) for trial in history.kept_chain(tip))
    if metric is None:
        return list(trials.values())
    return [t for t in trials.values() if t.note is not None and t.note.metric == metric]


MIN_PAIR_DOF = 4  # degrees of freedom of same-seed differences before σ_d is trusted (two full trials)


def same_seed_differences(note: TrialNote, reference: TrialNote) -> list[float]:
    """The differences of `note`'s measurements from `reference`'s made with the same seeds."""
    if len(reference.seeds) != len(reference.measurements) or len(note.seeds) != len(note.measurements):
        return []
    theirs = dict(zip(reference.seeds, reference.measurements, strict=True))
    pairs = zip(note.seeds, note.measurements, strict=True)
    return [value - theirs[seed] for seed, value in pairs if seed in theirs]


def run_pair_sigma(
    history: History, tag: str, tip: str | None, *more: Sequence[float], metric: str | None = None
) -> float | None:
    """The σ of one same-seed difference between a candidate and the best it was judged against,
    pooled over the run's trials (and the kept chain to `tip`) measured more than once, and `more`
    (the trial being judged). None until the recorded trials give MIN_PAIR_DOF degrees of
    freedom: σ_d decides whether pairing is the more precise comparison, so it is never taken
    from the trial being judged alone."""
    trials = compared_trials(history, tag, tip, metric)
    by_commit = history.by_commit()
    by_name = {trial.name: trial for trial in trials}
    groups = []
    for trial in trials:
        note = trial.note
        if note is None or len(note.measurements) < 2 or note.budget_scale != 1:
            continue
        beside = pair_differences(note)
        if beside is not None:  # the best measured beside it: its pairs are the differences
            groups.append(beside)
            continue
        against = note.other.get("judged_against")
        reference = by_name.get(against) if against else by_commit.get(note.parent)
        if reference is not None and reference.note is not None:
            groups.append(same_seed_differences(note, reference.note))
    if sum(max(0, len(group) - 1) for group in groups) < MIN_PAIR_DOF:
        return None
    return pooled_sigma([*groups, *more])


def pooled_sigma(groups: Iterable[Sequence[float]]) -> float | None:
    """The pooled standard deviation of one measurement over every commit measured more than once
    (None when none was): sqrt(Σ (n_i - 1) s_i² / Σ (n_i - 1))."""
    squares, dof = 0.0, 0
    for values in groups:
        if len(values) > 1:
            mean = math.fsum(values) / len(values)
            squares += math.fsum((v - mean) ** 2 for v in values)
            dof += len(values) - 1
    return None if dof == 0 else math.sqrt(squares / dof)


def threshold(sigma: float | None, n_candidate: int, n_reference: int, rules: Rules) -> float:
    """The improvement a candidate's mean must exceed at the last stage: max(min_delta, sigmas ·
    se), with se = σ · sqrt(1/n_c + 1/n_b) (just min_delta while σ is unknown)."""
    if sigma is None:
        return rules.min_delta
    return max(rules.min_delta, rules.sigmas * sigma * math.sqrt(1 / n_candidate + 1 / n_reference))


def describe(rules: Rules, sigma: float | None, fresh_samples: int = 0) -> str:
    """The decision settings in words, for the run's plan line (with `fresh_samples`: what the run
    measures after its last trial)."""
    fresh = f"; the best measured again on {fresh_samples} fresh seeds at the end" if fresh_samples else ""
    return _rule_in_words(rules, sigma) + fresh


def _rule_in_words(rules: Rules, sigma: float | None) -> str:
    simpler = ", or equal and simpler" if rules.keep_simpler else ""
    if rules.noise_samples == 1 and rules.confirm == 0 and rules.sigmas == 0:
        floor = f" by more than {rules.min_delta:g}" if rules.min_delta else ""
        return f"greedy: one measurement each, kept when better{floor}{simpler}"
    bar = f"max({rules.min_delta:g}, {rules.sigmas:g}σ·se)" if rules.min_delta else f"{rules.sigmas:g}σ·se"
    noise = "σ unknown until a repeat" if sigma is None else f"σ {sigma:.4g}"
    if sigma == 0.0:
        noise = "σ 0: deterministic, no confirmations"
    last = 1 + rules.confirm
    steps = []
    if rules.confirm and rules.filter_sigmas > 0:
        steps.append(f"screened out below {rules.filter_sigmas:g}σ after one")
    if last > 2 and math.isfinite(rules.early_sigmas):
        steps.append(f"kept early above {rules.early_sigmas:g}σ·se")
    if last > 2 and rules.futility > 0:
        steps.append(f"stopped below a {100 * rules.futility:g} % chance")
    steps.append(f"{'else ' if len(steps) > 0 else ''}kept when better by > {bar}{simpler}")
    paired = "; same-seed pairs when more precise" if rules.paired else ""
    tolerance = f"{100 * rules.throughput_tolerance:g} %"
    beside = {
        "auto": f"; the best measured beside it when throughput moves > {tolerance}",
        "always": "; the best measured beside every screened-in candidate",
    }.get(rules.interleave, "")
    candidate = f"a candidate up to {last}×: {', '.join(steps)}"
    return f"start measured {rules.noise_samples}×; {candidate}{paired}{beside} ({noise})"


def measurements_wanted(
    first: Measurement,
    measures_start: bool,
    reference: Evidence | None,
    sigma: float | None,
    rules: Rules,
    sigma_pair: float | None = None,
) -> int:
    """How many measurements the trial gets at most, decided once its first is in: the starting
    point gets `noise_samples`; a candidate that passes the screen (see stages.screen) up to
    1 + confirm, unless the experiment has shown itself deterministic (σ = 0); anything else, one
    (a failure, or a first measurement screened out: reverted at once). A candidate may still be
    decided before its last (see `stages.step`).

    The first measurement runs with seed 0, so it is compared with the best's own seed-0
    measurement when the best has one: every commit reuses seeds 0, 1, 2, and a seed's effect
    (its data order, its initialisation) then cancels, where against the best's mean a best whose
    seed 0 was its worst run would put every candidate behind from the start."""
    if first.status is not Status.SUCCESS or first.value is None or not math.isfinite(first.value):
        return 1
    if measures_start:
        return rules.noise_samples
    if reference is None or stages.last_measurement(rules, sigma) == 1:
        return 1
    simpler = rules.keep_simpler and first.lines_removed > 0  # equal but simpler is worth confirming
    verdict, _ = stages.step(Evidence((first.value,), (0,)), reference, sigma, sigma_pair, rules, simpler)
    return 1 + rules.confirm if verdict is stages.Step.MEASURE else 1


def judge(
    candidate: Measurement,
    evidence: Evidence | None,
    reference: Evidence | None,
    best: float | None,
    sigma: float | None,
    rules: Rules,
    sigma_pair: float | None = None,
) -> Verdict:
    """The verdict on a trial: `candidate` is how it ended (its status, VRAM and reason; a failed
    confirmation makes it a failure), `evidence` its successful measurements, `reference` the run's
    best when it finished (None when the run has none yet), `best` the best of all runs' mean,
    `sigma` the run's pooled σ (None: unknown) and `sigma_pair` that of a same-seed difference.

    A trial is kept only when it succeeded within the limits and the keep rule's stage its
    measurements reached keeps it (see `stages.step`; with all measurements in: its mean beats
    the reference's by more than max(min_delta, sigmas · se)), or (with keep_simpler) when its
    change removes code and its mean is no worse than the reference's beyond that same margin:
    equal but simpler wins. The first success of a run is kept as its reference. It is the new
    best when it is kept and its mean also beats `best`, or when a simpler change replaces a
    reference that is the best of all runs."""
    status, reason = within_limits(candidate, rules)
    if not usable(status, evidence) or evidence is None:
        return Verdict(status, reason, Decision.REVERT, False)
    sem = None if sigma is None else sigma / math.sqrt(evidence.n)
    simpler_keep = False
    if reference is None:
        keep, why = True, "the run's first measured result: its reference"
    else:
        simpler = rules.keep_simpler and candidate.lines_removed > 0
        comparison = stages.compare(evidence, reference, sigma, sigma_pair, rules)
        verdict, why = stages.step(evidence, reference, sigma, sigma_pair, rules, simpler)
        if verdict is stages.Step.MEASURE:  # decided before its last measurement: by the last bar
            verdict, why = stages.final(comparison, sigma, rules)
        keep = verdict is stages.Step.KEEP
        if not keep and simpler:
            bar, _ = stages.final_bar(comparison, rules)
            if comparison.gain >= -bar:
                simpler_keep, keep = True, True
                removed = plural(candidate.lines_removed, "line")
                why = (
                    f"simpler ({removed} fewer) and within noise of the best: "
                    f"improvement {comparison.gain:.4g} ≥ -{bar:.4g} {comparison.counts()}"
                )
    replaces_reference_best = simpler_keep and reference is not None and reference.mean == best
    new_best = keep and (is_better(evidence.mean, best, rules.direction) or replaces_reference_best)
    return Verdict(status, reason, Decision.KEEP if keep else Decision.REVERT, new_best, why, sem)


def within_limits(candidate: Measurement, rules: Rules) -> tuple[Status, str]:
    """The trial's status and reason once the experiment's limits are applied: a success over the
    VRAM limit, or trained past the time budget (by more than 5 % and 2 s), is a CONSTRAINT."""
    status, reason = candidate.status, candidate.reason
    vram = candidate.peak_vram_mb
    if status is Status.SUCCESS and rules.max_vram_gb and vram and vram > rules.max_vram_gb * 1024:
        status = Status.CONSTRAINT
        reason = f"peak VRAM {vram / 1024:.1f} GB is over max_vram_gb = {rules.max_vram_gb:g}"
    if status is Status.SUCCESS and candidate.mismatch:
        status, reason = Status.CONSTRAINT, candidate.mismatch
    trained, budget = candidate.train_seconds, rules.time_budget
    if status is Status.SUCCESS and trained and budget and trained > budget * 1.05 + 2:
        status = Status.CONSTRAINT
        reason = f"trained {trained:.1f} s, over the {budget:g} s time budget (5 % and 2 s are allowed)"
    return status, reason


SETUP_FIELDS = ("data", "profile")  # summary fields that say what a trial's value was measured on


def setup_mismatch(summary: Mapping[str, object], start: Mapping[str, object], start_name: str) -> str:
    """Why a trial cannot be compared with its run's starting point (`start`: that trial's summary):
    it reports other data or another profile ("" when it can, or when either does not say)."""
    for key in SETUP_FIELDS:
        if key in summary and key in start and summary[key] != start[key]:
            return (
                f"trained with {key} {summary[key]}, not {start[key]} like the run's starting point "
                f"{start_name}: not comparable"
            )
    return ""


def usable(status: Status, evidence: Evidence | None) -> bool:
    """Whether a trial's measurements can be compared at all: a success with finite values."""
    return (
        status is Status.SUCCESS and evidence is not None and all(math.isfinite(v) for v in evidence.values)
    )


def measured_only(
    candidate: Measurement, evidence: Evidence | None, sigma: float | None, rules: Rules, why: str
) -> Verdict:
    """The verdict on a trial that is measured for a study (an ablation, a confirmation at a longer
    budget), never a candidate: the limits apply as to any trial, it is never kept and never the
    best, and `why` says what it measured."""
    status, reason = within_limits(candidate, rules)
    if not usable(status, evidence) or evidence is None:
        return Verdict(status, reason, Decision.REVERT, False, why)
    sem = None if sigma is None else sigma / math.sqrt(evidence.n)
    return Verdict(status, reason, Decision.REVERT, False, why, sem)


def replaces_best(candidate: Trial, incumbent: Trial | None, history: History, rules: Rules) -> bool:
    """Whether a teammate's best (`candidate`, after a pull) should replace ours: by the same rule
    as a keep, with σ pooled over every repeated commit the joined history holds."""
    ours = incumbent.note.samples() if incumbent is not None and incumbent.note is not None else []
    theirs = candidate.note.samples() if candidate.note is not None else []
    if not ours:
        return True
    if not theirs:
        return False
    sigma = sigma_of(t.note for t in history.trials)
    candidate_evidence, incumbent_evidence = Evidence(tuple(theirs)), Evidence(tuple(ours))
    if beats(candidate_evidence, incumbent_evidence, sigma, rules)[0]:
        return True
    if candidate_evidence.mean != incumbent_evidence.mean:
        return False
    return incumbent is not None and _tie_order(candidate, len(theirs)) < _tie_order(incumbent, len(ours))


def _tie_order(trial: Trial, measurements: int) -> tuple[int, str, str]:
    """How two bests of equal means are ordered, the same in every clone, so two teammates who
    pull from each other agree on one: more measurements first, then the one started first, then
    the smaller commit id."""
    started = trial.note.started_at if trial.note is not None else ""
    return -measurements, started or "~", trial.commit


def beats(candidate: Evidence, reference: Evidence, sigma: float | None, rules: Rules) -> tuple[bool, str]:
    """Whether the candidate's mean beats the reference's beyond the last stage's bar (unpaired),
    and the numbers, in words."""
    if candidate.n == 1 and improvement(candidate.mean, reference.mean, rules.direction) <= 0:
        counts = f"(n {candidate.n} vs {reference.n})"
        return False, f"{candidate.mean:.6g} does not beat the best's mean {reference.mean:.6g} {counts}"
    unpaired = stages.compare(candidate, reference, sigma, None, rules)
    verdict, why = stages.final(unpaired, sigma, rules)
    return verdict is stages.Step.KEEP, why


MAX_SAME_FAILURES_IN_A_ROW = 5  # trials failing the same way in a row: the experiment, not the ideas
NOT_FAILURES = (Status.SUCCESS, Status.NOOP, Status.DUPLICATE, Status.INTERRUPTED)


def failure_signature(status: Status, reason: str, log_tail: str) -> str:
    """How a trial failed, in one line: status, reason and the last line it printed."""
    last_line = next((line for line in reversed(log_tail.splitlines()) if line.strip()), "")
    return f"{status.value}: {reason}" + (f" ({last_line.strip()[:200]})" if last_line else "")


def hopeless(
    recent_failures: list[str], status: Status, signature: str, measures_start: bool, start: str
) -> str:
    """Why the run cannot go on ("" when it can), after a trial with `status` that failed as
    `signature` (`recent_failures`: the failures in a row before it, oldest first). The starting
    point itself failing (its code, not the machine: an `infra` failure is measured again), or
    MAX_SAME_FAILURES_IN_A_ROW trials in a row failing the same way: no proposal can fix that."""
    if status in NOT_FAILURES:
        return ""
    if measures_start and status is not Status.INFRA:
        return f"the starting point {start[:10]} does not train ({signature}): fix it, then run again"
    recent = [*recent_failures, signature][-MAX_SAME_FAILURES_IN_A_ROW:]
    if len(recent) == MAX_SAME_FAILURES_IN_A_ROW and len(set(recent)) == 1:
        return f"{len(recent)} trials in a row failed the same way ({signature}): stopping"
    return ""


RECENT_SUCCESSES = 10  # the successes whose wall times say how long the next trial takes


def expected_trial_seconds(wall_seconds: list[float], time_budget: float, startup_allowance: float) -> float:
    """A trial's expected wall time: the median of the last RECENT_SUCCESSES successes'
    (`wall_seconds`, oldest first), else the time budget plus a start-up allowance."""
    recent = wall_seconds[-RECENT_SUCCESSES:]
    if recent:
        return float(statistics.median(recent))
    return time_budget + startup_allowance
