"""Commands that train: run, ablate, confirm, and the post-commit hook that queues hand commits."""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from skylab.cli.common import (
    TRIAL_HELP,
    RemoteConfigOption,
    RepoOption,
    RunnerOption,
    TagOption,
    app,
    choice,
    console,
    experiment_for,
    hook_app,
    open_store,
)
from skylab.errors import SkylabError
from skylab.strategy import STRATEGIES

if TYPE_CHECKING:
    from skylab.experiment.config import ExperimentConfig
    from skylab.runner import Runner
    from skylab.store.gitstore import TrialStore
    from skylab.store.history import Trial


def _runners(
    runner: str, config: ExperimentConfig, gpus: str | None, workers: int | None, remote: Path | None
) -> list[Runner]:
    from skylab.runner.gpus import parse_gpus
    from skylab.runner.registry import WorkerSettings, make_runners

    pinned = tuple(parse_gpus(gpus)) if gpus is not None else ()
    return make_runners(runner, WorkerSettings(config, workers, pinned, remote))


GpusOption = Annotated[
    str | None,
    typer.Option("--gpus", help="The GPUs to use, e.g. 2 or 0,1,2,3: one worker per GPU, pinned to it."),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", "-j", min=1, max=1024, help="Trials at once (default: one per GPU or slot, else 1)."
    ),
]
StudyTrial = Annotated[
    str | None, typer.Argument(help=TRIAL_HELP + " Default: the best (of the run, with --tag).")
]


class AgentName(str, Enum):
    api = "api"
    claude_code = "claude-code"


@app.command()
def run(
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            metavar=f"[{'|'.join(STRATEGIES)}]",
            parser=choice("strategy", list(STRATEGIES)),
            help="What proposes changes: "
            + "; ".join(f"{k.name}: {k.help}" for k in STRATEGIES.values())
            + ".",
        ),
    ] = "sweep",
    budget: Annotated[str | None, typer.Option("--budget", help="Wall-clock budget: 30m, 8h, 1d.")] = None,
    max_trials: Annotated[
        int | None,
        typer.Option(
            "--max-trials",
            min=1,
            help="Stop after N trials this run; the measurement of a new run's starting point counts as one, "
            "the repeats of a trial do not.",
        ),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", "-t", help="Run tag (default: today, e.g. nov25).")
    ] = None,
    runner: RunnerOption = "local",
    agent: Annotated[
        AgentName | None, typer.Option("--agent", help="llm backend (default: [llm] agent).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="llm model (default: [llm] model).")] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="llm tokens per response.")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", min=0.0, max=1.0, help="llm sampling temperature.")
    ] = None,
    gpus: GpusOption = None,
    workers: WorkersOption = None,
    queued_only: Annotated[bool, typer.Option("--queued-only", hidden=True)] = False,
    remote_config: RemoteConfigOption = None,
    repo: RepoOption = Path("."),
) -> None:
    """Search unattended: propose, commit, train for the fixed budget, keep or revert."""
    from skylab.experiment.config import load_config
    from skylab.experiment.durations import parse_duration
    from skylab.session import (
        SessionPlan,
        default_tag,
        refuse_uncommitted_edits,
        run_session,
        with_llm_overrides,
    )
    from skylab.store.refs import check_tag
    from skylab.strategy import make_strategy

    store = open_store(repo)
    config = with_llm_overrides(
        load_config(store.git.root),
        agent=agent.value if agent else None,
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    tag = check_tag(default_tag(store) if tag is None else tag)
    try:
        seconds = parse_duration(budget) if budget is not None else None
    except ValueError as exc:
        raise SkylabError(f"--budget: {exc}") from None
    refuse_uncommitted_edits(store, config.editable_files)
    runners = _runners(runner, config, gpus, workers, remote_config)
    chosen = None if queued_only else make_strategy(strategy, config)
    plan = SessionPlan(tag, strategy, seconds, max_trials, queued_only)
    outcome = run_session(store, config, chosen, runners, plan, console)
    if outcome.stopped_because == "interrupted":
        raise typer.Exit(130)


def _study(
    repo: Path,
    trial: str | None,
    tag: str | None,
    runner: str,
    gpus: str | None,
    workers: int | None,
    remote_config: Path | None,
) -> tuple[TrialStore, ExperimentConfig, Trial, list[Runner]]:
    """What a study command works with: the store, the experiment, the trial and the runners."""
    from skylab.results import study_trial

    store = open_store(repo)
    config = experiment_for(store)
    found = study_trial(store, trial, tag)
    return store, config, found, _runners(runner, config, gpus, workers, remote_config)


@app.command()
def ablate(
    trial: StudyTrial = None,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Then train and judge the trial without the changes that did not help."),
    ] = False,
    tag: TagOption = None,
    runner: RunnerOption = "local",
    gpus: GpusOption = None,
    workers: WorkersOption = None,
    remote_config: RemoteConfigOption = None,
    repo: RepoOption = Path("."),
) -> None:
    """Which kept changes mattered: train the trial without each one, in turn, and tabulate."""
    from rich.table import Table

    from skylab.report.history_view import shown_as_text
    from skylab.results import ablate as run_ablation

    store, config, found, runners = _study(repo, trial, tag, runner, gpus, workers, remote_config)
    rows, outcome = run_ablation(store, config, runners, found, console, prune)
    if outcome is not None and outcome.stopped_because == "interrupted":
        raise typer.Exit(130)
    if not rows:
        return
    table = Table(title=f"what each change contributed to {found.name} ({config.metric}, ± se)")
    for column in ("change", "without it", "contribution", "verdict", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.change,
            row.ablation,
            row.gap.text() if row.gap else "—",
            row.verdict(),
            shown_as_text(row.description),
        )
    console.print(table)
    flagged = [row.change for row in rows if row.flagged]
    if flagged and not prune:
        console.print(
            f"{', '.join(flagged)}: no worse without {'it' if len(flagged) == 1 else 'them'} beyond noise; "
            "`skylab ablate --prune` trains and judges the trial without them",
            markup=False,
        )


