"""Every write of a ref or a note the store makes, in one module: the one place that changes what
git holds (objects aside). The caller holds the store's write lock (`GitRepo.writing`).

Two ways to write a ref, each where the measurement says it is needed (`bench/refwrites.py`):
- one ref of a repository that keeps its refs in files: written here as git writes it (`write_ref`),
  0.16-0.21 ms a write at 100,000 packed trial refs, where libgit2 takes 1.4-1.5 ms (it checks the
  name against every ref) and `git update-ref` 2.3-2.8 ms (a process each). The loop writes three or
  four refs a trial, and bench/history.py writes 100,000 trials.
- many refs at once, all or none (an import, a pull, a push's bookkeeping), and any ref of a
  repository with another ref backend: one `git update-ref -z --stdin` transaction.
"""

from __future__ import annotations

import os
import time

import pygit2

from skylab.errors import StoreError
from skylab.store.notetree import notes_tree
from skylab.store.reffiles import RefFiles
from skylab.store.refs import NOTES_REF, SKYLAB_REF_FOLDERS, STAGING_PREFIX
from skylab.store.repository import GitRepo

LOOSE_REFS_TO_PACK = 1000  # loose refs under LOOSE_REF_FOLDERS beyond which refs are packed
LOOSE_REF_FOLDERS = ("refs/skylab/", STAGING_PREFIX)  # the store's own, a remote's staged


def git_failure(stderr: str) -> str:
    """The line of git's error output that says what went wrong: its first `fatal:` or `error:`
    line (the last line is often advice, such as "and the repository exists.")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith(("fatal:", "error:"))), None)
    return (first or (lines[-1] if lines else "(no output)")).removeprefix("fatal: ").removeprefix("error: ")


class RefExists(Exception):
    """The ref to create exists already."""


class RefLocked(Exception):
    """Another writer holds the ref's lock file."""


LOGGED_NAMESPACES = ("refs/heads/", "refs/remotes/", "refs/notes/")  # git's core.logAllRefUpdates=true


def reflog_line(old: str | None, new: str, who: str, when: float, offset_minutes: int, message: str) -> str:
    """One line of a reflog, as git writes it: old and new ids, who and when, a tab, the message."""
    sign = "-" if offset_minutes < 0 else "+"
    zone = f"{sign}{abs(offset_minutes) // 60:02d}{abs(offset_minutes) % 60:02d}"
    text = " ".join(message.split())  # one line
    return f"{old or '0' * len(new)} {new} {who} {int(when)} {zone}\t{text}\n"


