"""The `skylab` command line. Each command is a thin layer over a library module."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from typer._click import Context
from typer.core import TyperGroup

from skylab.errors import SkylabError
from skylab.runner.registry import RUNNERS
from skylab.strategy import STRATEGIES
from skylab.terminal import escape_controls

if TYPE_CHECKING:
    from skylab.experiment.config import ExperimentConfig
    from skylab.runner import Runner
    from skylab.store.gitstore import TrialStore
    from skylab.store.history import Trial

# The order `skylab --help` lists commands in: the order a researcher meets them.
WORKFLOW = (
    "init", "import", "prepare", "constants", "run", "history", "show", "diff", "report", "apply", "branch",
    "ablate", "confirm", "push", "pull", "gc", "demo",
)  # fmt: skip


class WorkflowOrder(TyperGroup):
    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: WORKFLOW.index(name) if name in WORKFLOW else len(WORKFLOW))


app = typer.Typer(
    cls=WorkflowOrder,
    help="Autonomous pretraining research, with every trial a git commit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
hook_app = typer.Typer(help="Entry points for the git hooks `skylab init` installs.", add_completion=False)
app.add_typer(hook_app, name="hook", hidden=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"skylab {version('skylab')}", markup=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show Skylab's version and exit."),
    ] = False,
) -> None:
    """Autonomous pretraining research, with every trial a git commit."""


class _ClosableStdout:
    """stdout that goes quiet, instead of raising, once its reader has gone (`skylab run | head`):
    a run keeps training and recording without a display."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.closed_by_reader = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())  # so the interpreter's own flush at exit is quiet too
        os.close(devnull)

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


# Piped output is not cut to 80 columns: a history table should survive `| less` and logs whole.
console = Console(
    file=_ClosableStdout(sys.stdout),  # type: ignore[arg-type]
    highlight=False,
    width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200,
)
err_console = Console(stderr=True, highlight=False)

RepoOption = Annotated[
    Path, typer.Option("-C", "--repo", help="The experiment repository (default: the current directory).")
]
TagOption = Annotated[str | None, typer.Option("--tag", "-t", help="Only this run tag.")]
TRIAL_HELP = "best, TAG/N, N (with --tag), or a commit-ish such as skylab/best."


def _choice(what: str, names: list[str]) -> Callable[[str], str]:
    """A parser for an option that names one of `names` (a registry's): an unknown name is a
    usage error, one line and exit status 2."""

    def parse(value: str) -> str:
        if value not in names:
            raise typer.BadParameter(f"unknown {what} {value!r} (choose from {', '.join(names)})")
        return value

    return parse


RUNNER_CHOICES = "|".join(RUNNERS)
RunnerOption = Annotated[
    str,
    typer.Option(
        "--runner",
        metavar=f"[{RUNNER_CHOICES}]",
        parser=_choice("runner", list(RUNNERS)),
        help="Where trials train: " + "; ".join(f"{k.name}: {k.help}" for k in RUNNERS.values()) + ".",
    ),
]
PREPARERS = [kind.name for kind in RUNNERS.values() if kind.prepares]


RemoteConfigOption = Annotated[
    Path | None, typer.Option("--remote-config", help="remote.toml to use (default: the experiment's).")
]


def _open(repo: Path) -> TrialStore:
    from skylab.store.gitstore import TrialStore  # imports stay inside commands so `--help` is instant

    return TrialStore.open(repo)


def _experiment_for(store: TrialStore) -> ExperimentConfig:
    from skylab.experiment.config import load_config

    return load_config(store.git.root)


def _directory(argument: Path | None, option: Path | None) -> Path | None:
    """DIR given as an argument or as -C DIR (both: they must agree)."""
    if argument is not None and option is not None and argument.resolve() != option.resolve():
        raise SkylabError(f"give the directory once: {argument} or -C {option}")
    return argument if argument is not None else option


def _template_help() -> str:
    from skylab.experiment.resources import template_names

    return f"Template to copy into an empty directory: {', '.join(template_names())} (default gpt-pretrain)."


DirectoryOption = Annotated[Path | None, typer.Option("-C", "--repo", help="The same as DIR.")]


@app.command()
def init(
    directory: Annotated[
        Path | None, typer.Argument(help="Experiment directory (created if missing; default: here).")
    ] = None,
    template: Annotated[str | None, typer.Option("--template", help=_template_help())] = None,
    repo: DirectoryOption = None,
) -> None:
    """Make DIR a Skylab experiment: git repo, template, post-commit hook, baseline commit."""
    from skylab.experiment.scaffold import init_experiment

    directory = _directory(directory, repo) or Path(".")
    actions = init_experiment(directory, template)
    for action in actions:
        console.print(f"• {action}", markup=False)
    if not actions:
        console.print(f"{directory.resolve()} is already a Skylab experiment: nothing to do", markup=False)


