"""The researcher's checkout: which branch and commit it is on, what they changed in it, and keeping
it in step when Skylab moves the branch it is on. The only files outside .git that the store
touches."""

from __future__ import annotations

import pygit2

from skylab.store.changes import Changes


class Checkout:
    """The work tree of one repository (none in a bare one)."""

    def __init__(self, repo: pygit2.Repository, changes: Changes) -> None:
        self.repo = repo
        self.changes = changes

    def checked_out_branch(self) -> str | None:
        """The full name of the branch the user's checkout is on (None when detached or unborn)."""
        repo = self.repo
        return None if repo.head_is_unborn or repo.head_is_detached else str(repo.head.name)

    def head_commit(self) -> str | None:
        """The commit the user's checkout is on (None while the repository has no commit)."""
        return None if self.repo.head_is_unborn else str(self.repo.head.target)

    def dirty_paths(self) -> set[str]:
        """Paths of the user's checkout that differ from HEAD, staged or not (ignored files aside)."""
        ignored = pygit2.enums.FileStatus.IGNORED
        return {path for path, flags in self.repo.status().items() if flags != ignored}

    def follow_checkout(self, branch: str, old: str, new: str) -> bool:
        """`branch` moved from `old` to `new`. When the researcher's checkout is on that branch and
        sat clean on `old` (index and files hold it, except paths the move changes), check `new`
        out there too, so `git status` shows no change that would undo the move. Returns whether
        it did; edits of theirs stop it."""
        repo = self.repo
        if repo.is_bare or repo.head_is_detached or repo.head.name != branch:
            return False
        if str(repo.head.target) != new:  # the branch moved on again since: leave the checkout be
            return False
        repo.index.read()  # as it is on disk now
        unchanged = repo.index.write_tree() == repo[old].peel(pygit2.Tree).id
        if not unchanged or not self.dirty_paths() <= self.changes.diff_paths(old, new):
            return False
        target = repo[new].peel(pygit2.Tree)
        repo.checkout_tree(target, strategy=pygit2.enums.CheckoutStrategy.FORCE)  # type: ignore[no-untyped-call]
        repo.index.read_tree(target)
        repo.index.write()
        return True
