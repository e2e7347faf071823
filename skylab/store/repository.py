"""The git repository as the store uses it: objects, refs, the notes tree, the write lock.

It knows nothing of trials (that is `gitstore.TrialStore`, built on it) and is the one place that
turns commits, trees and refs into the plain strings the rest of Skylab works with. Ref and note
writes (`_set_ref`, `_write_notes`) are for the store package alone.
"""

from __future__ import annotations

import fcntl
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pygit2

from skylab.errors import StoreError
from skylab.store.notetree import notes_tree, notes_tree_changes, read_notes_tree
from skylab.store.reffiles import RefExists, RefFiles, RefLayers, RefLocked, uses_files_backend, write_ref
from skylab.store.refs import NOTES_REF, SKYLAB_REF_FOLDERS, STAGING_PREFIX

FALLBACK_SIGNATURE = ("Skylab", "skylab@localhost")
LOOSE_REFS_TO_PACK = 1000  # loose refs under LOOSE_REF_FOLDERS beyond which refs are packed
LOOSE_REF_FOLDERS = ("refs/skylab/", STAGING_PREFIX)  # the store's own, a remote's staged


_NOTES_ENTRY = re.compile(r"[0-9a-f]{2}|[0-9a-f]{38,64}")  # a fan-out folder, or a note by the rest of its id


