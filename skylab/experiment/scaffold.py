"""`skylab init`: turn a directory into an experiment repository, idempotently.

Each step checks before it acts, so running init twice changes nothing, and an existing repository,
hook or git configuration is extended, never clobbered.
"""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pygit2

from skylab.errors import SkylabError
from skylab.experiment.config import CONFIG_NAME, ExperimentConfig, load_config
from skylab.experiment.layout import WORK_DIR
from skylab.experiment.resources import resource_dir, template_dir
from skylab.store.gitstore import TrialStore
from skylab.store.refs import NOTES_REF

DEFAULT_TEMPLATE = "gpt-pretrain"
HOOK_MARKER = "# skylab-hook: post-commit"
CHAINED_HOOK = "post-commit.pre-skylab"


def init_experiment(directory: Path, template: str | None = None) -> list[str]:
    """Make `directory` a Skylab experiment; return what was done, one line per action."""
    if directory.exists() and not directory.is_dir():
        raise SkylabError(f"{directory} is a file, not a directory: give a directory to make an experiment")
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    # Check and copy the experiment before touching git, so bad input leaves no half-made repository.
    actions = _copy_template(directory, template)
    config = load_config(directory / CONFIG_NAME)
    if (directory / ".git").exists():
        repo = pygit2.Repository(str(directory))
    else:
        repo = pygit2.init_repository(str(directory), initial_head="main")
        actions.insert(0, f"created a git repository in {directory}")
    if repo.workdir is None or Path(repo.workdir).resolve() != directory:
        raise SkylabError(f"{directory} must be the top of its git repository, not a bare or nested path")

    actions += _exclude_work_dir(repo)
    actions += install_hook(repo)
    actions += _show_notes_in_log(repo)
    actions += _make_baseline(repo, config)
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


def _exclude_work_dir(repo: pygit2.Repository) -> list[str]:
    exclude = Path(repo.path) / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if f"/{WORK_DIR}/" in lines:
        return []
    with exclude.open("a") as handle:
        handle.write(f"/{WORK_DIR}/\n")
    return [f"told git to ignore /{WORK_DIR}/ (run logs)"]


def hooks_dir(repo: pygit2.Repository) -> Path:
    configured = repo.config["core.hooksPath"] if "core.hooksPath" in repo.config else None  # noqa: SIM401
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else Path(repo.workdir or repo.path) / path
    return Path(repo.path) / "hooks"


def install_hook(repo: pygit2.Repository) -> list[str]:
    """Install hooks/post-commit; a foreign hook already there is kept and run first."""
    target_dir = hooks_dir(repo)
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


def _show_notes_in_log(repo: pygit2.Repository) -> list[str]:
    config = repo.config
    current = list(config.get_multivar("notes.displayRef")) if "notes.displayRef" in config else []
    if NOTES_REF in current:
        return []
    config.set_multivar("notes.displayRef", "^$", NOTES_REF)
    return ["set notes.displayRef so `git log` shows Skylab's notes"]


def _make_baseline(repo: pygit2.Repository, config: ExperimentConfig) -> list[str]:
    store = TrialStore(repo)
    if store.baseline() is not None:
        return []
    actions: list[str] = []
    index = repo.index
    index.add_all()
    index.write()
    tree = index.write_tree()
    unborn = repo.head_is_unborn
    if unborn or tree != repo.head.peel(pygit2.Commit).tree_id:
        sig = store.signature()
        parents = [] if unborn else [repo.head.target]
        repo.create_commit("HEAD", sig, sig, f"skylab: baseline of {config.name}\n", tree, parents)
        actions.append("committed the experiment as the baseline")
    head = str(repo.head.peel(pygit2.Commit).id)
    store.set_baseline(head)
    actions.append(f"baseline is {head[:10]}")
    return actions
