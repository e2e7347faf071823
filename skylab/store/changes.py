"""What commits change, as the loop and the studies read it: diffs between two commits' trees, the
files in them, and 3-way merges and reverts of trees. Reads objects and writes trees (never a
commit or a ref)."""

from __future__ import annotations

import pygit2


class Changes:
    """The changes between commits of one repository."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo

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
