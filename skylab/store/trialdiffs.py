"""Each trial's change as a diff: against the parent its note names, else its commit's first parent.
What the report, `skylab show` and the llm's context read (see `derived.diffcache` for the cache)."""

from __future__ import annotations

import pygit2

from skylab.store.derived.diffcache import cached_diffs
from skylab.store.history import Trial
from skylab.store.loading import HistoryLoader
from skylab.store.reffiles import OBJECT_ID
from skylab.store.repository import GitRepo


class TrialDiffs:
    """The diffs of one repository's trials."""

    def __init__(self, git: GitRepo, loader: HistoryLoader) -> None:
        self.git = git
        self.loader = loader

    def keys(self, trials: list[Trial]) -> list[tuple[str, str]]:
        """(commit, the parent it is diffed against) of each trial: what its diff depends on."""
        return [(trial.commit, self._named_parent(trial)) for trial in trials]

    def against_parent(self, trial: Trial) -> str:
        """The trial's change: against the parent its note names, or (when the note names none, or
        no commit of this repository) against its commit's first parent."""
        return self._diff(trial.commit, self._named_parent(trial))

    def against_parents(self, trials: list[Trial]) -> list[str]:
        """`against_parent` of each trial ("" where its commit cannot be read), from the diff
        cache where it holds them (see `derived.diffcache`)."""
        return cached_diffs(self.git.skylab_dir, self.keys(trials), self._diff)

    def _named_parent(self, trial: Trial) -> str:
        """The parent the trial's note names, when that is a commit here; else ""."""
        named = trial.parent
        if self.loader.known_commit(named):  # a trial's commit: known
            return named
        named = named if OBJECT_ID.fullmatch(named) else ""
        return named if named and self.git.is_commit(named) else ""

    def _diff(self, commit_id: str, named: str) -> str:
        commit = self.git.repo[commit_id].peel(pygit2.Commit)
        parent_id = named or (str(commit.parent_ids[0]) if commit.parent_ids else "")
        if parent_id:
            parent_tree = self.git.repo[parent_id].peel(pygit2.Tree)
            diff = parent_tree.diff_to_tree(commit.tree, context_lines=3)
        else:
            diff = commit.tree.diff_to_tree(swap=True)
        return str(diff.patch or "")
