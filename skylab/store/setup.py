"""The git side of `skylab init`: a repository made ready for trials, each step idempotent.

Every step checks before it acts and extends what is there (an existing repository, its ignore
rules, its configuration) instead of replacing it; each returns whether it changed anything.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from skylab.errors import SkylabError
from skylab.store.gitstore import TrialStore
from skylab.store.refs import NOTES_REF


def open_or_create(directory: Path) -> tuple[TrialStore, bool]:
    """The store of the repository at the top of `directory`, made there (on `main`) when there is
    none; and whether it was made."""
    created = not (directory / ".git").exists()
    if created:
        repo = pygit2.init_repository(str(directory), initial_head="main")
    else:
        repo = pygit2.Repository(str(directory))
    if repo.workdir is None or Path(repo.workdir).resolve() != directory.resolve():
        raise SkylabError(f"{directory} must be the top of its git repository, not a bare or nested path")
    return TrialStore(repo), created


def ignore_locally(store: TrialStore, pattern: str) -> bool:
    """Add `pattern` to .git/info/exclude (this clone's ignore rules, never committed)."""
    exclude = store.git.git_dir / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if pattern in lines:
        return False
    with exclude.open("a") as handle:
        handle.write(pattern + "\n")
    return True


def hooks_dir(store: TrialStore) -> Path:
    """Where git runs this repository's hooks from: core.hooksPath when set, else .git/hooks."""
    config = store.git.repo.config
    configured = config["core.hooksPath"] if "core.hooksPath" in config else None  # noqa: SIM401
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else store.git.root / path
    return store.git.git_dir / "hooks"


def show_notes_in_log(store: TrialStore) -> bool:
    """Add Skylab's notes to notes.displayRef, so plain `git log` shows each trial's result."""
    config = store.git.repo.config
    current = list(config.get_multivar("notes.displayRef")) if "notes.displayRef" in config else []
    # With displayRef set, git warns "notes ref refs/notes/skylab is invalid" on every `git show`
    # and `git log` until the ref exists: it starts as an empty notes commit.
    started = store.start_notes()
    if NOTES_REF in current:
        return started
    config.set_multivar("notes.displayRef", "^$", NOTES_REF)
    return True


def commit_baseline(store: TrialStore, message: str) -> tuple[str, bool]:
    """Commit every file of the work tree on HEAD (unless HEAD holds them already) and make that
    commit the baseline; return (the baseline, whether a commit was made)."""
    repo = store.git.repo
    index = repo.index
    index.add_all()
    index.write()
    tree = index.write_tree()
    unborn = repo.head_is_unborn
    committed = unborn or tree != repo.head.peel(pygit2.Commit).tree_id
    if committed:
        sig = store.git.signature()
        parents = [] if unborn else [repo.head.target]
        repo.create_commit("HEAD", sig, sig, message, tree, parents)
    head = str(repo.head.peel(pygit2.Commit).id)
    store.set_baseline(head)
    return head, committed


def commit_one_file(store: TrialStore, name: str, message: str) -> str:
    """Commit the work tree's `name` on HEAD and nothing else (whatever else is staged or edited
    stays as it was), make that commit the baseline, and return it."""
    repo = store.git.repo
    blob = repo.create_blob_fromworkdir(name)
    head = repo.head.peel(pygit2.Commit)
    builder = repo.TreeBuilder(head.tree)
    builder.insert(name, blob, pygit2.enums.FileMode.BLOB)
    sig = store.git.signature()
    commit = str(repo.create_commit("HEAD", sig, sig, message, builder.write(), [head.id]))
    index = repo.index
    index.read()
    index.add(pygit2.IndexEntry(name, blob, pygit2.enums.FileMode.BLOB))
    index.write()
    store.set_baseline(commit)
    return commit