@app.command("import")
def import_results(
    results: Annotated[Path, typer.Argument(help="autoresearch's results.tsv.")],
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag", "-t", help="Run tag (default: the branch's name after autoresearch/, else imported)."
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="The metric's column: experiment.toml's metric, the default."),
    ] = None,
    repo: RepoOption = Path("."),
) -> None:
    """Bring an autoresearch run in: every row of its results.tsv becomes a trial."""
    from skylab.autoresearch.importer import default_import_tag
    from skylab.autoresearch.importer import import_results as run_import

    store = _open(repo)
    chosen = tag if tag is not None else default_import_tag(store.checkout.checked_out_branch())
    outcome = run_import(store, _experiment_for(store), results, chosen, metric)
    for warning in outcome.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    if outcome.already:
        console.print(f"{results} is already imported as run {outcome.tag}: nothing to do", markup=False)
        return
    missing = f"; {outcome.missing} commits not found (placeholders)" if outcome.missing else ""
    stays = f"; the best stays {outcome.best_stays}, which no row beats" if outcome.best_stays else ""
    best = f"; best {outcome.best}" if outcome.best else stays
    resumed = f" ({outcome.resumed} of them there from before)" if outcome.resumed else ""
    console.print(
        f"imported {outcome.trials} rows into run {outcome.tag}{resumed}{missing}{best}: "
        f"`skylab history --tag {outcome.tag}`, or continue with `skylab run --tag {outcome.tag}`",
        markup=False,
    )


@app.command()
def history(
    repo: RepoOption = Path("."),
    tag: TagOption = None,
    best: Annotated[bool, typer.Option("--best", help="Only the kept chain that leads to the best.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write autoresearch's results.tsv here.")
    ] = None,
) -> None:
    """The trials, rebuilt from refs and notes."""
    _print_history(_open(repo), tag, best, as_json, export)


def _print_history(
    store: TrialStore, tag: str | None, best: bool = False, as_json: bool = False, export: Path | None = None
) -> None:
    from skylab.report.history_view import history_table
    from skylab.report.listing import history_listing

    listing = history_listing(store, tag, best, as_json, export)
    for warning in listing.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    if listing.exported:
        err_console.print(listing.exported, markup=False)
    if listing.json is not None:
        sys.stdout.flush()
        sys.stdout.buffer.write(listing.json + b"\n")
        return
    if export is not None:
        return
    if not listing.rows:
        console.print(listing.empty, markup=False)
        return
    console.print(history_table(listing.rows, listing.title))
    rows = listing.rows
    kept = sum(r.decision == "keep" for r in rows)
    tokens = sum(r.llm_tokens for r in rows)
    spent = f" LLM tokens used: {tokens:,}." if tokens else ""
    console.print(f"{len(rows)} trials, {kept} kept.{spent} ★ marks the best.")


@app.command()
def show(
    trial: Annotated[str, typer.Argument(help=TRIAL_HELP)],
    repo: RepoOption = Path("."),
    tag: TagOption = None,
) -> None:
    """A trial's note and its diff against its parent."""
    store = _open(repo)
    found = store.resolve_trial(trial, tag)
    console.print(f"[bold]trial {escape(found.name)}[/]  commit {found.commit}")
    if found.note is None:
        console.print("(no note: the trial was interrupted before its result was recorded)")
    else:
        console.print(found.note.format().rstrip(), markup=False)
    console.print()
    _print_diff(store.diffs.against_parent(found))


def _print_diff(diff: str) -> None:
    if console.is_terminal:
        console.print(Syntax(diff or "(no changes)", "diff", theme="ansi_dark"))
    else:
        sys.stdout.write(diff or "(no changes)\n")


@app.command()
def apply(
    trial: Annotated[str, typer.Argument(help=TRIAL_HELP)] = "best",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite uncommitted edits of those files.")
    ] = False,
    repo: RepoOption = Path("."),
    tag: TagOption = None,
) -> None:
    """Write a trial's editable files into your checkout as uncommitted changes (default: the best)."""
    from skylab.results import apply_trial

    store = _open(repo)
    found = store.resolve_trial(trial, tag)
    changed = apply_trial(store, _experiment_for(store), found, force)
    for line in changed:
        console.print(f"• {line}", markup=False)
    summary = f"applied trial {found.name} ({found.commit[:10]})"
    console.print(
        f"{summary}: review with `git diff`" if changed else f"{summary}: your files already match",
        markup=False,
    )


