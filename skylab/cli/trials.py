"""Commands that read trials: history, show, diff, apply, branch, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.syntax import Syntax

from skylab.cli.common import (
    TRIAL_HELP,
    RepoOption,
    TagOption,
    app,
    console,
    err_console,
    experiment_for,
    open_store,
)

if TYPE_CHECKING:
    from skylab.store.gitstore import TrialStore


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
    print_history(open_store(repo), tag, best, as_json, export)


def print_history(
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
    fresh = listing.fresh
    if fresh is not None:
        console.print(f"best {fresh.trial}: {fresh.text()} ({fresh.measured_by})", markup=False)


@app.command()
def show(
    trial: Annotated[str, typer.Argument(help=TRIAL_HELP)],
    repo: RepoOption = Path("."),
    tag: TagOption = None,
) -> None:
    """A trial's note and its diff against its parent."""
    store = open_store(repo)
    found = store.resolve_trial(trial, tag)
    console.print(f"[bold]trial {escape(found.name)}[/]  commit {found.commit}")
    if found.note is None:
        console.print("(no note: the trial was interrupted before its result was recorded)")
    else:
        console.print(found.note.format().rstrip(), markup=False)
    console.print()
    print_diff(store.diffs.against_parent(found))


def print_diff(diff: str) -> None:
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

    store = open_store(repo)
    found = store.resolve_trial(trial, tag)
    changed = apply_trial(store, experiment_for(store), found, force)
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
    store = open_store(repo)
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

    store = open_store(repo)
    rows, text = compare(
        store, experiment_for(store), store.resolve_trial(a, tag), store.resolve_trial(b, tag)
    )
    table = Table(show_header=False, box=None, padding=(0, 2))
    for field_name, left, right in rows:
        table.add_row(shown_as_text(field_name), shown_as_text(left), shown_as_text(right))
    console.print(table)
    console.print()
    print_diff(text)


@app.command()
def report(
    repo: RepoOption = Path("."),
    tag: TagOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the HTML.")] = None,
) -> None:
    """Write the self-contained HTML report of the trials (one file, no network needed to view it)."""
    from skylab.experiment.layout import report_path
    from skylab.report.html import generate

    store = open_store(repo)
    config = experiment_for(store)
    store.load().require_tag(tag)
    path = generate(
        store, config, output or report_path(store.git.root, tag), tag=tag, make_folder=output is None
    )
    console.print(f"report: {path.resolve()}", markup=False, soft_wrap=True)
