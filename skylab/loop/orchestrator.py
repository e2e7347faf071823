"""The research loop: propose, validate, commit, run, record, keep or revert. It alone decides.

Every trial goes through the same path, whether a strategy proposed it or a researcher committed it
by hand on the run branch. Order of writes (see gitstore): the trial ref exists before training
starts, so a kill at any moment leaves either a finished trial or an interrupted one, never a lost one.

With several workers, each has its own work tree, runner (pinned to its GPU or host) and store
handle, and trains in its own thread. Proposals are made one at a time and see the trials in
flight; decisions are made one at a time against the run's best at the moment a trial finishes.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.experiment.durations import format_duration
from skylab.experiment.layout import log_dir
from skylab.loop.checks import current_params
from skylab.loop.curves import CURVE_KEY, POINTS_KEY, DivergenceWatch, EitherSet
from skylab.loop.decision import Decider
from skylab.loop.interleave import PAIRED_MEASUREMENTS, number_list
from skylab.loop.jobs import MERGE_FORWARD, Job, RunOutcome, Worker, queued_line, starting_note
from skylab.loop.judge import RECENT_SUCCESSES, expected_trial_seconds
from skylab.loop.measuring import BUDGET_VARIABLE, SEED_VARIABLE, Measurements, announcement, take_curves
from skylab.loop.planning import TrialPlan
from skylab.loop.progress import Coalesced, Reporter, remaining
from skylab.loop.sources import Stop, TrialSources
from skylab.loop.worktree import TrialWorktree, remove_extra_worktrees
from skylab.runner import Runner, RunResult, StopSignal, TrialRequest, TrialStopped
from skylab.store.gitstore import TrialStore
from skylab.store.history import History
from skylab.store.notes import Status, TrialNote
from skylab.store.runlock import RunLock
from skylab.strategy import PendingTrial, Strategy

STARTUP_ALLOWANCE = 30.0  # seconds a trial needs beyond its training budget, until history says better
WAIT_POLL_SECONDS = 0.5  # a worker with nothing to start yet looks again this often


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` stops a run the way Ctrl-C does: the current trials are recorded, then it exits."""

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
        runner: Runner | Sequence[Runner],
        tag: str,
        reporter: Reporter,
        budget: float | None = None,
        max_trials: int | None = None,
        queued_only: bool = False,
        after_trial: Callable[[], None] | None = None,
        prepare: Callable[[Callable[[str], None]], list[Job]] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.strategy = strategy
        self.runners: list[Runner] = list(runner) if isinstance(runner, Sequence) else [runner]
        if not self.runners:
            raise SkylabError("a run needs at least one worker")
        self.tag = tag
        self.reporter = reporter
        self.budget = budget
        self.max_trials = max_trials
        self.queued_only = queued_only
        # A study's trials: `prepare(say)` commits them once the run holds the lock and has repaired
        # what a crash left; the run then trains these and nothing else.
        self._prepare = prepare
        self._after_trial = Coalesced(after_trial)  # e.g. rewrite the live report
        self.root = store.git.root
        self.log_dir = log_dir(self.root, tag)
        self._propose_lock = threading.Lock()  # one proposal at a time, seeing every trial in flight
        self._state = threading.Condition()  # guards the counters below; decisions happen under it
        self._stop = threading.Event()
        self._pending: dict[str, tuple[PendingTrial, str]] = {}  # trial commit -> (trial, tree id)
        self._hand_in_flight: set[str] = set()  # the trial commits of hand-made jobs in flight
        self.measurements = Measurements()  # trials measured more than once, and their repeats
        self._claimed = self._done = self._discards = 0
        self._reason = "the strategy has nothing left to propose"
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self.ran_by = ran_by(store)
        self.decider = Decider(config, tag, reporter)
        self.sources = TrialSources(config, tag, strategy, queued_only, self.decider, reporter.say)

    # ----- the loop --------------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        with RunLock(self.store.git.git_dir), sigterm_as_interrupt():
            for line in self.store.repair(self.config.metric, self.config.is_better, resuming=self.tag):
                self.reporter.say(f"repaired: {line}")
            for job in self.measurements.resume(self.store, self.tag):
                self._pending[job.trial.commit] = _in_flight(self.store, job)
                if job.hand_made:
                    self._hand_in_flight.add(job.trial.commit)
                self.reporter.say(f"continuing trial {job.trial.name}: its remaining measurements run first")
            self.store.ensure_run_branch(self.tag, self.store.start_point())
            if self._prepare is None:
                self.decider.settle(self.store, "leave what was not kept off the branch")
                self.decider.continue_from_shared_best(self.store)
            else:
                self.sources.prepared = deque(self._prepare(self.reporter.say))
                self.reporter.say(
                    queued_line(self.sources.prepared, self.expected_trial_seconds(), len(self.runners))
                )
            for name in remove_extra_worktrees(self.root, self.tag, len(self.runners)):
                self.reporter.say(f"removed the work tree of a worker this run does not have: {name}")
            workers = [self._make_worker(index, runner) for index, runner in enumerate(self.runners)]
            self.worktree = workers[0].worktree
            for worker in workers:  # undoes whatever a killed run left half-applied
                worker.worktree.reset(self.decider.tip(self.store))
            self._started = time.monotonic()
            finished = [threading.Event() for _ in workers]
            try:
                for worker, done in zip(workers, finished, strict=True):
                    name = f"skylab-worker-{worker.index}"
                    threading.Thread(target=self._work, args=(worker, done), name=name).start()
                _wait_all(finished)
            except KeyboardInterrupt:
                self._interrupt(finished)
            finally:
                for worker in workers:
                    worker.worktree.reset(self.decider.tip(self.store))
        if self._error is not None:
            raise self._error
        history = self.store.load()
        best = history.by_commit().get(history.best or "")
        return RunOutcome(self._done, self._reason, best)

    def _make_worker(self, index: int, runner: Runner) -> Worker:
        store = self.store if index == 0 else TrialStore.open(self.store.git.git_dir)  # a handle per thread
        return Worker(index, store, TrialWorktree(self.root, self.tag, index), runner)

    def _interrupt(self, finished: list[threading.Event]) -> None:
        """Stop every worker: each records its trial as interrupted before its thread ends."""
        self._reason = "interrupted"
        self._stop.set()
        while True:
            try:
                _wait_all(finished)
                return
            except KeyboardInterrupt:
                continue  # a second Ctrl-C: the workers are already stopping

    def _work(self, worker: Worker, finished: threading.Event) -> None:
        try:
            self._work_until_done(worker)
        finally:
            finished.set()

    def _work_until_done(self, worker: Worker) -> None:
        try:
            while not self._stop.is_set():
                job = self._next_job(worker)
                if job is None:
                    return
                note = self._execute(worker, job)
                if note is None:
                    return  # interrupted
                self._decide(worker, job, note)
                self.reporter.worker_idle(worker.index)
        except BaseException as exc:  # an error stops new proposals; trials in flight still finish
            with self._state:
                if self._error is None and not isinstance(exc, KeyboardInterrupt):
                    self._error = exc
                    if self._pending:
                        self.reporter.say(
                            f"error: {exc}; waiting for {len(self._pending)} trial(s) in flight "
                            "(Ctrl-C stops them)"
                        )
                self._state.notify_all()

    def expected_trial_seconds(self, history: History | None = None) -> float:
        """A trial's wall time so far in this experiment (median of recent successes), else a guess."""
        walls = recent_walls(history or self.store.load())
        return expected_trial_seconds(walls, self.config.time_budget_seconds, STARTUP_ALLOWANCE)

    # ----- choosing the next trial -------------------------------------------------------------------

    def _next_job(self, worker: Worker) -> Job | None:
        """The next trial for `worker`, committed and registered as in flight; None: this worker stops."""
        while True:
            with self._propose_lock:
                if self._stop.is_set() or self._error is not None:
                    return None
                with self._state:  # repeats of trials already started come first, past any limit
                    if self.measurements.queue:
                        return self.measurements.queue.popleft()
                    if self.max_trials is not None and self._claimed >= self.max_trials:
                        self._reason = f"reached --max-trials {self.max_trials}"
                        return None
                with self._state:  # history and trials in flight as of one moment: none falls between
                    history = worker.store.load()  # once per trial: the slow read at 10,000 trials
                    pending = list(self._pending.values())
                expected = self.expected_trial_seconds(history)
                if self.budget is not None and self.budget - (time.monotonic() - self._started) < expected:
                    self._reason = f"the budget left is shorter than a trial (~{format_duration(expected)})"
                    return None
                with self._state:
                    hand_in_flight = bool(self._hand_in_flight)
                    left = remaining(
                        self.max_trials, self._claimed, self.budget, time.monotonic() - self._started
                    )
                job = self.sources.next(worker, history, pending, hand_in_flight, left)
                if isinstance(job, Stop):
                    self._reason = job.reason or self._reason
                    return None
                if isinstance(job, Job):
                    with self._state:
                        self._claimed += 1
                        self.reporter.claimed(self._claimed)
                        self._pending[job.trial.commit] = _in_flight(worker.store, job)
                        if job.hand_made:
                            self._hand_in_flight.add(job.trial.commit)
                    return job
            with self._state:  # "wait": another worker's result decides what comes next
                self._state.wait(WAIT_POLL_SECONDS)

    # ----- training ----------------------------------------------------------------------------------

    def _execute(self, worker: Worker, job: Job) -> TrialNote | None:
        """Train the job's commit (unless it has a problem); None when the run was stopped meanwhile."""
        worker.worktree.reset(job.checkout)
        if job.strategy == MERGE_FORWARD and job.beside is None:
            job.proposal.params = dict(current_params(self.config, worker.worktree.path))
        shared = len(self.runners) > 1
        note = starting_note(job, self.config.metric, self.ran_by, str(worker.index) if shared else None)
        expected = self.expected_trial_seconds() * job.budget_scale
        self.reporter.trial_started(*announcement(job), expected, worker.index)
        if not job.seed and job.beside is None:
            usage = job.proposal.usage
            self.reporter.add_tokens(usage.get("tokens_in", 0) + usage.get("tokens_out", 0))
        if job.problem is not None:
            note.status, note.reason = job.problem
            return note
        stops = self.config.decision.stop_diverged
        guide = self.decider.curve_guide(worker.store, job) if stops else None  # nothing to stop otherwise
        watch = DivergenceWatch(
            self.config.progress_pattern, partial(self.reporter.line, worker=worker.index), guide
        )
        stop = EitherSet(self._stop, watch.fired) if stops else self._stop
        request = trial_request(self.config, job, worker, self.log_dir, watch.see, stop)
        started = time.monotonic()
        try:
            result = worker.runner.run(request)
        except (TrialStopped, KeyboardInterrupt):
            if not watch.fired.is_set() or self._stop.is_set():  # stopped by you, not for its loss
                self._stopped(worker, job, note)
                return None
            result = watch.result(time.monotonic() - started, request.log_path)
        if watch.fired.is_set() and result.status is not Status.SUCCESS:  # it exited on its own loss
            result = watch.result(result.wall_seconds, request.log_path)
        record_result(note, result, self.config.metric, self.root, watch.summary(), watch.points())
        return note

    # ----- judging ---------------------------------------------------------------------------------

    def _stopped(self, worker: Worker, job: Job, note: TrialNote) -> None:
        """The run stopped while `job` trained: see Decider.record_stopped."""
        with self._state:
            partly_measured = job.trial.commit in self.measurements.trials
            self._pending.pop(job.trial.commit, None)
            self._hand_in_flight.discard(job.trial.commit)
            line, best = self.decider.record_stopped(worker.store, job, note, partly_measured)
        self.reporter.trial_finished(line, *best)

    def _decide(self, worker: Worker, job: Job, measured: TrialNote) -> None:
        """Record one measurement; once the trial has all it needs, judge and record it against the
        run's best now (one decision at a time)."""
        with self._state:
            plan = TrialPlan(self.decider, worker.store, job)
            note = self.measurements.record(worker.store, job, measured, plan)
            if note is None:
                self._state.notify_all()  # its repeats are queued: a waiting worker may take one
                return
            worker.store.curves.save(job.trial, take_curves(note))
            self.decider.decide(worker.store, job, note)
            self._pending.pop(job.trial.commit, None)
            self._hand_in_flight.discard(job.trial.commit)
            self._done += 1
            self._state.notify_all()
        self._after_trial()
        with self._state:
            self.decider.check_failures(job, note)