@app.command()
def branch(
    name: Annotated[str, typer.Argument(help="The new branch's name.")],
    trial: Annotated[str, typer.Argument(help=TRIAL_HELP)] = "best",
    repo: RepoOption = Path("."),
    tag: TagOption = None,
) -> None:
    """An ordinary branch at a trial's commit, to merge into your own line of work (default: the best)."""
    store = _open(repo)
    found = store.resolve_trial(trial, tag)
    store.create_branch(name, found.commit)
    console.print(
        f"branch {name} at trial {found.name} ({found.commit[:10]}): `git merge {name}`", markup=False
    )


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help=TRIAL_HELP)],
    b: Annotated[str, typer.Argument(help=TRIAL_HELP)],
    repo: RepoOption = Path("."),
    tag: TagOption = None,
) -> None:
    """Two trials side by side (metric, changed constants, status, VRAM, steps), then their diff."""
    from rich.table import Table

    from skylab.report.history_view import shown_as_text
    from skylab.results import compare

    store = _open(repo)
    rows, text = compare(
        store, _experiment_for(store), store.resolve_trial(a, tag), store.resolve_trial(b, tag)
    )
    table = Table(show_header=False, box=None, padding=(0, 2))
    for field_name, left, right in rows:
        table.add_row(shown_as_text(field_name), shown_as_text(left), shown_as_text(right))
    console.print(table)
    console.print()
    _print_diff(text)


RemoteArgument = Annotated[str | None, typer.Argument(help="Remote name or URL (default: origin).")]


@app.command()
def push(remote: RemoteArgument = None, repo: RepoOption = Path(".")) -> None:
    """Share trials, run branches and notes (merged with the remote's, never overwritten)."""
    _sync("push", remote, repo)


@app.command()
def pull(remote: RemoteArgument = None, repo: RepoOption = Path(".")) -> None:
    """Bring in teammates' trials; the best of both sides becomes the best."""
    _sync("pull", remote, repo)


def _sync(direction: str, remote: str | None, repo: Path) -> None:
    from functools import partial

    from skylab.loop.judge import replaces_best, rules_for
    from skylab.store import sync

    store = _open(repo)
    config = _experiment_for(store)
    operation = sync.push if direction == "push" else sync.pull
    prefers = partial(replaces_best, rules=rules_for(config))
    report = operation(store, remote or sync.default_remote(store), prefers)
    for line in report.lines():
        console.print(f"• {line}", markup=False)
    if report.rejected or report.trial_collisions or report.left_out or report.note_conflicts:
        raise typer.Exit(1)  # done, but something of the remote's was not taken: look at the lines above


@app.command()
def prepare(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", help="climbmix (downloads), demo, or text/parquet files (default: [data] source)."
        ),
    ] = None,
    shards: Annotated[
        int | None, typer.Option("--shards", min=1, help="climbmix training shards (default: [data] shards).")
    ] = None,
    experiment: RepoOption = Path("."),
    runner: Annotated[
        str,
        typer.Option(
            "--runner",
            metavar=f"[{'|'.join(PREPARERS)}]",
            parser=_choice("runner for prepare", PREPARERS),
            help="Prepare here, or on the remote host.",
        ),
    ] = "local",
    remote_config: RemoteConfigOption = None,
) -> None:
    """Run the experiment's data preparation (download, tokenizer, tokenisation) once."""
    from skylab.runner.preparation import remote_preparer, run_prepare, run_remote_prepare

    sources = source or None
    if runner == "local":
        run_prepare(experiment, sources, shards, console)
        return
    remote = remote_preparer(experiment.resolve(), remote_config)
    code = run_remote_prepare(remote, experiment, sources, shards, console)
    if code != 0:
        raise typer.Exit(code)


