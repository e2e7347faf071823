"""Commands that set an experiment up and tend it: init, import, prepare, constants, demo, gc."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from skylab.cli.common import (
    PREPARERS,
    DirectoryOption,
    RemoteConfigOption,
    RepoOption,
    app,
    choice,
    console,
    directory_given,
    err_console,
    experiment_for,
    open_store,
    template_help,
)
from skylab.cli.trials import print_history

if TYPE_CHECKING:
    pass


@app.command()
def init(
    directory: Annotated[
        Path | None, typer.Argument(help="Experiment directory (created if missing; default: here).")
    ] = None,
    template: Annotated[str | None, typer.Option("--template", help=template_help())] = None,
    repo: DirectoryOption = None,
) -> None:
    """Make DIR a Skylab experiment: git repo, template, post-commit hook, baseline commit."""
    from skylab.experiment.scaffold import init_experiment

    directory = directory_given(directory, repo) or Path(".")
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
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="WORD=keep|discard|crash: what a fork's status word means (repeatable; "
            "baseline and best are keeps, tentative a discard, by default).",
        ),
    ] = None,
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Leave out malformed rows (each is listed), not the file.")
    ] = False,
    repo: RepoOption = Path("."),
) -> None:
    """Bring an autoresearch run in: every row of its results.tsv becomes a trial."""
    from skylab.autoresearch.importer import default_import_tag
    from skylab.autoresearch.importer import import_results as run_import
    from skylab.autoresearch.results_tsv import status_map

    statuses = status_map(status or [])
    store = open_store(repo)
    chosen = tag if tag is not None else default_import_tag(store.checkout.checked_out_branch())
    outcome = run_import(store, experiment_for(store), results, chosen, metric, statuses, skip_bad_rows)
    for warning in outcome.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    if outcome.already:
        console.print(f"{results} is already imported as run {outcome.tag}: nothing to do", markup=False)
        return
    missing = f"; {outcome.missing} commits not found (placeholders)" if outcome.missing else ""
    stays = f"; the best stays {outcome.best_stays}, which no row beats" if outcome.best_stays else ""
    best = f"; best {outcome.best}" if outcome.best else stays
    resumed = f" ({outcome.resumed} of them there from before)" if outcome.resumed else ""
    counts = ", ".join(f"{n} {what}" for what, n in outcome.counts.items())
    console.print(
        f"imported {outcome.trials} rows into run {outcome.tag}{resumed}: {counts}{missing}{best}; "
        f"`skylab history --tag {outcome.tag}`, or continue with `skylab run --tag {outcome.tag}`",
        markup=False,
    )


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
            parser=choice("runner for prepare", PREPARERS),
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
        for key, text in set_constants_in(config, name, assignments).items():
            console.print(f"{name}: {key} = {text}", markup=False)
        return
    for key, value in list_constants(config, name).items():
        console.print(f"{key} = {value!r}", markup=False)


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

    store, report_path = run_demo(directory_given(directory, repo), trials, console, time_budget)
    print_history(store, DEMO_TAG)
    console.print(f"report: {report_path}", markup=False, soft_wrap=True)


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

    store = open_store(repo)
    dropped = drop_derived_files(store.git.skylab_dir, dry_run)
    verb = "would drop" if dry_run else "dropped"
    for file, size in dropped:
        console.print(f"{verb} {file.name} ({byte_size(size)}): {file.job}", markup=False, soft_wrap=True)
    total = sum(size for _file, size in dropped)
    console.print(
        f"{verb} {len(dropped)} derived file(s), {byte_size(total)}" if dropped else "nothing to drop",
        markup=False,
    )