MAX_SCALE = 1000.0  # times the time budget: 300 s becomes 3.5 days


def _check_scale(value: float) -> float:
    """--scale: a finite number of times the time budget, from 0.01 to MAX_SCALE."""
    if not math.isfinite(value) or not 0.01 <= value <= MAX_SCALE:
        raise typer.BadParameter(
            f"must be a number from 0.01 to {MAX_SCALE:g} (times the time budget), not {value}"
        )
    return value


@app.command()
def confirm(
    trial: StudyTrial = None,
    scale: Annotated[
        float,
        typer.Option("--scale", "-k", callback=_check_scale, help="Times the time budget to train for."),
    ] = 4.0,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh", help="Measure the trial again on seeds never used to select it, instead of longer."
        ),
    ] = False,
    tag: TagOption = None,
    runner: RunnerOption = "local",
    gpus: GpusOption = None,
    workers: WorkersOption = None,
    remote_config: RemoteConfigOption = None,
    repo: RepoOption = Path("."),
) -> None:
    """Does the win hold when trained longer: the trial and its run's start, at K× the budget
    (with --fresh: is its mean what it is worth, measured on seeds never used to select it)."""
    from skylab.results import confirm as run_confirmation
    from skylab.results import confirm_fresh

    store, config, found, runners = _study(repo, trial, tag, runner, gpus, workers, remote_config)
    if fresh:
        estimate, fresh_outcome = confirm_fresh(store, config, runners, found, console)
        if fresh_outcome.stopped_because == "interrupted":
            raise typer.Exit(130)
        if estimate is not None:
            counts = f"(n {estimate.selected_n}, then {estimate.fresh_n} on fresh seeds)"
            console.print(f"{found.name} ({config.metric}): {estimate.text()} {counts}", markup=False)
        return
    checks, outcome = run_confirmation(store, config, runners, found, scale, console)
    if outcome.stopped_because == "interrupted":
        raise typer.Exit(130)
    if not checks:
        return
    first = checks[0]
    console.print(
        f"{first.trial} against its run's starting point {first.start} ({config.metric} improvement ± se):",
        markup=False,
    )
    n = first.at_1.n
    console.print(f"  at 1×: {first.at_1.text()} (n {n[0]} vs {n[1]})", markup=False)
    for check in checks:
        longer = check.at_k
        numbers = f"{longer.text()} (n {longer.n[0]} vs {longer.n[1]})" if longer else "—"
        console.print(f"  at {check.scale}×: {numbers}: {check.verdict()}", markup=False)


@hook_app.command("post-commit")
def post_commit_hook(repo: RepoOption = Path(".")) -> None:
    """Called by the post-commit hook: queue a commit made on a Skylab run branch for training."""
    from skylab.loop.handcommits import on_post_commit

    message = on_post_commit(open_store(repo))
    if message:
        sys.stderr.write(message + "\n")
