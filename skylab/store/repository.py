"""The git repository as the store uses it: objects, refs, the notes tree, the write lock.

It knows nothing of trials (that is `gitstore.TrialStore`, which holds one) and is the one place
that turns commits, trees and refs into the plain strings the rest of Skylab works with. It writes
nothing but the researcher's checkout (`follow_checkout`): refs and notes are written by
`refwrites`, under the lock held here.
"""

from __future__ import annotations

import fcntl
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pygit2

from skylab.store.notetree import notes_tree_changes, read_notes_tree
from skylab.store.reffiles import RefFiles, RefLayers, uses_files_backend
from skylab.store.refs import NOTES_REF

FALLBACK_SIGNATURE = ("Skylab", "skylab@localhost")


_NOTES_ENTRY = re.compile(r"[0-9a-f]{2}|[0-9a-f]{38,64}")  # a fan-out folder, or a note by the rest of its id


class GitRepo:
    """One repository: read anything, write refs and notes under one re-entrant lock."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.skylab_dir = Path(repo.path) / "skylab"
        self._lock_depth = 0
        self._thread_lock = threading.RLock()
        self._trees: dict[str, str] = {}  # commit id -> its tree id (see tree_of)
        self._with_tree: dict[str, list[str]] = {}  # tree id -> the commits in _trees with it
        try:
            storage: str | None = str(repo.config["extensions.refStorage"])
        except KeyError:
            storage = None
        # The refs' files, when the repository keeps its refs in files (see reffiles); else None.
        self.ref_files = RefFiles(self.git_dir) if uses_files_backend(storage) else None
        try:  # git's default: reflogs for branches and notes, except in a bare repository
            logged = str(repo.config["core.logAllRefUpdates"]).lower()
        except KeyError:
            logged = "false" if repo.is_bare else "true"
        self.logs_all_refs = logged in ("true", "yes", "on", "1", "always")

    @property
    def root(self) -> Path:
        """The experiment's directory: the repository's work tree."""
        return Path(self.repo.workdir or ".")

    @property
    def git_dir(self) -> Path:
        return Path(self.repo.path)

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the git command line in this repository (for what pygit2 lacks: fetch, push, gc)."""
        workdir = self.repo.workdir or self.repo.path
        return subprocess.run(
            ["git", "-C", workdir, *args], input=stdin, capture_output=True, text=True, check=False
        )

    # ----- reading -------------------------------------------------------------------------------

    def _commit(self, sha: str) -> pygit2.Commit | None:
        """The commit `sha` names in this repository; None for anything else (a tree, a blob, an
        object that is not here, a string that is no object id)."""
        try:
            obj = self.repo.get(sha)
        except ValueError:  # pygit2's GitErrors for a malformed or ambiguous id are ValueErrors
            return None
        return obj if isinstance(obj, pygit2.Commit) else None

    def is_commit(self, sha: str) -> bool:
        return self._commit(sha) is not None

    def commit_time(self, sha: str) -> int | None:
        """When the commit `sha` was made (seconds since the epoch); None when it is no commit here."""
        commit = self._commit(sha)
        return None if commit is None else int(commit.commit_time)

    def is_notes_commit(self, sha: str) -> bool:
        """Whether `sha` is a commit whose tree reads as a notes tree: its entries named by object
        ids, whole or fanned out by their first hex digits (what a notes ref must point at)."""
        commit = self._commit(sha)
        if commit is None:
            return False
        try:
            entries = list(commit.tree)
        except (KeyError, pygit2.GitError):  # its tree is missing
            return False
        return all(_NOTES_ENTRY.fullmatch(entry.name or "") for entry in entries)

    def has_object(self, sha: str) -> bool:
        """Whether the object `sha` is here (its kind unread)."""
        try:
            return sha in self.repo
        except ValueError:  # not an object id
            return False

    def ref_target(self, name: str) -> str | None:
        ref = self.repo.references.get(name)
        return None if ref is None else str(ref.resolve().target)

    def refs_under(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(name without prefix, target commit) for every direct ref under `prefix` (a folder,
        ending in '/')."""
        yield from self.ref_layers(prefix).merged().items()

    def ref_layers(self, prefix: str) -> RefLayers:
        """The direct refs under `prefix` (a folder, ending in '/'), name without prefix -> target
        commit. Read from the ref files when the repository keeps its refs in files (see
        `reffiles`), else through pygit2 (as one layer, new on every read)."""
        found = self.ref_files.under(prefix) if self.ref_files is not None else None
        if found is not None:
            return found
        cut, listed = len(prefix), {}
        for ref in self.repo.references.iterator():
            name = ref.name
            if name.startswith(prefix):
                target = ref.target  # an Oid for a direct ref, a ref name for a symbolic one
                if isinstance(target, pygit2.Oid):  # (not ref.type: its enum costs 4 µs a ref)
                    listed[name[cut:]] = str(target)
        return RefLayers(listed, {})

    def ref_lines(self, prefix: str) -> tuple[str, dict[str, str]] | None:
        """The refs under `prefix` as packed-refs lines and loose refs (see `RefFiles.lines_under`);
        None when they are not kept so (another ref backend, an unsorted file)."""
        return self.ref_files.lines_under(prefix) if self.ref_files is not None else None

    def seed_ref_layers(self, prefix: str, layers: RefLayers) -> None:
        """Take `layers` (a read of `prefix` saved by an earlier process) as what packed-refs
        holds there while it is unchanged (see `RefFiles.seed`)."""
        if self.ref_files is not None:
            self.ref_files.seed(prefix, layers)

    def remote_names(self) -> list[str]:
        return [str(name) for name in self.repo.remotes.names() if name]

    def resolve_commit(self, spec: str) -> str | None:
        """The commit a revision (`HEAD~2`, a branch, a short id) names here; None when none."""
        try:
            return str(self.repo.revparse_single(spec).peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError):
            return None

    def commit_by_id(self, hex_id: str) -> str | None:
        """The commit whose id is, or uniquely starts with, `hex_id`: an object id only, never a
        ref's name (`cafe` is not the branch cafe). None when there is none, the prefix is
        ambiguous, or the object is not a commit."""
        try:
            found = self.repo.get(hex_id)
            return None if found is None else str(found.peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            return None

    def commit_summary(self, commit: str) -> tuple[str, str] | None:
        """(first parent, "" for a root commit; first line of the message) of a commit here; None for
        anything that is not a commit of this repository."""
        obj = self._commit(commit)
        if obj is None:
            return None
        parent = str(obj.parent_ids[0]) if obj.parent_ids else ""
        return parent, obj.message.strip().split("\n")[0]

    def tree_of(self, commit: str) -> str | None:
        """The tree id of a commit of this repository (None for anything else). Kept once found, as
        a commit's tree never changes: the loop looks up every past trial's tree for each proposal
        (0.35 s a proposal at 100,000 trials through libgit2)."""
        known = self._trees.get(commit)
        if known is not None:
            return known
        obj = self._commit(commit)
        if obj is None:
            return None
        tree = str(obj.tree_id)
        if str(obj.id) == commit:  # a full id: an abbreviation could name another commit later
            self._trees[commit] = tree
            self._with_tree.setdefault(tree, []).append(commit)
        return tree

    def commits_with_tree(self, tree: str, commits: Iterable[str]) -> list[str]:
        """The commits whose tree is `tree`, among `commits` and any others looked up before: the
        trees of `commits` not seen yet are looked up first, so a call costs the new ones (the
        loop asks this of every past trial for each proposal)."""
        known = self._trees
        for commit in commits:
            if commit not in known:
                self.tree_of(commit)
        return list(self._with_tree.get(tree, ()))

    def descends_from(self, commit: str, ancestor: str) -> bool:
        """Whether `ancestor` is in `commit`'s history (and is not `commit` itself)."""
        return bool(self.repo.descendant_of(commit, ancestor))

    def first_parents(self, commit: str | None) -> Iterator[str]:
        """`commit`, then its first parent, and so on back to the root (at most 10,000 steps)."""
        for _ in range(10_000):
            if commit is None:
                return
            yield commit
            obj = self._commit(commit)
            commit = str(obj.parent_ids[0]) if obj is not None and obj.parent_ids else None

    def note_blob(self, commit: str, ref: str = NOTES_REF) -> pygit2.Blob | None:
        """The note of `commit` on the notes ref (or `ref`), looked up by itself; None when it has none."""
        try:
            blob = self.repo[self.repo.lookup_note(commit, ref).id]
        except (KeyError, ValueError, pygit2.GitError):  # no note, no notes ref, or no commit id
            return None
        return blob if isinstance(blob, pygit2.Blob) else None

    def notes_changed(self, old: str, new: str) -> dict[str, pygit2.Blob | None] | None:
        """The notes that differ between two notes commits: annotated commit -> its note blob in
        `new` (None: removed). None when a note sits outside the 2-character fan-out Skylab writes
        (git's own flat notes), where only a full read gives the right answer."""
        old_tree, new_tree = (self.repo[c].peel(pygit2.Tree) for c in (old, new))
        return notes_tree_changes(old_tree, new_tree)

    def read_notes(self, notes_commit: str | None = None) -> dict[str, pygit2.Blob]:
        """Annotated commit -> note blob, of the notes ref or of `notes_commit`."""
        notes_commit = notes_commit or self.ref_target(NOTES_REF)
        return {} if notes_commit is None else read_notes_tree(self.repo[notes_commit].peel(pygit2.Tree))

    # ----- writing -------------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store's write lock: one writer at a time across processes and threads (re-entrant).

        The thread lock orders writers inside one process (an flock is per open file, not per
        thread); the flock orders processes.
        """
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            self.skylab_dir.mkdir(exist_ok=True)
            with open(self.skylab_dir / "store.lock", "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def signature(self) -> pygit2.Signature:
        try:
            return self.repo.default_signature
        except (KeyError, pygit2.GitError):
            return pygit2.Signature(*FALLBACK_SIGNATURE)