def write_ref(
    refs: RefFiles,
    name: str,
    target: str,
    message: str,
    who: tuple[str, float, int],
    create_only: bool,
    log_all: bool,
) -> None:
    """Point the ref `name` at `target` as git does: `<ref>.lock` created exclusively, the new id
    written to it, a reflog line appended (for the namespaces git logs, or when the ref has a log),
    then the lock renamed over the ref. A kill -9 leaves the old ref and at most a stale lock file.

    Why not libgit2: each of its ref writes checks the new name against every ref in the repository
    (see the module docstring for what that costs). Here the cost does not depend on how many refs
    there are. The caller holds the store's write lock; other git processes are kept out by the
    lock file, as git keeps out each other."""
    path = refs.common / name  # `who`: (name <email>, time, offset in minutes) for the reflog
    old = refs.target(name)
    if create_only and old is not None:
        raise RefExists(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    try:
        handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise RefLocked(name) from None
    try:
        with os.fdopen(handle, "w") as out:
            out.write(target + "\n")
        log = refs.common / "logs" / name
        if (log_all and name.startswith(LOGGED_NAMESPACES)) or log.is_file():
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a", encoding="utf-8") as out:
                out.write(reflog_line(old, target, *who, message))
        os.replace(lock, path)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


class RefWriter:
    """Writes the refs and notes of one repository; every method expects the store's write lock
    held (`GitRepo.writing`), which orders Skylab's writers, while ref lock files keep out git."""

    def __init__(self, git: GitRepo) -> None:
        self.git = git
        self._files = git.ref_files
        self._log_all_refs = git.logs_all_refs

    def set_ref(self, name: str, target: str, message: str, force: bool = True) -> None:
        """Point `name` at `target` (with `force` False: only create it; StoreError if it exists)."""
        if self._files is None:
            verb = f"update {name}\0{target}\0\0" if force else f"create {name}\0{target}\0"
            self.transaction(verb, message)
            return
        sig = self.git.signature()
        who = (f"{sig.name} <{sig.email}>", time.time(), sig.offset)
        try:
            write_ref(self._files, name, target, message, who, not force, self._log_all_refs)
        except RefExists:
            raise StoreError(f"{name} already exists") from None
        except RefLocked:
            raise StoreError(f"{name} is locked by another git process ({name}.lock exists)") from None
        except OSError as exc:
            raise StoreError(f"cannot write {name}: {exc.strerror or exc}") from None

    def create_refs(self, refs: dict[str, str], message: str) -> None:
        """Create every ref of `refs` (name -> object id) in one transaction: all of them, or none
        when one exists already or cannot be written."""
        self.transaction("".join(f"create {name}\0{target}\0" for name, target in refs.items()), message)

    def update_refs(self, refs: dict[str, str], message: str) -> None:
        """Point every ref of `refs` (name -> object id) at its target, whatever it held, in one
        transaction."""
        self.transaction("".join(f"update {name}\0{target}\0\0" for name, target in refs.items()), message)

    def delete_refs(self, names: list[str], message: str) -> None:
        """Delete these refs in one transaction."""
        self.transaction("".join(f"delete {name}\0\0" for name in names), message)

    def transaction(self, commands: str, message: str) -> None:
        """`git update-ref -z --stdin` with `commands`: all of them or none (a StoreError); no git
        process for no commands."""
        if not commands:
            return
        done = self.git.run("update-ref", "-z", "-m", message, "--stdin", stdin=commands)
        if done.returncode != 0:
            raise StoreError(git_failure(done.stderr))

    def write_notes(
        self,
        notes: dict[str, str | pygit2.Oid],
        message: str,
        merge_parent: str | None = None,
        ref: str = NOTES_REF,
    ) -> None:
        """One notes commit adding or replacing `notes` (commit -> text or blob id) on the notes
        ref (`ref`: another one, the curves'), with `merge_parent` as its second parent when given."""
        repo = self.git.repo
        parent = self.git.ref_target(ref)
        base_tree = repo[parent].peel(pygit2.Tree) if parent else None
        tree = notes_tree(repo, base_tree, notes)
        sig = self.git.signature()
        parents = [pygit2.Oid(hex=p) for p in (parent, merge_parent) if p]
        commit = repo.create_commit(None, sig, sig, message, tree, parents)
        self.set_ref(ref, str(commit), message)

    def clear_stale_ref_locks(self) -> list[str]:
        """Remove `.lock` files a killed writer left on Skylab's refs; they would block every update.
        Every Skylab writer holds the store lock while it writes a ref, so once we hold it, a ref
        lock file on one of our refs belongs to a process that is gone."""
        fixed = []
        git_dir = self.git.git_dir
        for folder in (git_dir / name for name in SKYLAB_REF_FOLDERS):
            for lock in folder.rglob("*.lock") if folder.is_dir() else []:
                lock.unlink()
                fixed.append(f"removed a stale lock {lock.relative_to(git_dir)}")
        return fixed

    def maintain(self, loose_refs_limit: int | None = None) -> None:
        """Let git pack loose objects when it judges it worthwhile (`git gc --auto`), and pack refs
        once more than `loose_refs_limit` of Skylab's lie loose.

        Each trial adds a handful of loose objects and a loose ref. `gc --auto` packs refs only
        when it packs objects, which left 47,603 of 100,000 trial refs loose in a benchmark; a load
        reads every loose ref file, so they are packed here on a count instead. In the foreground:
        `gc --auto` detaches by default, and a detached gc racing our object writes failed (a
        libgit2 temporary object vanished under it), left .git/gc.log, and git then skipped auto gc
        for a day: 326,000 loose objects piled up by 55,000 trials and each write slowed down."""
        self.git.run("-c", "gc.autoDetach=false", "gc", "--auto", "--quiet")
        self.pack_loose_refs(loose_refs_limit)

    def pack_loose_refs(self, limit: int | None = None) -> None:
        """`git pack-refs --all` once more than `limit` of Skylab's refs (its own, and a remote's
        staged by a pull) lie loose: every ref listing (a load, git push, git fetch) reads each
        loose ref file, and a first pull of 10,000 trials staged 10,000 of them."""
        if self._files is None:
            return
        limit = LOOSE_REFS_TO_PACK if limit is None else limit
        loose = sum(self._files.loose_count(folder) for folder in LOOSE_REF_FOLDERS)
        if loose > limit:
            self.git.run("pack-refs", "--all")