def git_failure(stderr: str) -> str:
    """The line of git's error output that says what went wrong: its first `fatal:` or `error:`
    line (the last line is often advice, such as "and the repository exists.")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith(("fatal:", "error:"))), None)
    return (first or (lines[-1] if lines else "(no output)")).removeprefix("fatal: ").removeprefix("error: ")


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
        self._ref_files = RefFiles(self.git_dir) if uses_files_backend(storage) else None
        try:  # git's default: reflogs for branches and notes, except in a bare repository
            logged = str(repo.config["core.logAllRefUpdates"]).lower()
        except KeyError:
            logged = "false" if repo.is_bare else "true"
        self._log_all_refs = logged in ("true", "yes", "on", "1", "always")

    @property
    def root(self) -> Path:
        """The experiment's directory: the repository's work tree."""
        return Path(self.repo.workdir or ".")

    @property
    def git_dir(self) -> Path:
        return Path(self.repo.path)

    def git(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
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
        found = self._ref_files.under(prefix) if self._ref_files is not None else None
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
        return self._ref_files.lines_under(prefix) if self._ref_files is not None else None

    def seed_ref_layers(self, prefix: str, layers: RefLayers) -> None:
        """Take `layers` (a read of `prefix` saved by an earlier process) as what packed-refs
        holds there while it is unchanged (see `RefFiles.seed`)."""
        if self._ref_files is not None:
            self._ref_files.seed(prefix, layers)

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

    def _tree_diff(self, a: str, b: str, context_lines: int = 3) -> pygit2.Diff:
        """The diff from commit `a`'s tree to commit `b`'s."""
        new = self.repo[b].peel(pygit2.Tree)
        return self.repo[a].peel(pygit2.Tree).diff_to_tree(new, context_lines=context_lines)

    def diff_paths(self, a: str, b: str) -> set[str]:
        """The paths that differ between two commits' trees."""
        diff = self._tree_diff(a, b)
        return {path for delta in diff.deltas for path in (delta.new_file.path, delta.old_file.path)}

    def file_at(self, commit: str, path: str) -> bytes | None:
        """The content of `path` in a commit's tree (None when the commit has no such file)."""
        tree = self.repo[commit].peel(pygit2.Tree)
        try:
            entry = tree[path]
        except KeyError:
            return None
        return entry.data if isinstance(entry, pygit2.Blob) else None

    def diff_text(self, a: str, b: str, paths: list[str]) -> str:
        """The unified diff from commit `a` to commit `b`, limited to `paths`."""
        diff = self._tree_diff(a, b)
        wanted = set(paths)
        texts = []
        for patch in diff:
            if patch is not None and {patch.delta.new_file.path, patch.delta.old_file.path} & wanted:
                texts.append(patch.text or "")
        return "".join(texts)

    def lines_removed(self, a: str, b: str) -> int:
        """Net lines of text the change from commit `a` to commit `b` removes (negative: adds)."""
        stats = self._tree_diff(a, b).stats
        return int(stats.deletions) - int(stats.insertions)

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

    def merge_trees(self, base: str, ours: str, theirs: str) -> tuple[str | None, list[str]]:
        """The 3-way merge of two commits' trees over `base`'s: (the merged tree id, []) or, when
        they conflict, (None, the conflicting paths). Writes no commit and no ref."""
        base_tree, our_tree, their_tree = (
            self.repo[c].peel(pygit2.Commit).tree for c in (base, ours, theirs)
        )
        return self._merge(base_tree, our_tree, their_tree)

    def revert_onto(self, onto: str, changes: list[tuple[str, str]]) -> tuple[str | None, list[str]]:
        """`onto`'s tree with each change undone, in order, by a 3-way revert (`changes`: (commit,
        the parent it changed) pairs): (the tree id, []) or, at the first change whose revert
        conflicts with what came after it, (None, the conflicting paths). Writes no commit or ref."""
        tree = self.repo[onto].peel(pygit2.Commit).tree
        for change, parent in changes:
            change_tree, parent_tree = (self.repo[c].peel(pygit2.Commit).tree for c in (change, parent))
            merged, conflicts = self._merge(change_tree, tree, parent_tree)
            if merged is None:
                return None, conflicts
            tree = self.repo[merged].peel(pygit2.Tree)
        return str(tree.id), []

    def _merge(
        self, base: pygit2.Tree, ours: pygit2.Tree, theirs: pygit2.Tree
    ) -> tuple[str | None, list[str]]:
        index = self.repo.merge_trees(base, ours, theirs)
        if index.conflicts is not None:
            paths = {(entry or their).path for entry, _, their in index.conflicts if entry or their}
            return None, sorted(paths)
        return str(index.write_tree(self.repo)), []

    def descends_from(self, commit: str, ancestor: str) -> bool:
        """Whether `ancestor` is in `commit`'s history (and is not `commit` itself)."""
        return bool(self.repo.descendant_of(commit, ancestor))

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

    def first_parents(self, commit: str | None) -> Iterator[str]:
        """`commit`, then its first parent, and so on back to the root (at most 10,000 steps)."""
        for _ in range(10_000):
            if commit is None:
                return
            yield commit
            obj = self._commit(commit)
            commit = str(obj.parent_ids[0]) if obj is not None and obj.parent_ids else None

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

    def follow_checkout(self, branch: str, old: str, new: str) -> bool:
        """`branch` moved from `old` to `new`. When the researcher's checkout is on that branch and
        sat clean on `old` (index and files hold it, except paths the move changes), check `new`
        out there too, so `git status` shows no change that would undo the move. Returns whether
        it did; edits of theirs stop it."""
        repo = self.repo
        if repo.is_bare or repo.head_is_detached or repo.head.name != branch:
            return False
        repo.index.read()  # as it is on disk now
        unchanged = repo.index.write_tree() == repo[old].peel(pygit2.Tree).id
        if not unchanged or not self.dirty_paths() <= self.diff_paths(old, new):
            return False
        target = repo[new].peel(pygit2.Tree)
        repo.checkout_tree(target, strategy=pygit2.enums.CheckoutStrategy.FORCE)  # type: ignore[no-untyped-call]
        repo.index.read_tree(target)
        repo.index.write()
        return True

    def maintain(self, loose_refs_limit: int | None = None) -> None:
        """Let git pack loose objects when it judges it worthwhile (`git gc --auto`), and pack refs
        once more than `loose_refs_limit` of Skylab's lie loose.

        Each trial adds a handful of loose objects and a loose ref. `gc --auto` packs refs only
        when it packs objects, which left 47,603 of 100,000 trial refs loose in a benchmark; a load
        reads every loose ref file, so they are packed here on a count instead. The store calls it
        every MAINTENANCE_EVERY trials, after the trial is recorded.
        """
        with self.writing():
            # In the foreground, under the store lock: `gc --auto` detaches by default, and a
            # detached gc racing our object writes failed (a libgit2 temporary object vanished under
            # it), left .git/gc.log, and git then skips auto gc for a day: 326,000 loose objects
            # piled up by 55,000 trials and each write slowed down.
            self.git("-c", "gc.autoDetach=false", "gc", "--auto", "--quiet")
            self.pack_loose_refs(loose_refs_limit)

    def pack_loose_refs(self, limit: int | None = None) -> None:
        """`git pack-refs --all` once more than `limit` of Skylab's refs (its own, and a remote's
        staged by a pull) lie loose: every ref listing (a load, git push, git fetch) reads each
        loose ref file, and a first pull of 10,000 trials staged 10,000 of them."""
        if self._ref_files is None:
            return
        limit = LOOSE_REFS_TO_PACK if limit is None else limit
        loose = sum(self._ref_files.loose_count(folder) for folder in LOOSE_REF_FOLDERS)
        if loose > limit:
            with self.writing():
                self.git("pack-refs", "--all")

    def clear_stale_ref_locks(self) -> list[str]:
        """Remove `.lock` files a killed writer left on Skylab's refs; they would block every update.

        Every Skylab writer holds the store lock while it writes a ref, so once we hold it, a ref
        lock file on one of our refs belongs to a process that is gone.
        """
        fixed = []
        with self.writing():
            for folder in (self.git_dir / name for name in SKYLAB_REF_FOLDERS):
                for lock in folder.rglob("*.lock") if folder.is_dir() else []:
                    lock.unlink()
                    fixed.append(f"removed a stale lock {lock.relative_to(self.git_dir)}")
        return fixed

    def _set_ref(self, name: str, target: str, message: str, force: bool = True) -> None:
        if self._ref_files is not None:  # see reffiles.write_ref: flat cost however many refs
            sig = self.signature()
            who = (f"{sig.name} <{sig.email}>", time.time(), sig.offset)
            try:
                write_ref(self._ref_files, name, target, message, who, not force, self._log_all_refs)
            except RefExists:
                raise StoreError(f"{name} already exists") from None
            except RefLocked:
                raise StoreError(f"{name} is locked by another git process ({name}.lock exists)") from None
            except OSError as exc:
                raise StoreError(f"cannot write {name}: {exc.strerror or exc}") from None
            return
        try:
            self.repo.create_reference_direct(name, pygit2.Oid(hex=target), force, message=message)
        except pygit2.AlreadyExistsError:
            raise StoreError(f"{name} already exists") from None

    def _create_refs(self, refs: dict[str, str], message: str) -> None:
        """Create every ref of `refs` (name -> object id) in one `git update-ref --stdin`
        transaction: all of them, or none when one exists already or cannot be written."""
        self._ref_transaction("".join(f"create {name}\0{target}\0" for name, target in refs.items()), message)

    def _update_refs(self, refs: dict[str, str], message: str) -> None:
        """Point every ref of `refs` (name -> object id) at its target, whatever it held, in one
        `git update-ref --stdin` transaction."""
        self._ref_transaction(
            "".join(f"update {name}\0{target}\0\0" for name, target in refs.items()), message
        )

    def _ref_transaction(self, commands: str, message: str) -> None:
        """`git update-ref -z --stdin` with `commands`: all of them or none (a StoreError); no git
        process for no commands."""
        if not commands:
            return
        done = self.git("update-ref", "-z", "-m", message, "--stdin", stdin=commands)
        if done.returncode != 0:
            raise StoreError(git_failure(done.stderr))

    def _write_notes(
        self, notes: dict[str, str | pygit2.Oid], message: str, merge_parent: str | None = None
    ) -> None:
        """One notes commit adding or replacing `notes` (commit -> text or blob id)."""
        parent = self.ref_target(NOTES_REF)
        base_tree = self.repo[parent].peel(pygit2.Tree) if parent else None
        tree = notes_tree(self.repo, base_tree, notes)
        sig = self.signature()
        parents = [pygit2.Oid(hex=p) for p in (parent, merge_parent) if p]
        commit = self.repo.create_commit(None, sig, sig, message, tree, parents)
        self._set_ref(NOTES_REF, str(commit), message)