@app.command()
def constants(
    assignments: Annotated[list[str] | None, typer.Argument(help="NAME=VALUE pairs to set.")] = None,
    file: Annotated[str | None, typer.Option("--file", help="Editable file (default: the sweep's).")] = None,
    experiment: RepoOption = Path("."),
) -> None:
    """List the module-level constants of an editable file, or set some (NAME=VALUE ...)."""
    from skylab.experiment.config import load_config
    from skylab.experiment.constant_edits import constants_file, list_constants, set_constants_in

    config = load_config(experiment)
    name = constants_file(config, file)
    if assignments:
        for key, value in set_constants_in(config, name, assignments).items():
            console.print(f"{name}: {key} = {value!r}", markup=False)
        return
    for key, value in list_constants(config, name).items():
        console.print(f"{key} = {value!r}", markup=False)


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
            parser=_choice("strategy", list(STRATEGIES)),
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

    store = _open(repo)
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

    store = _open(repo)
    config = _experiment_for(store)
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
    tag: TagOption = None,
    runner: RunnerOption = "local",
    gpus: GpusOption = None,
    workers: WorkersOption = None,
    remote_config: RemoteConfigOption = None,
    repo: RepoOption = Path("."),
) -> None:
    """Does the win hold when trained longer: the trial and its run's start, at K× the budget."""
    from skylab.results import confirm as run_confirmation

    store, config, found, runners = _study(repo, trial, tag, runner, gpus, workers, remote_config)
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


@app.command()
def demo(
    directory: Annotated[
        Path | None, typer.Argument(help="Where to build it (default: a new temp dir).")
    ] = None,
    repo: DirectoryOption = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials to run, the baseline included.")] = 5,
    time_budget: Annotated[
        float, typer.Option("--time-budget", min=1, help="Seconds of training per measurement.")
    ] = 30,
) -> None:
    """Everything end to end on CPU: demo corpus, a CPU-sized GPT experiment, a short sweep, the report."""
    from skylab.demo import DEMO_TAG, run_demo

    store, report_path = run_demo(_directory(directory, repo), trials, console, time_budget)
    _print_history(store, DEMO_TAG)
    console.print(f"report: {report_path}", markup=False, soft_wrap=True)


@app.command()
def report(
    repo: RepoOption = Path("."),
    tag: TagOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the HTML.")] = None,
) -> None:
    """Write the self-contained HTML report of the trials (one file, no network needed to view it)."""
    from skylab.experiment.layout import report_path
    from skylab.report.html import generate

    store = _open(repo)
    config = _experiment_for(store)
    store.load().check_tag(tag)
    path = generate(
        store, config, output or report_path(store.git.root, tag), tag=tag, make_folder=output is None
    )
    console.print(f"report: {path.resolve()}", markup=False, soft_wrap=True)


@app.command()
def gc(
    repo: RepoOption = Path("."),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Say what would go; remove nothing.")
    ] = False,
) -> None:
    """Drop every derived file under .git/skylab (caches of history, diffs, JSON, report details and
    remote listings); each is rebuilt from the refs and notes when next needed. Trials are untouched."""
    from skylab.store.derived.catalog import drop_derived_files
    from skylab.terminal import byte_size

    store = _open(repo)
    dropped = drop_derived_files(store.git.skylab_dir, dry_run)
    verb = "would drop" if dry_run else "dropped"
    for file, size in dropped:
        console.print(f"{verb} {file.name} ({byte_size(size)}): {file.job}", markup=False, soft_wrap=True)
    total = sum(size for _file, size in dropped)
    console.print(
        f"{verb} {len(dropped)} derived file(s), {byte_size(total)}" if dropped else "nothing to drop",
        markup=False,
    )


@hook_app.command("post-commit")
def post_commit_hook(repo: RepoOption = Path(".")) -> None:
    """Called by the post-commit hook: queue a commit made on a Skylab run branch for training."""
    from skylab.loop.handcommits import on_post_commit

    message = on_post_commit(_open(repo))
    if message:
        sys.stderr.write(message + "\n")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every user error, the command line's own included, becomes one line on
    stderr and exit status 2; never a traceback for input."""
    # typer vendors click; its usage errors are the one thing typer does not export (pinned version).
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    try:
        code = app(args=argv, standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `skylab` alone: the help, as git does
        console.print(exc.format_message(), markup=False, highlight=False)
        sys.exit(2)
    except UsageError as exc:  # an unknown option, a missing or malformed value
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _fail(exc.format_message() + where, 2)
    except ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except SkylabError as exc:
        _fail(str(exc), exc.exit_code)
    except OSError as exc:  # a path the user gave that cannot be written or read: say which, in one line
        _fail((f"{exc.filename}: " if exc.filename else "") + (exc.strerror or str(exc)), 2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    """`error: MESSAGE` as one line of plain text on stderr (control characters escaped, no
    markup), then exit with `code`."""
    err_console.print(f"[red]error:[/] {escape(escape_controls(message))}", soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
