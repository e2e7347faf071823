"""Deciding a finished trial: ask the judge, record the verdict, move what a keep moves.

The orchestrator calls `Decider.decide` under its decision lock, one trial at a time, against the
run's best at that moment; the store reads that moment and records the verdict under its own lock
(`TrialStore.decide`), which the loop never takes. Every rule comes from `judge`; this module turns
the verdict into what the store records (note, run branch, best), keeps the researcher's checkout
of the run branch in step, reverts a reverted hand commit off the branch and queues the
merge-forward of a best the trial overtook.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from functools import partial

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.loop.curves import CURVE_KEY, CurveGuide, parse_summary
from skylab.loop.evidence import Evidence, Measurement
from skylab.loop.forward import RunLine, merge_forward_job, run_best, settled_tip
from skylab.loop.handcommits import queued
from skylab.loop.interleave import PAIRED_FLAG, pair_differences, paired_evidence, reference_evidence
from skylab.loop.jobs import Job
from skylab.loop.judge import (
    NOT_FAILURES,
    Verdict,
    failure_signature,
    hopeless,
    judge,
    measured_only,
    rules_for,
    run_pair_sigma,
    run_sigma,
    same_seed_differences,
    setup_mismatch,
    threshold,
)
from skylab.loop.progress import Reporter, Result
from skylab.store.gitstore import RunMoment, TrialStore
from skylab.store.history import History, Trial
from skylab.store.notes import Decision, Status, TrialNote
from skylab.store.refs import TrialRef, run_branch


@dataclass(frozen=True)
class Judged:
    """What the judge says of one trial: what the store records (its note, whether it is the new
    best, whether a keep moves the run branch) and what follows it."""

    note: TrialNote
    new_best: bool
    move_branch: bool
    overtaken: bool  # kept, and the run's tip it never saw is carried forward onto it
    reference_value: float | None  # the run's best it was judged against


class Decider:
    """Decides and records trials of one run; not thread-safe: its caller serialises `decide`."""

    def __init__(self, config: ExperimentConfig, tag: str, reporter: Reporter) -> None:
        self.config = config
        self.tag = tag
        self.reporter = reporter
        self.rules = rules_for(config)
        self.deterministic_said = False
        self.forward: deque[Job] = deque()  # merge-forward trials, trained before new proposals
        self._failures: list[str] = []  # how the latest trials failed, in a row (cleared by a success)

    def tip(self, store: TrialStore) -> str:
        tip = store.git.ref_target(run_branch(self.tag))
        assert tip is not None, "the run branch exists from the start of a run"
        return tip

    def decide(self, store: TrialStore, job: Job, note: TrialNote) -> None:
        """Keep or revert against the run's best now, record it, and carry an overtaken best forward.
        A trial that is not a candidate (a study's) is only recorded: see `record_measured`.

        The store reads the run and records the verdict under its lock (`TrialStore.decide`);
        what follows a keep (the checkout, the branch settled, a merge-forward queued) each take
        it again for their own writes."""
        if not job.candidate:
            self.record_measured(store, job, note)
            return
        moment, judged = store.decide(job.trial, partial(self._judge, store, job, note))
        trial, tip = job.trial, moment.tip
        kept = note.decision is Decision.KEEP
        if kept and judged.move_branch and tip != trial.commit:
            self.follow_in_checkout(store, tip, trial.commit)
        if job.hand_made:
            self.settle(store, f"leave what was not kept off the branch ({trial.name})")
        if judged.overtaken:
            forward, line = merge_forward_job(store, self.tag, job, tip, moment.history.by_commit())
            if forward is not None:
                self.forward.append(forward)
            if line:
                self.reporter.say(line)
        best = (note.value, trial.name, note.sem) if judged.new_best else best_for_display(store)
        line = summary_line(trial, note, self.config.metric, judged.reference_value)
        if note.verdict and not self.config.decision.greedy:
            line += f" ({note.verdict})"
        delta = (
            None
            if note.value is None or judged.reference_value is None
            else note.value - judged.reference_value
        )
        outcome = note.decision.value if note.status is Status.SUCCESS else note.status.value
        self.reporter.trial_finished(line, *best, result=Result(trial.name, note.value, delta, outcome))

    def _judge(self, store: TrialStore, job: Job, note: TrialNote, moment: RunMoment) -> Judged:
        """The verdict on `job` against the run as it is at `moment`, written into `note`; what to
        record and what follows from it. Writes nothing (the store records it)."""
        history, tip, trial = moment.history, moment.tip, job.trial
        reference = run_best(store, tip, trial.commit, RunLine(history, self.tag), self.config.metric)
        measured = self._measured(store, job, note, history)
        evidence = note_evidence(note)
        sigma = self.sigma(history, tip, note.measurements)
        sigma_pair = self.sigma_pair(history, tip, note, reference)
        best = _value_in(history, moment.best, self.config.metric)
        against = reference_evidence(note, reference, history.for_tag(self.tag))
        verdict = judge(measured, evidence, against, best, sigma, self.rules, sigma_pair)
        _record_verdict(note, verdict, sigma)
        if reference is not None and paired_evidence(note, reference.name) is not None and note.verdict:
            note.verdict += f"; {reference.name} measured beside it"
        if note.other.get(PAIRED_FLAG) and note.verdict:
            note.verdict += f"; {note.other[PAIRED_FLAG]}"
        run_best_now = note.samples() if note.decision is Decision.KEEP else _samples(reference)
        bar = threshold(sigma, 1 + self.rules.confirm, max(1, len(run_best_now)), self.rules)
        self.reporter.noise(sigma, bar)
        if reference is not None and reference.commit != job.parent:
            note.other["judged_against"] = reference.name  # the best had moved on while it trained
        # A hand commit's trial moves the branch only while nothing was committed on top of it:
        # the researcher's newer commits stay checked out, queued (see settle).
        on_its_line = tip in (job.parent, trial.commit, job.source)
        moves = on_its_line or not job.hand_made
        overtaken = note.decision is Decision.KEEP and not on_its_line and moves
        if overtaken:
            by_commit = history.by_commit()
            note.other["overtook"] = by_commit[tip].name if tip in by_commit else tip[:10]
        reference_value = reference.value if reference else None
        return Judged(note, verdict.new_best, moves, overtaken, reference_value)

    def record_measured(self, store: TrialStore, job: Job, note: TrialNote) -> None:
        """Record a study's trial (an ablation, a confirmation): the limits apply (the time budget
        scaled as it trained), it is never kept, and no ref moves."""

        def measured(moment: RunMoment) -> Judged:
            sigma = self.sigma(moment.history, moment.tip, note.measurements)
            budget = self.rules.time_budget
            rules = replace(self.rules, time_budget=None if budget is None else budget * job.budget_scale)
            evidence = note_evidence(note)
            why = f"{job.strategy}: measured for a study, never a candidate for the best"
            verdict = measured_only(
                self._measured(store, job, note, moment.history), evidence, sigma, rules, why
            )
            _record_verdict(note, verdict, sigma)
            return Judged(note, False, False, False, None)

        store.decide(job.trial, measured)
        best = best_for_display(store)
        line = summary_line(job.trial, note, self.config.metric, None, "(measured)")
        outcome = "measured" if note.status is Status.SUCCESS else note.status.value
        self.reporter.trial_finished(line, *best, result=Result(job.trial.name, note.value, None, outcome))

    def record_stopped(
        self, store: TrialStore, job: Job, note: TrialNote, partly_measured: bool
    ) -> tuple[str, Best]:
        """A trial the researcher stopped: with measurements already in, it is left for the next run
        of this tag to continue; otherwise it is recorded as interrupted. Returns the line to show
        and the best for display."""
        if not partly_measured:
            note.status, note.reason = Status.INTERRUPTED, "stopped by the researcher (Ctrl-C or SIGTERM)"
            store.finish_trial(job.trial, note, new_best=False)
        kept = "; its finished measurements are kept for the next run" if partly_measured else ""
        return f"trial {job.trial.name}: interrupted{kept}", best_for_display(store)

    def sigma(self, history: History, tip: str | None, *more: list[float]) -> float | None:
        """The run's pooled σ of one measurement: every commit of this run, or of the kept chain
        to its `tip`, measured more than once (and `more`, the trial being judged; see
        judge.run_sigma). Says once when all repeats so far measured the same."""
        sigma = run_sigma(history, self.tag, tip, *more, metric=self.config.metric)
        if sigma == 0.0 and not self.deterministic_said:
            self.deterministic_said = True
            self.reporter.say(
                "every repeat so far measured the same value: the experiment is deterministic, "
                "so no more repeats are spent"
            )
        return sigma

    def sigma_pair(
        self, history: History, tip: str | None, note: TrialNote, reference: Trial | None
    ) -> float | None:
        """The run's σ of a same-seed difference, with the trial being judged (`note`) against
        `reference` (see judge.run_pair_sigma)."""
        if not self.rules.paired or reference is None or reference.note is None:
            return None
        beside = pair_differences(note) if paired_evidence(note, reference.name) is not None else None
        differences = beside if beside is not None else same_seed_differences(note, reference.note)
        return run_pair_sigma(history, self.tag, tip, differences, metric=self.config.metric)

    def curve_guide(self, store: TrialStore, job: Job) -> CurveGuide | None:
        """The curves a candidate's measurement is held against (see curves.CurveGuide): the run's
        best's and its starting point's. None for a study's or the starting point's own, or while
        either has no curve summary."""
        if not job.candidate or job.measures_start or job.budget_scale != 1 or job.beside is not None:
            return None
        history, _, best = self.run_best_now(store, job)
        start = _run_start(history, self.tag, job)
        best_curve = parse_summary(best.note.other.get(CURVE_KEY, "")) if best and best.note else None
        start_curve = parse_summary(start.note.other.get(CURVE_KEY, "")) if start and start.note else None
        if best_curve is None or start_curve is None:
            return None
        return CurveGuide(best_curve, start_curve, self.config.time_budget_seconds)

    def run_best_now(self, store: TrialStore, job: Job) -> tuple[History, str, Trial | None]:
        """The history as it is now, the run branch's tip, and the run's best `job` is judged against."""
        history, tip = store.load(), self.tip(store)
        line = RunLine(history, self.tag)
        return history, tip, run_best(store, tip, job.trial.commit, line, self.config.metric)

    def lines_removed(self, store: TrialStore, job: Job) -> int:
        """Net lines of code `job`'s change removed (0 unless keep_simpler asks: it costs a diff)."""
        return store.changes.lines_removed(job.parent, job.trial.commit) if self.rules.keep_simpler else 0

    def _measured(self, store: TrialStore, job: Job, note: TrialNote, history: History) -> Measurement:
        removed = self.lines_removed(store, job)
        runs = max(1, len(note.measurements))  # a note's training time covers all its measurements
        trained = None if note.train_seconds is None else note.train_seconds / runs
        start = _run_start(history, self.tag, job)
        mismatch = (
            setup_mismatch(note.summary, start.note.summary, start.name) if start and start.note else ""
        )
        return Measurement(
            note.status, note.value, note.peak_vram_mb, note.reason, removed, trained, mismatch
        )

    def check_failures(self, job: Job, note: TrialNote) -> None:
        """Stop the run (its error: one line) when the judge says no proposal can help."""
        if note.status in NOT_FAILURES:
            self._failures.clear()
            return
        signature = failure_signature(note.status, note.reason, note.log_tail)
        why = hopeless(self._failures, note.status, signature, job.measures_start, job.parent)
        self._failures.append(signature)
        if why:
            raise SkylabError(why)

    def continue_from_shared_best(self, store: TrialStore) -> None:
        """A run whose tip is worse than the best of all (a teammate's, after `skylab pull`, or another
        run's) continues from that best: its chain is real ancestry, every link measured."""
        best, tip = store.best(), self.tip(store)
        if best is None or best == tip:
            return
        history = store.load()
        best_trial = history.by_commit().get(best)
        tip_trial = run_best(store, tip, "", RunLine(history, self.tag), self.config.metric)
        if best_trial is None or best_trial.value is None or tip_trial is None:
            return
        if best_trial.note is None or best_trial.note.metric != self.config.metric:
            return  # the best of all measured another metric: no number of it compares with ours
        if self.config.is_better(best_trial.value, tip_trial.value):
            store.move_run_branch(self.tag, best, f"continue from the best, {best_trial.name}")
            self.follow_in_checkout(store, tip, best)
            self.reporter.say(
                f"continuing from the best of all runs, {best_trial.name} ({best_trial.value:.6f}), "
                f"not this run's {tip_trial.name} ({tip_trial.value:.6f})"
            )

    def settle(self, store: TrialStore, reason: str) -> None:
        """Move the run branch off trials that were not kept (see forward.settled_tip): a reverted
        hand commit, or one the run stopped before judging, never stays what the run builds on."""

        def settled(moment: RunMoment) -> str:
            return settled_tip(store, moment.tip, RunLine(moment.history, self.tag), queued(store, self.tag))

        old, new = store.settle(self.tag, settled, reason)
        if new != old:
            self.follow_in_checkout(store, old, new)

    def follow_in_checkout(self, store: TrialStore, old: str, new: str) -> None:
        """The run branch moved from `old` to `new`: a checkout of it that sat clean moves along."""
        if store.follow_checkout(run_branch(self.tag), old, new):
            self.reporter.say(f"your checkout of skylab/{self.tag} followed the branch to {new[:10]}")


