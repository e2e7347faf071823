"""The work tree trials run in: Skylab's own git worktree under .skylab/worktrees/<tag>.

The researcher's checkout is never touched by a run, and since Skylab owns this tree it can always
reset it to the run's tip: that is how an interrupted trial's half-applied edit is undone.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pygit2

from skylab.errors import SkylabError
from skylab.scaffold import WORK_DIR


class TrialWorktree:
    def __init__(self, main: pygit2.Repository, tag: str) -> None:
        root = Path(main.workdir or main.path)
        self.path = root / WORK_DIR / "worktrees" / tag
        self.main = main
        if not (self.path / ".git").exists():
            self._create(root)
        self.repo = pygit2.Repository(str(self.path))

    def _create(self, root: Path) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)  # a half-made worktree from a killed run
        subprocess.run(["git", "-C", str(root), "worktree", "prune"], capture_output=True, check=False)
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
        tree: pygit2.Oid = index.write_tree(self.main)
        return tree