def recent_walls(history: History) -> list[float]:
    """The wall time of one measurement at the experiment's budget of each of the latest
    RECENT_SUCCESSES successes, oldest first (a note's wall time covers all its measurements)."""
    walls: list[float] = []
    for t in reversed(history.trials):  # the latest successes first, read from history's end back
        if len(walls) == RECENT_SUCCESSES:
            break
        if t.note and t.note.status is Status.SUCCESS and t.note.wall_seconds:
            runs = len(t.note.measurements) + len(number_list(t.note.other, PAIRED_MEASUREMENTS))
            walls.append(t.note.wall_seconds / max(1, runs) / t.note.budget_scale)
    walls.reverse()
    return walls


def ran_by(store: TrialStore) -> str:
    """Who runs these trials, for a repository shared by a team: `name@host`."""
    return f"{store.git.signature().name}@{socket.gethostname()}"


def _in_flight(store: TrialStore, job: Job) -> tuple[PendingTrial, str]:
    """How a trial in flight is shown to proposals: its name, description, values and tree."""
    started = PendingTrial(job.trial.name, job.proposal.description, job.proposal.params)
    return started, store.git.tree_of(job.trial.commit) or ""


def _wait_all(events: list[threading.Event]) -> None:
    """Wait in short sleeps, not Thread.join: a Ctrl-C inside join can make Python 3.11 believe a
    running thread ended, and exit while it still trains."""
    while not all(event.is_set() for event in events):
        time.sleep(0.1)


