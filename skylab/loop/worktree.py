"""The work tree trials run in: Skylab's own git worktree under .skylab/worktrees/<tag>.

The researcher's checkout is never touched by a run, and since Skylab owns this tree it can always
reset it to the run's tip: that is how an interrupted trial's half-applied edit is undone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import pygit2

from skylab.errors import SkylabError
from skylab.experiment.layout import group_file, worktrees_dir


def worktree_name(tag: str, worker: int) -> str:
    """Worker 0 keeps the plain tag; others get `tag+N` ('+' never appears in a tag, so no clash)."""
    return tag if worker == 0 else f"{tag}+{worker}"


def kill_leftover_training(workdir: Path) -> bool:
    """Kill a training process group that a killed Skylab left running in `workdir`; True if one was.

    The group's leader may be gone while children it started still run. A group id alone could have
    been reused by now, so the group is only killed while a member of it runs in this very work tree.
    """
    record = group_file(workdir)
    try:
        pgid = int(record.read_text().strip())
    except (OSError, ValueError):
        return False
    record.unlink(missing_ok=True)
    if not any(_cwd(pid) == workdir.resolve() for pid in _group_members(pgid)):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
        return True
    return False


def _group_members(pgid: int) -> list[int]:
    """The processes in group `pgid` (psutil, so it works wherever the local runner does)."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid:
                members.append(process.pid)
    return members


def _cwd(pid: int) -> Path | None:
    try:
        return Path(psutil.Process(pid).cwd())
    except (psutil.Error, OSError):
        return None


def remove_extra_worktrees(experiment: Path, tag: str, workers: int) -> list[str]:
    """Remove this run's worker trees beyond `workers` (left by a larger or killed run)."""
    removed: list[str] = []
    root = worktrees_dir(experiment)
    if not root.is_dir():
        return removed
    for path in sorted(root.glob(f"{tag}+*")):
        number = path.name.rpartition("+")[2]
        if path.is_dir() and number.isdigit() and int(number) >= workers:
            kill_leftover_training(path)
            shutil.rmtree(path)
            removed.append(path.name)
    if removed:
        _prune(experiment)
    return removed


def _common_git_dir(root: Path) -> Path:
    found = pygit2.discover_repository(str(root))
    if found is None:
        raise SkylabError(f"{root} is not in a git repository")
    return Path(pygit2.Repository(found).path).resolve()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _prune(root: Path) -> None:
    subprocess.run(["git", "-C", str(root), "worktree", "prune"], capture_output=True, check=False)


class TrialWorktree:
    """Worker `worker`'s tree of run `tag`, a linked worktree of the experiment's repository (it
    shares its objects, so what it writes there is a commit's tree in the main repository too)."""

    def __init__(self, experiment: Path, tag: str, worker: int = 0) -> None:
        self.path = worktrees_dir(experiment) / worktree_name(tag, worker)
        kill_leftover_training(self.path)
        if (self.path / ".git").exists() and not self._belongs_to(experiment):
            self._repair(experiment)
        if not (self.path / ".git").exists():
            self._create(experiment)
        self.repo = pygit2.Repository(str(self.path))
        # Only Skylab works in this tree, and only under the run lock that the caller holds: an index
        # lock here was left by a killed run, and would block every checkout of this tag's trials.
        (Path(self.repo.path) / "index.lock").unlink(missing_ok=True)

    def _link(self) -> Path | None:
        """Where the tree's `.git` file says its repository keeps it (None: unreadable)."""
        try:
            text = (self.path / ".git").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return Path(text.removeprefix("gitdir: ")) if text.startswith("gitdir: ") else None

    def _belongs_to(self, root: Path) -> bool:
        """Whether this tree is a worktree of `root`'s repository, linked both ways. A copied (`cp
        -a`) or moved experiment keeps trees that point at the old place: another repository,
        or none."""
        admin = _common_git_dir(root) / "worktrees" / self.path.name
        linked = self._link()
        try:
            back = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            return False
        return linked is not None and _same_file(linked, admin) and _same_file(back, self.path / ".git")

    def _repair(self, root: Path) -> None:
        """Link the tree to `root`'s repository again, or make it anew (it holds nothing but a
        checkout Skylab resets anyway). `git worktree repair` only for a moved experiment, whose
        tree points nowhere: in a copy it points at the original's record, which git would then
        rewrite to point here, breaking the original."""
        linked = self._link()
        if linked is None or not linked.exists():
            subprocess.run(
                ["git", "-C", str(root), "worktree", "repair", str(self.path)],
                capture_output=True,
                check=False,
            )
        if not self._belongs_to(root):
            shutil.rmtree(self.path)
            # Our own record of the tree, copied from the original: it names the original's tree.
            shutil.rmtree(_common_git_dir(root) / "worktrees" / self.path.name, ignore_errors=True)
            _prune(root)

    def _create(self, root: Path) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)  # a half-made worktree from a killed run
        _prune(root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", "--force", str(self.path), "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SkylabError(f"could not create the trial work tree {self.path}: {result.stderr.strip()}")

    def reset(self, commit: str) -> None:
        """Check out `commit` exactly (detached), discarding any edit a strategy left."""
        target = self.repo[commit].peel(pygit2.Commit)
        strategy = pygit2.enums.CheckoutStrategy.FORCE | pygit2.enums.CheckoutStrategy.REMOVE_UNTRACKED
        self.repo.checkout_tree(target.tree, strategy=strategy)  # type: ignore[no-untyped-call]
        self.repo.set_head(target.id)

    def changed_files(self) -> list[str]:
        """Paths that differ from the checked-out commit (edited, added or deleted)."""
        ignored = pygit2.enums.FileStatus.IGNORED
        return sorted(path for path, flags in self.repo.status().items() if flags != ignored)

    def snapshot(self, paths: list[str]) -> pygit2.Oid:
        """The tree of HEAD with `paths` taken from the work tree."""
        index = self.repo.index
        index.read_tree(self.repo.head.peel(pygit2.Commit).tree)
        for path in paths:
            if (self.path / path).exists():
                index.add(path)
            else:
                index.remove(path)
        tree: pygit2.Oid = index.write_tree(self.repo)
        return tree