def _value_in(history: History, commit: str | None, metric: str) -> float | None:
    """The value of trial `commit` when it measured `metric` (None: no trial, no value, or a note
    of another metric, which no value of `metric` is compared with)."""
    trial = history.by_commit().get(commit or "")
    if trial is None or trial.note is None or trial.note.metric != metric:
        return None
    return trial.value


def _run_start(history: History, tag: str, job: Job) -> Trial | None:
    """Run `tag`'s starting point: its first trial that succeeded (not `job`'s own)."""
    return next(
        (
            t
            for t in history.for_tag(tag)
            if t.note is not None and t.note.status is Status.SUCCESS and t.commit != job.trial.commit
        ),
        None,
    )


def _samples(trial: Trial | None) -> list[float]:
    return trial.note.samples() if trial is not None and trial.note is not None else []


def _evidence_of(values: list[float], seeds: list[int]) -> Evidence | None:
    """`values` with their seeds when there is one for each (None when there are no values)."""
    if not values:
        return None
    return Evidence(tuple(values), tuple(seeds) if len(seeds) == len(values) else ())


def note_evidence(note: TrialNote) -> Evidence | None:
    """A note's successful measurements with their seeds (None when it has none)."""
    return _evidence_of(note.measurements, note.seeds)


Best = tuple[float | None, str, float | None]  # the best's value, its name, its standard error


def best_for_display(store: TrialStore) -> Best:
    best = store.best()
    note = store.note_for(best) if best else None
    return (note.value, f"{note.tag}/{note.trial}", note.sem) if note else (None, "", None)


def _record_verdict(note: TrialNote, verdict: Verdict, sigma: float | None) -> None:
    """Copy the judge's verdict, and the σ it was judged with, into the note."""
    note.status, note.reason, note.decision = verdict.status, verdict.reason, verdict.decision
    note.verdict, note.sem, note.sigma = verdict.why, verdict.sem, sigma


def summary_line(
    trial: TrialRef, note: TrialNote, metric: str, parent_value: float | None, ending: str = ""
) -> str:
    """The trial's result in one line, ending with `ending` (default: → its decision)."""
    if note.value is None:
        return f"trial {trial.name}: {note.status.value} — {note.reason}"
    delta = "" if parent_value is None else f" ({note.value - parent_value:+.6f})"
    n = len(note.measurements)
    mean = f"{note.value:.6f}" if n < 2 else f"{note.value:.6f} (mean of {n})"
    ending = ending or f"→ {note.decision.value}"
    return f"trial {trial.name}: {note.status.value} {metric} {mean}{delta} {ending}"
