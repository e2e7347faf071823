"""Turning what comes next into a job: a strategy's proposal (or the unchanged starting point,
measured first) or a commit the researcher made by hand, committed as a trial with the problems
found before any compute is spent."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from skylab.experiment.config import ExperimentConfig, outside_experiment
from skylab.loop.checks import Problem, current_params, same_change, static_problem
from skylab.loop.forward import HAND_COMMIT, RunLine, kept_base
from skylab.loop.jobs import Job, Worker
from skylab.store.history import History, Trial
from skylab.store.notes import Status
from skylab.strategy import PendingTrial, Proposal, ProposalContext, Strategy

DISCARDED = "discarded"  # the proposal changed files that are not editable: nothing was committed


def proposed_job(
    config: ExperimentConfig,
    strategy: Strategy | None,
    tag: str,
    worker: Worker,
    history: History,
    pending: list[tuple[PendingTrial, str]],
    tip: str,
    tip_trial: Trial | None,
    say: Callable[[str], None],
    remaining: str = "",
) -> Job | str | None:
    """The next proposal from `tip`, committed as a trial of `tag` (a Job); DISCARDED (said with
    `say`); or None when the strategy has nothing left. An unmeasured tip is measured first,
    unchanged."""
    tree_dir = worker.worktree
    tree_dir.reset(tip)
    if tip_trial is None:  # the run starts from a commit never measured: measure it first
        proposal = Proposal("baseline: the starting point, unchanged", current_params(config, tree_dir.path))
    else:
        assert strategy is not None
        context = ProposalContext(
            config,
            history,
            tag,
            tip,
            tip_trial,
            tree_dir.path,
            worker.store.diffs.against_parent,
            partial(trial_log, worker.store.git.root),
            tuple(trial for trial, _ in pending),
            remaining,
        )
        found = strategy.propose(context)
        if found is None:
            return None
        proposal = found
    changed = tree_dir.changed_files()
    outside = [path for path in changed if path not in config.editable_files]
    if outside:
        say(f"discarded a proposal that changed non-editable files: {', '.join(outside)}")
        tree_dir.reset(tip)
        return DISCARDED
    tree = tree_dir.snapshot(changed)
    problem: Problem | None = (Status.DISCARDED, proposal.abandoned) if proposal.abandoned else None
    if problem is not None:
        say(f"discarded, not trained: {proposal.abandoned}")
    problem = problem or static_problem(config.editable_files, tree_dir.path, changed, tip_trial is None)
    if problem is None and changed:
        # The commits of history's trials: the keys of its by-commit map, which it builds once.
        with_tree = partial(worker.store.git.commits_with_tree, commits=history.by_commit())
        problem = same_change(history, pending, str(tree), with_tree)
    trial = worker.store.create_trial(tag, tree, tip, proposal.description)
    name = strategy.name if strategy else "manual"
    notes = dict(proposal.notes)
    return Job(trial, tip, proposal, changed, name, problem, extra=notes, measures_start=tip_trial is None)


def _names(trials: list[Trial], shown: int = 3) -> str:
    """The trials passed over (newest first), oldest first, the first few by name."""
    names = [t.name for t in reversed(trials)]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def trial_log(root: Path, trial: Trial) -> str:
    """The whole log of a trial, from the path its note records ("" when there is none)."""
    name = trial.note.other.get("log", "") if trial.note else ""
    path = root / name
    if not name or outside_experiment(root, name) or not path.is_file():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


def hand_job(config: ExperimentConfig, tag: str, worker: Worker, commit: str, history: History) -> Job | None:
    """A commit the researcher made on the run branch, as the next trial of `tag` (None when it is
    already a trial, unknown, or a root commit).

    A commit on top of trials that were reverted does not carry their changes: its own change
    (the diff from its parent) is applied on the kept trial below them and that is the trial, noted
    `hand_commit: <the researcher's commit>`. When its change needs theirs (the 3-way merge
    conflicts) it is measured as it is, carrying them, and its description says so.
    """
    line = RunLine(history, tag)
    if line.trial(commit) is not None:
        return None
    store = worker.store
    found = store.git.commit_summary(commit)
    if found is None or not found[0]:
        return None
    parent, subject = found
    base, passed = kept_base(store, parent, line)
    extra: dict[str, str] = {}
    problem: Problem | None = None
    if base == parent:
        trial = store.begin_trial(tag, commit)
        description = subject or "hand-made commit"
    else:
        tree, conflicts = store.changes.merge_trees(parent, base, commit)
        names = _names(passed)
        base_trial = line.trial(base)
        base_name = base_trial.name if base_trial else base[:10]
        if tree is None:
            tree = store.git.tree_of(commit)
            assert tree is not None
            them = "it" if len(passed) == 1 else "them"
            how = (
                f"carries reverted {names}, as its change conflicts in {', '.join(conflicts)} without {them}"
            )
        else:
            how = f"applied on {base_name}" + (f", without reverted {names}" if passed else "")
        description = f"{subject or 'hand-made commit'} (hand commit {commit[:10]}, {how})"
        message = f"{description}\n\nHand commit {commit}, rebuilt on {base}."
        trial = store.create_trial(tag, tree, base, message)
        extra[HAND_COMMIT] = commit
        if tree == store.git.tree_of(base):
            problem = (Status.NOOP, f"hand commit {commit[:10]} changes nothing on {base_name}")
    changed = sorted(store.changes.diff_paths(base, trial.commit))
    worker.worktree.reset(trial.commit)
    problem = problem or static_problem(config.editable_files, worker.worktree.path, changed, False)
    return Job(
        trial,
        base,
        Proposal(description),
        changed,
        "manual",
        problem=problem,
        hand_made=True,
        extra=extra,
        source=commit,
    )
