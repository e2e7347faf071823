"""Hand-made commits on a run branch, waiting to be trained.

The post-commit hook queues the commit (a file per commit under .git/skylab/queue) and returns at
once. A running `skylab run` trains queued commits before its next proposal; when no run is active,
the hook starts one in the background that trains the queue and exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from skylab.experiment.layout import log_dir
from skylab.store.gitstore import TrialStore
from skylab.store.refs import BRANCH_PREFIX
from skylab.store.runlock import RunLock


def queue_dir(store: TrialStore) -> Path:
    return store.git.skylab_dir / "queue"


def enqueue(store: TrialStore, tag: str, commit: str) -> None:
    folder = queue_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{commit}.tmp"
    partial.write_text(tag + "\n")
    partial.rename(folder / commit)  # atomic: a reader sees the whole entry or none


def queued(store: TrialStore, tag: str) -> set[str]:
    """The commits of `tag` waiting in the queue."""
    return {entry.name for entry in _entries(store, tag)}


def pop(store: TrialStore, tag: str) -> str | None:
    """The oldest queued commit of `tag`, removed from the queue."""
    for entry in _entries(store, tag):
        entry.unlink()
        return entry.name
    return None


def _entries(store: TrialStore, tag: str) -> list[Path]:
    """The queue's entries of `tag`, oldest first."""
    folder = queue_dir(store)
    if not folder.is_dir():
        return []
    entries = sorted(
        (p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime
    )
    return [entry for entry in entries if _tag_of(entry) == tag]


def _tag_of(entry: Path) -> str:
    try:
        return entry.read_text().strip()
    except OSError:
        return ""  # taken by another process meanwhile


def on_post_commit(store: TrialStore) -> str:
    """What the hook does for HEAD; returns the line to show the committer."""
    branch, commit = store.checkout.checked_out_branch(), store.checkout.head_commit()
    if branch is None or commit is None or not branch.startswith(BRANCH_PREFIX):
        return ""
    tag = branch[len(BRANCH_PREFIX) :]
    history = store.load()
    if commit in history.by_commit():
        return ""  # already a trial: never twice
    enqueue(store, tag, commit)
    if not RunLock(store.git.git_dir).try_acquire_and_release():
        return f"skylab: {commit[:10]} queued; the active skylab run trains it next"
    root = store.git.root
    log = log_dir(root, tag) / f"hand-{commit[:10]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    skylab = Path(sys.executable).parent / "skylab"
    command = [str(skylab), "run", "--tag", tag, "--queued-only", "-C", str(root)]
    with open(log, "w") as out:
        subprocess.Popen(
            command,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=_clean_git_env(),
        )
    return f"skylab: training {commit[:10]} as a trial of {tag} in the background (log: {log})"


def _clean_git_env() -> dict[str, str]:
    """Hooks run with GIT_DIR and friends set; the background run must find the repo by itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return env
