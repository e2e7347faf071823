"""`skylab init`: turn a directory into an experiment repository, idempotently.

Each step checks before it acts, so running init twice changes nothing, and an existing repository,
hook or git configuration is extended, never clobbered.
"""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

from skylab.errors import SkylabError
from skylab.experiment.adopt import experiment_toml, is_autoresearch_checkout
from skylab.experiment.config import CONFIG_NAME, load_config
from skylab.experiment.layout import WORK_DIR
from skylab.experiment.resources import resource_dir, template_dir
from skylab.store.setup import (
    commit_baseline,
    commit_one_file,
    hooks_dir,
    ignore_locally,
    open_or_create,
    show_notes_in_log,
)

DEFAULT_TEMPLATE = "gpt-pretrain"
HOOK_MARKER = "# skylab-hook: post-commit"
CHAINED_HOOK = "post-commit.pre-skylab"


def init_experiment(directory: Path, template: str | None = None) -> list[str]:
    """Make `directory` a Skylab experiment; return what was done, one line per action."""
    if directory.exists() and not directory.is_dir():
        raise SkylabError(f"{directory} is a file, not a directory: give a directory to make an experiment")
    if template is not None:
        template_dir(template)  # an unknown name is refused before anything is created
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    adopted = template is None and is_autoresearch_checkout(directory)
    if adopted:  # an autoresearch checkout: it gets an experiment.toml, and nothing else changes
        text = experiment_toml(directory)
        (directory / CONFIG_NAME).write_text(text, encoding="utf-8")
        actions = [f"wrote {CONFIG_NAME} for this autoresearch checkout:\n\n{text}"]
    else:  # check and copy before touching git, so bad input leaves no half-made repository
        actions = _copy_template(directory, template)
    config = load_config(directory / CONFIG_NAME)
    store, created = open_or_create(directory)
    if created:
        actions.insert(0, f"created a git repository in {directory}")
    if ignore_locally(store, f"/{WORK_DIR}/"):
        actions.append(f"told git to ignore /{WORK_DIR}/ (run logs)")
    actions += install_hook(hooks_dir(store))
    if show_notes_in_log(store):
        actions.append("set notes.displayRef so `git log` shows Skylab's notes")
    if store.baseline() is None and adopted and store.checkout.head_commit() is not None:
        head = commit_one_file(store, CONFIG_NAME, f"skylab: adopt {config.name}\n")
        actions += [f"committed only {CONFIG_NAME}, as the baseline", f"baseline is {head[:10]}"]
    elif store.baseline() is None:
        head, committed = commit_baseline(store, f"skylab: baseline of {config.name}\n")
        actions += ["committed the experiment as the baseline"] if committed else []
        actions.append(f"baseline is {head[:10]}")
    return actions


def _copy_template(directory: Path, template: str | None) -> list[str]:
    contents = [p for p in directory.iterdir() if p.name != ".git"]
    if (directory / CONFIG_NAME).is_file():
        return []
    if contents:
        names = ", ".join(sorted(p.name for p in contents)[:5])
        raise SkylabError(
            f"{directory} has files ({names}) but no {CONFIG_NAME}: "
            "add one, or run `skylab init` in an empty directory to copy a template"
        )
    name = template or DEFAULT_TEMPLATE
    source = template_dir(name)
    shutil.copytree(
        source, directory, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return [f"copied the '{name}' template into {directory}"]


def install_hook(target_dir: Path) -> list[str]:
    """Install `target_dir`/post-commit; a foreign hook already there is kept and run first."""
    target_dir.mkdir(parents=True, exist_ok=True)
    hook = target_dir / "post-commit"
    ours = (resource_dir("hooks") / "post-commit").read_text().replace("@SKYLAB@", _skylab_executable())
    actions: list[str] = []
    if hook.exists() or hook.is_symlink():
        current = hook.read_text(errors="replace") if hook.exists() else ""
        if current == ours:
            return []
        if HOOK_MARKER not in current:
            chained = target_dir / CHAINED_HOOK
            if chained.exists():
                raise SkylabError(f"both {hook} and {chained} exist: merge them by hand, then run init again")
            hook.rename(chained)
            actions.append(
                f"kept the existing post-commit hook as {chained.name}; Skylab's hook runs it first"
            )
    hook.write_text(ours)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    actions.append(f"installed the post-commit hook in {target_dir}")
    return actions


def _skylab_executable() -> str:
    beside_python = Path(sys.executable).parent / "skylab"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("skylab") or "skylab"
