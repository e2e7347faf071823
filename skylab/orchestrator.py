"""The research loop: propose, validate, commit, run, record, keep or revert. It alone decides.

Every trial goes through the same path, whether a strategy proposed it or a researcher committed it
by hand on the run branch. Order of writes (see gitstore): the trial ref exists before training
starts, so a kill at any moment leaves either a finished trial or an interrupted one, never a lost one.
"""

from __future__ import annotations

import ast
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pygit2

from skylab import handcommits
from skylab.config import ExperimentConfig
from skylab.constants import read_constants
from skylab.durations import format_duration
from skylab.errors import SkylabError
from skylab.gitstore import History, Trial, TrialRef, TrialStore, run_branch, utc_now
from skylab.notes import Decision, Status, TrialNote
from skylab.progress import Reporter
from skylab.runlock import RunLock
from skylab.runner import Runner, RunResult
from skylab.scaffold import WORK_DIR
from skylab.strategy import Proposal, ProposalContext, Strategy
from skylab.worktree import TrialWorktree

STARTUP_ALLOWANCE = 30.0  # seconds a trial needs beyond its training budget, until history says better
MAX_DISCARDS_IN_A_ROW = 3


@dataclass
class RunOutcome:
    trials: int
    stopped_because: str
    best: Trial | None


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` stops a run the way Ctrl-C does: the current trial is recorded, then it exits."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Orchestrator:
    def __init__(
        self,
        store: TrialStore,
        config: ExperimentConfig,
        strategy: Strategy | None,
        runner: Runner,
        tag: str,
        reporter: Reporter,
        budget: float | None = None,
        max_trials: int | None = None,
        queued_only: bool = False,
        after_trial: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.strategy = strategy
        self.runner = runner
        self.tag = tag
        self.reporter = reporter
        self.budget = budget
        self.max_trials = max_trials
        self.queued_only = queued_only
        self.after_trial = after_trial  # e.g. rewrite the live report
        self.root = Path(store.repo.workdir or ".")
        self.log_dir = self.root / WORK_DIR / "logs" / tag

    # ----- the loop --------------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        with RunLock(Path(self.store.repo.path)), sigterm_as_interrupt():
            for line in self.store.repair(self.config.metric, self.config.is_better):
                self.reporter.say(f"repaired: {line}")
            self.store.ensure_run_branch(self.tag, self.store.start_point())
            self.worktree = TrialWorktree(self.store.repo, self.tag)
            self.worktree.reset(self._tip())  # undoes whatever a killed run left half-applied
            started = time.monotonic()
            done, discards, reason = 0, 0, "the strategy has nothing left to propose"
            try:
                while True:
                    if self.max_trials is not None and done >= self.max_trials:
                        reason = f"reached --max-trials {self.max_trials}"
                        break
                    history = self.store.load()  # once per trial: it is the slow read at 10,000 trials
                    expected = self.expected_trial_seconds(history)
                    if self.budget is not None and self.budget - (time.monotonic() - started) < expected:
                        reason = f"the budget left is shorter than a trial (~{format_duration(expected)})"
                        break
                    hand = handcommits.pop(self.store, self.tag)
                    if hand is not None:
                        done += self._hand_trial(hand, history)
                        continue
                    if self.queued_only or self.strategy is None:
                        reason = "no queued commits left"
                        break
                    outcome = self._proposed_trial(history)
                    if outcome is None:
                        break
                    if outcome == "discarded":
                        discards += 1
                        if discards >= MAX_DISCARDS_IN_A_ROW:
                            raise SkylabError(
                                "the strategy's proposals kept changing files that are not editable"
                            )
                        continue
                    discards = 0
                    done += 1
            except KeyboardInterrupt:
                reason = "interrupted"
            finally:
                self.worktree.reset(self._tip())
        history = self.store.load()
        best = history.by_commit().get(history.best or "")
        return RunOutcome(done, reason, best)

    def _tip(self) -> str:
        tip = self.store.ref_target(run_branch(self.tag))
        assert tip is not None
        return tip

    def expected_trial_seconds(self, history: History | None = None) -> float:
        """A trial's wall time so far in this experiment (median of recent successes), else a guess."""
        walls = [
            t.note.wall_seconds
            for t in (history or self.store.load()).trials
            if t.note and t.note.status is Status.SUCCESS and t.note.wall_seconds
        ][-10:]
        if walls:
            return float(statistics.median(walls))
        return self.config.time_budget_seconds + STARTUP_ALLOWANCE

    # ----- proposed trials ---------------------------------------------------------------------------

    def _proposed_trial(self, history: History) -> str | None:
        tip = self._tip()
        tip_trial = history.by_commit().get(tip)
        self.worktree.reset(tip)
        if tip_trial is None:  # the run starts from a commit never measured: measure it first
            proposal = Proposal("baseline: the starting point, unchanged", self._current_params())
        else:
            assert self.strategy is not None
            context = ProposalContext(
                self.config,
                history,
                self.tag,
                tip,
                tip_trial,
                self.worktree.path,
                self.store.diff_against_parent,
            )
            found = self.strategy.propose(context)
            if found is None:
                return None
            proposal = found
        changed = self.worktree.changed_files()
        outside = [path for path in changed if path not in self.config.editable_files]
        if outside:
            self.reporter.say(f"discarded a proposal that changed non-editable files: {', '.join(outside)}")
            self.worktree.reset(tip)
            return "discarded"
        tree = self.worktree.snapshot(changed)
        duplicate = self._same_change(history, tree) if changed else None
        trial = self.store.create_trial(self.tag, tree, tip, proposal.description)
        self.worktree.reset(trial.commit)
        self._judge(
            trial, tip, proposal, changed, history, is_baseline=tip_trial is None, duplicate_of=duplicate
        )
        return "ran"

    def _same_change(self, history: History, tree: pygit2.Oid) -> Trial | None:
        """An earlier trial whose files were exactly these: training it again would tell nothing new."""
        repo = self.store.repo
        judged = (Status.SUCCESS, Status.CRASH, Status.TIMEOUT, Status.CONSTRAINT)
        for trial in history.trials:
            if trial.note is None or trial.note.status not in judged:
                continue  # an interrupted trial's change deserves its run
            commit = repo.get(trial.commit)
            if isinstance(commit, pygit2.Commit) and commit.tree_id == tree:
                return trial
        return None

    def _current_params(self) -> dict[str, int | float | str | bool]:
        """The sweep parameters' values in the tip: the baseline is a point of the search too."""
        sweep = self.config.sweep
        if sweep is None:
            return {}
        constants = read_constants((self.worktree.path / sweep.file).read_text(encoding="utf-8"), sweep.file)
        names = {p.name for p in sweep.parameters}
        return {k: v for k, v in constants.items() if k in names and isinstance(v, int | float | str | bool)}

    # ----- hand-made commits -------------------------------------------------------------------------

    def _hand_trial(self, commit: str, history: History) -> int:
        if commit in history.by_commit() or self.store.repo.get(commit) is None:
            return 0
        obj = self.store.repo[commit].peel(pygit2.Commit)
        if not obj.parent_ids:
            return 0
        parent = str(obj.parent_ids[0])
        changed = sorted(self._diff_paths(parent, commit))
        trial = self.store.begin_trial(self.tag, commit)
        self.worktree.reset(commit)
        proposal = Proposal(obj.message.strip().split("\n")[0] or "hand-made commit")
        note = self._judge(trial, parent, proposal, changed, history, strategy="manual")
        tip = self._tip()
        if note.decision is Decision.REVERT and tip == commit:
            self.store.move_run_branch(self.tag, parent, f"revert hand commit {trial.name}")
            self._follow_in_checkout(commit, parent)
        return 1

    def _follow_in_checkout(self, reverted: str, parent: str) -> None:
        """If the researcher's checkout sat clean on the reverted commit, bring it back with the branch."""
        repo = self.store.repo
        if repo.head_is_detached or repo.head.name != run_branch(self.tag):
            return
        tree = repo[reverted].peel(pygit2.Commit).tree
        index_tree = repo.index.write_tree()
        dirty = [p for p, f in repo.status().items() if f != pygit2.enums.FileStatus.IGNORED]
        # The branch already moved, so "clean" means: files and index still hold the reverted commit.
        if index_tree == tree.id and set(dirty) <= set(self._diff_paths(parent, reverted)):
            force = pygit2.enums.CheckoutStrategy.FORCE
            repo.checkout_tree(repo[parent].peel(pygit2.Tree), strategy=force)  # type: ignore[no-untyped-call]
            repo.index.read_tree(repo[parent].peel(pygit2.Tree))
            repo.index.write()
            self.reporter.say(f"your checkout of skylab/{self.tag} followed the branch back to {parent[:10]}")

    def _diff_paths(self, a: str, b: str) -> set[str]:
        diff = self.store.repo[a].peel(pygit2.Tree).diff_to_tree(self.store.repo[b].peel(pygit2.Tree))
        paths = set()
        for delta in diff.deltas:
            paths |= {delta.new_file.path, delta.old_file.path}
        return paths

    # ----- judging ---------------------------------------------------------------------------------

    def _judge(
        self,
        trial: TrialRef,
        parent: str,
        proposal: Proposal,
        changed: list[str],
        history: History,
        strategy: str | None = None,
        is_baseline: bool = False,
        duplicate_of: Trial | None = None,
    ) -> TrialNote:
        by_commit = history.by_commit()
        parent_trial = by_commit.get(parent)
        parent_value = parent_trial.value if parent_trial else None
        note = TrialNote(
            trial=trial.number,
            tag=self.tag,
            status=Status.SUCCESS,
            decision=Decision.REVERT,
            metric=self.config.metric,
            strategy=strategy or (self.strategy.name if self.strategy else "manual"),
            parent=parent,
            started_at=utc_now(),
            description=proposal.description,
            params=dict(proposal.params),
        )
        note.other.update({key: str(value) for key, value in proposal.usage.items()})
        problem = self._static_problem(changed, is_baseline)
        if problem is None and duplicate_of is not None:
            problem = Status.DUPLICATE, f"the same change as trial {duplicate_of.name}: not trained again"
        expected = self.expected_trial_seconds(history)
        self.reporter.trial_started(trial.name, proposal.description, expected)
        self.reporter.add_tokens(sum(proposal.usage.values()))
        if problem is not None:
            note.status, note.reason = problem
        else:
            try:
                result = self.runner.run(
                    self.worktree.path,
                    self.config.command,
                    self.config.metric,
                    self.config.max_trial_wall_time,
                    self.log_dir / f"{trial.number}.log",
                    self.reporter.line,
                )
            except KeyboardInterrupt:
                note.status, note.reason = Status.INTERRUPTED, "stopped by the researcher (Ctrl-C or SIGTERM)"
                self.store.finish_trial(trial, note, new_best=False)
                best = self._best_for_display(by_commit)
                self.reporter.trial_finished(f"trial {trial.name}: interrupted", *best)
                raise
            self._apply(note, result)
            if (
                note.status is Status.SUCCESS
                and note.value is not None
                and self.config.is_better(note.value, parent_value)
            ):
                note.decision = Decision.KEEP
        best_value = self._value(by_commit, self.store.best())
        new_best = note.decision is Decision.KEEP and self.config.is_better(note.value or 0.0, best_value)
        self.store.finish_trial(trial, note, new_best=new_best)
        best = (note.value, trial.name) if new_best else self._best_for_display(by_commit)
        self.reporter.trial_finished(self._summary_line(trial, note, parent_value), *best)
        if self.after_trial is not None:
            self.after_trial()
        return note

    def _static_problem(self, changed: list[str], is_baseline: bool) -> tuple[Status, str] | None:
        """Reasons not to spend compute on a trial at all."""
        outside = [p for p in changed if p not in self.config.editable_files]
        if outside:
            return Status.CRASH, f"changes files that are not editable: {', '.join(outside)}"
        if not changed and not is_baseline:
            return Status.NOOP, "the proposal changed nothing"
        for path in changed:
            file = self.worktree.path / path
            if path.endswith(".py") and file.exists():
                try:
                    ast.parse(file.read_text(encoding="utf-8"), filename=path)
                except SyntaxError as exc:
                    return Status.CRASH, f"{path}:{exc.lineno}: {exc.msg} (not run)"
        return None

    def _apply(self, note: TrialNote, result: RunResult) -> None:
        note.status, note.reason, note.log_tail = result.status, result.reason, result.log_tail
        note.value, note.peak_vram_mb = result.value, result.peak_vram_mb
        note.train_seconds, note.wall_seconds = result.train_seconds, round(result.wall_seconds, 3)
        known = {self.config.metric, "peak_vram_mb", "training_seconds"}
        note.summary = {k: v for k, v in result.summary.items() if k not in known}
        if result.log_path is not None:
            note.other["log"] = str(result.log_path.relative_to(self.root))
        limit = self.config.max_vram_gb
        if note.status is Status.SUCCESS and limit and note.peak_vram_mb and note.peak_vram_mb > limit * 1024:
            note.status = Status.CONSTRAINT
            note.reason = f"peak VRAM {note.peak_vram_mb / 1024:.1f} GB is over max_vram_gb = {limit:g}"

    @staticmethod
    def _value(by_commit: dict[str, Trial], commit: str | None) -> float | None:
        trial = by_commit.get(commit or "")
        return trial.value if trial else None

    def _best_for_display(self, by_commit: dict[str, Trial]) -> tuple[float | None, str]:
        best = by_commit.get(self.store.best() or "")
        return (best.value, best.name) if best else (None, "")

    def _summary_line(self, trial: TrialRef, note: TrialNote, parent_value: float | None) -> str:
        if note.value is None:
            return f"trial {trial.name}: {note.status.value} — {note.reason}"
        delta = "" if parent_value is None else f" ({note.value - parent_value:+.6f})"
        return (
            f"trial {trial.name}: {note.status.value} {self.config.metric} {note.value:.6f}{delta} → "
            f"{note.decision.value}"
        )
