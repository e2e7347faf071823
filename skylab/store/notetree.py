"""The notes tree git keeps under refs/notes/skylab: read with any fan-out, written with a
2-hex-character fan-out (as git itself does for many notes). Plain functions over pygit2 objects."""

from __future__ import annotations

import pygit2


def read_notes_tree(tree: pygit2.Tree) -> dict[str, pygit2.Blob]:
    """Annotated commit -> note blob, walking the tree at any fan-out depth."""
    found: dict[str, pygit2.Blob] = {}
    flat: dict[str, pygit2.Blob] = {}

    def walk(tree: pygit2.Tree, prefix: str) -> None:
        for entry in tree:
            name = prefix + (entry.name or "")
            if isinstance(entry, pygit2.Tree):
                walk(entry, name)
            elif isinstance(entry, pygit2.Blob) and len(name) in (40, 64):
                # A note git wrote without fan-out loses to ours for the same commit.
                (flat if not prefix else found)[name] = entry

    walk(tree, "")
    for commit, blob in flat.items():
        found.setdefault(commit, blob)
    return found


def notes_tree_changes(old: pygit2.Tree, new: pygit2.Tree) -> dict[str, pygit2.Blob | None] | None:
    """The notes that differ between two notes trees: annotated commit -> its note blob in `new`
    (None: removed). None when a changed note sits outside the 2-character fan-out Skylab writes
    (git's own flat notes, a deeper fan-out), where only a full read gives the right answer.

    Why not libgit2's tree diff: it walks every entry of both trees, even under subtrees whose ids
    are equal, 0.1 s at 100,000 notes for the one note a trial adds. Here a fan-out subtree is
    opened only when its id changed, so the cost follows the notes that changed."""
    changed: dict[str, pygit2.Blob | None] = {}
    old_top, new_top = _entries(old), _entries(new)
    for prefix in old_top.keys() | new_top.keys():
        before, after = old_top.get(prefix), new_top.get(prefix)
        if before is not None and after is not None and before.id == after.id:
            continue
        if len(prefix) != 2 or not all(e is None or isinstance(e, pygit2.Tree) for e in (before, after)):
            return None
        old_notes = _entries(before) if isinstance(before, pygit2.Tree) else {}
        new_notes = _entries(after) if isinstance(after, pygit2.Tree) else {}
        for rest in old_notes.keys() | new_notes.keys():
            was, now = old_notes.get(rest), new_notes.get(rest)
            if was is not None and now is not None and was.id == now.id:
                continue
            deeper = isinstance(was, pygit2.Tree) or isinstance(now, pygit2.Tree)
            if deeper or len(prefix + rest) not in (40, 64):
                return None
            changed[prefix + rest] = now.peel(pygit2.Blob) if now is not None else None
    return changed


def _entries(tree: pygit2.Tree) -> dict[str, pygit2.Object]:
    return {entry.name or "": entry for entry in tree}


def notes_tree(
    repo: pygit2.Repository, base: pygit2.Tree | None, notes: dict[str, str | pygit2.Oid]
) -> pygit2.Oid:
    """`base` with `notes` (annotated commit -> text or blob id) added or replaced, fanned out by
    the commit's first two hex characters; a flat note git wrote for the same commit is dropped."""
    by_prefix: dict[str, list[tuple[str, pygit2.Oid]]] = {}
    for commit, content in notes.items():
        blob = content if isinstance(content, pygit2.Oid) else repo.create_blob(content.encode())
        by_prefix.setdefault(commit[:2], []).append((commit[2:], blob))
    root = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    for prefix, entries in by_prefix.items():
        existing = base[prefix] if base is not None and prefix in base else None
        sub = repo.TreeBuilder(existing) if isinstance(existing, pygit2.Tree) else repo.TreeBuilder()
        for rest, blob in entries:
            sub.insert(rest, blob, pygit2.GIT_FILEMODE_BLOB)
            if base is not None and prefix + rest in base:
                root.remove(prefix + rest)
        root.insert(prefix, sub.write(), pygit2.GIT_FILEMODE_TREE)
    return root.write()
