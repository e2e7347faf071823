"""One run, assembled: the reporter, the live report, the orchestrator, the plan and the final
report. `skylab run` and `skylab demo` both start runs through `run_session`, so the two never drift.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.experiment.durations import format_duration
from skylab.experiment.layout import log_dir, report_path
from skylab.loop import Orchestrator, RunOutcome
from skylab.loop.jobs import Job
from skylab.loop.judge import describe, run_sigma
from skylab.loop.progress import Paced, Reporter, RunState, make_reporter
from skylab.runner import Runner
from skylab.store.gitstore import TrialStore
from skylab.store.refs import run_branch
from skylab.strategy import Strategy
from skylab.studies.fresh import fresh_estimate, fresh_job, needs_fresh
from skylab.terminal import plural


@dataclass(frozen=True)
class SessionPlan:
    """What a run is asked to do."""

    tag: str
    strategy_name: str
    budget: float | None = None
    max_trials: int | None = None
    queued_only: bool = False
    # A study: commits its trials (see Orchestrator), which the run then trains, and nothing else.
    prepare: Callable[[Callable[[str], None]], list[Job]] | None = None


def with_llm_overrides(config: ExperimentConfig, **overrides: Any) -> ExperimentConfig:
    """The config with the command line's LLM settings (agent, model, ...) over experiment.toml's;
    None leaves a setting as it is."""
    chosen = {key: value for key, value in overrides.items() if value is not None}
    if not chosen:
        return config
    return dataclasses.replace(config, llm=dataclasses.replace(config.llm, **chosen))


def refuse_uncommitted_edits(store: TrialStore, editable: tuple[str, ...]) -> None:
    """A run starts from the best trial, never from the user's branch: edits of the editable files
    in the checkout would be silently left out, so say so before anything starts."""
    changed = store.checkout.dirty_paths()
    dirty = [path for path in editable if path in changed]
    if dirty:
        raise SkylabError(
            f"{', '.join(dirty)} {'has' if len(dirty) == 1 else 'have'} uncommitted changes, which a run "
            "would leave out: it starts from the best trial (else the baseline), never from your branch. "
            "Stash them, or commit them on a run branch (`git switch skylab/<tag>`), where Skylab trains "
            "each commit as a hand-made trial"
        )


def plan_line(
    store: TrialStore, plan: SessionPlan, expected: float, workers: int, decisions: str = "", data: str = ""
) -> str:
    """The one line a run prints before its first trial: where it starts, how long, how many."""
    if plan.prepare is not None:
        parallel = f" · {workers} workers" if workers > 1 else ""
        return (
            f"skylab {plan.strategy_name} {plan.tag}{parallel} · ~{format_duration(expected)} per "
            f"measurement · logs in {log_dir(Path(), plan.tag)} · Ctrl-C stops after recording"
        )
    existing = store.git.ref_target(run_branch(plan.tag))
    start = existing or store.start_point()
    where = "resuming" if existing else "new run"
    seconds = plan.budget
    if seconds is not None:
        limit = f"budget {format_duration(seconds)} (~{plural(int(seconds // expected) * workers, 'trial')})"
    elif plan.max_trials is None:
        limit = "no budget or trial limit: runs until Ctrl-C"
    else:
        limit = "no time limit"
    trials = f", at most {plural(plan.max_trials, 'trial')}" if plan.max_trials else ""
    parallel = f" · {workers} workers" if workers > 1 else ""
    return (
        f"skylab run {plan.tag} ({where} from {start[:10]}){parallel} · strategy {plan.strategy_name} · "
        f"{limit}{trials} · ~{format_duration(expected)} per trial · "
        + (f"data {data} · " if data else "")
        + (f"decisions: {decisions} · " if decisions else "")
        + f"logs in {log_dir(Path(), plan.tag)} · Ctrl-C stops after recording"
    )


def run_session(
    store: TrialStore,
    config: ExperimentConfig,
    strategy: Strategy | None,
    runners: list[Runner],
    plan: SessionPlan,
    console: Console,
) -> RunOutcome:
    """Run the loop with a progress display and a live report, then write the final report."""
    from skylab.autoresearch.importer import incomplete_import_line, unfinished_imports
    from skylab.report.html import generate

    for unfinished in unfinished_imports(store):  # trials on top of it would make it unfinishable
        if unfinished.tag == plan.tag:
            raise SkylabError(incomplete_import_line(store.load(), unfinished))
    root = store.git.root
    report = report_path(root, plan.tag)
    state = RunState(plan.tag, plan.strategy_name, config.metric, plan.budget, plan.max_trials)

    live_report = Paced(lambda: generate(store, config, report, tag=plan.tag, live=True))

    reporter: Reporter
    with make_reporter(console, state) as reporter:
        orchestrator = Orchestrator(
            store,
            config,
            strategy,
            runners,
            plan.tag,
            reporter,
            budget=plan.budget,
            max_trials=plan.max_trials,
            queued_only=plan.queued_only,
            after_trial=live_report,
            prepare=plan.prepare,
        )
        sigma = run_sigma(store.load(), plan.tag, store.git.ref_target(run_branch(plan.tag)))
        fresh = config.decision.fresh_samples if plan.prepare is None else 0
        decisions = describe(orchestrator.decider.rules, sigma, fresh)
        data = config.data.describe() if config.data is not None else ""
        expected = orchestrator.expected_trial_seconds()
        reporter.say(plan_line(store, plan, expected, len(runners), decisions, data))
        reporter.say(f"live report: {report}")
        outcome = orchestrator.run()
        if plan.prepare is None and outcome.stopped_because != "interrupted":
            measure_fresh(store, config, runners, plan.tag, outcome, reporter, live_report)
        generate(store, config, report, tag=plan.tag, live=False)
        best = "none"
        if outcome.best is not None and outcome.best.value is not None:
            note = outcome.best.note
            estimate = fresh_estimate(store.load().trials, outcome.best)
            spread = f" ±{note.sem:.2g}" if note is not None and note.sem is not None else ""
            shown = f"{outcome.best.value:.6f}{spread}" if estimate is None else estimate.text(6)
            best = f"{shown} ({outcome.best.name})"
        took = format_duration(time.monotonic() - state.started)
        count = f"{plural(outcome.trials, 'trial')} this run in {took}"
        reporter.say(f"stopped: {outcome.stopped_because}. {count}; best {config.metric} {best}")
    return outcome


def measure_fresh(
    store: TrialStore,
    config: ExperimentConfig,
    runners: list[Runner],
    tag: str,
    outcome: RunOutcome,
    reporter: Reporter,
    after_trial: Callable[[], None],
) -> None:
    """After a run's last trial: its best, when selected, measured `[decision] fresh_samples` times
    on seeds no selection used (see studies.fresh), so the final line can say what it is worth."""
    samples = config.decision.fresh_samples
    if not needs_fresh(store.load(), outcome.best, samples) or outcome.best is None:
        return
    best = outcome.best
    reporter.say(
        f"measuring the best, {best.name}, on {plural(samples, 'fresh seed')}: its mean was selected"
    )

    def fresh(say: Callable[[str], None]) -> list[Job]:
        return [fresh_job(store, config, tag, best, samples)]

    Orchestrator(store, config, None, runners, tag, reporter, after_trial=after_trial, prepare=fresh).run()


def default_tag(store: TrialStore | None = None) -> str:
    """Today's date, the way the reference names its runs, who runs it, and which clone: nov25-alice-3f2a.

    Trial numbers count per tag, so teammates pushing to one remote never claim the same number:
    the clone's own id keeps two clones apart even when their `user.email` share the part before @.
    """
    day = time.strftime("%b%d").lower()
    who = ""
    if store is not None:
        email = store.git.signature().email or ""
        who = email.split("@")[0] if "@" in email else ""
    who = re.sub(r"[^A-Za-z0-9._-]+", "-", who or os.environ.get("USER", "")).strip("-._")[:40]
    parts = [day, *([who] if who else []), *([store.clone.clone_id()] if store is not None else [])]
    return "-".join(parts)
