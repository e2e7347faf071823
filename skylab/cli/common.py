"""What every command shares: the app and its order in `--help`, the consoles, the options several
commands take, opening the store, and `main`, which turns every error into one line and an exit status."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from typer._click import Context
from typer.core import TyperGroup

from skylab.errors import SkylabError
from skylab.runner.registry import RUNNERS
from skylab.terminal import escape_controls

if TYPE_CHECKING:
    from skylab.experiment.config import ExperimentConfig
    from skylab.store.gitstore import TrialStore

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


def choice(what: str, names: list[str]) -> Callable[[str], str]:
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
        parser=choice("runner", list(RUNNERS)),
        help="Where trials train: " + "; ".join(f"{k.name}: {k.help}" for k in RUNNERS.values()) + ".",
    ),
]
PREPARERS = [kind.name for kind in RUNNERS.values() if kind.prepares]


RemoteConfigOption = Annotated[
    Path | None, typer.Option("--remote-config", help="remote.toml to use (default: the experiment's).")
]


def open_store(repo: Path) -> TrialStore:
    from skylab.store.gitstore import TrialStore  # imports stay inside commands so `--help` is instant

    return TrialStore.open(repo)


def experiment_for(store: TrialStore) -> ExperimentConfig:
    from skylab.experiment.config import load_config

    return load_config(store.git.root)


def directory_given(argument: Path | None, option: Path | None) -> Path | None:
    """DIR given as an argument or as -C DIR (both: they must agree)."""
    if argument is not None and option is not None and argument.resolve() != option.resolve():
        raise SkylabError(f"give the directory once: {argument} or -C {option}")
    return argument if argument is not None else option


def template_help() -> str:
    from skylab.experiment.resources import template_names

    return f"Template to copy into an empty directory: {', '.join(template_names())} (default gpt-pretrain)."


DirectoryOption = Annotated[Path | None, typer.Option("-C", "--repo", help="The same as DIR.")]


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
        fail(exc.format_message() + where, 2)
    except ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except SkylabError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:  # a path the user gave that cannot be written or read: say which, in one line
        fail((f"{exc.filename}: " if exc.filename else "") + (exc.strerror or str(exc)), 2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int) -> NoReturn:
    """`error: MESSAGE` as one line of plain text on stderr (control characters escaped, no
    markup), then exit with `code`."""
    err_console.print(f"[red]error:[/] {escape(escape_controls(message))}", soft_wrap=True)
    sys.exit(code)