def trial_request(
    config: ExperimentConfig,
    job: Job,
    worker: Worker,
    logs: Path,
    on_line: Callable[[str], None],
    stop: StopSignal,
) -> TrialRequest:
    """What the runner gets for one measurement of `job`: its work tree, command, limits (scaled
    with the job's budget), log file, and the environment train.py reads: the seed, the time
    budget and the experiment's data."""
    trial = job.trial
    kind = "" if job.beside is None else ".beside"
    log = f"{trial.number}{kind}.log" if not job.seed else f"{trial.number}{kind}.seed{job.seed}.log"
    environment = {
        SEED_VARIABLE: str(job.run_seed),
        BUDGET_VARIABLE: f"{config.time_budget_seconds * job.budget_scale:g}",
        **(config.data.environment() if config.data is not None else {}),
    }
    wall = config.max_trial_wall_time * job.budget_scale
    return TrialRequest(
        worker.worktree.path, config.command, config.metric, wall, logs / log, on_line, stop, environment
    )


def record_result(
    note: TrialNote, result: RunResult, metric: str, root: Path, curve: str = "", points: str = ""
) -> None:
    """Copy what the runner measured into the trial's note (its summary without the fields the
    note has lines of its own for, and its loss `curve` in one line: see curves.curve_summary)."""
    note.status, note.reason, note.log_tail = result.status, result.reason, result.log_tail
    note.value, note.peak_vram_mb = result.value, result.peak_vram_mb
    note.train_seconds, note.wall_seconds = result.train_seconds, round(result.wall_seconds, 3)
    known = {metric, "peak_vram_mb", "training_seconds"}
    note.summary = {k: v for k, v in result.summary.items() if k not in known}
    if result.log_path is not None:
        note.other["log"] = str(result.log_path.relative_to(root))
    if curve:
        note.other[CURVE_KEY] = curve
    if points:
        note.other[POINTS_KEY] = points
