"""How the run's line moves when the best moved elsewhere: the run's best so far, carrying an
overtaken best's change forward, and continuing from a better best of another run. The
orchestrator calls these under its decision lock; they write only through the store."""

from __future__ import annotations

from collections.abc import Mapping

from skylab.loop.jobs import MERGE_FORWARD, Job
from skylab.store.gitstore import TrialStore
from skylab.store.history import Trial
from skylab.store.notes import Status
from skylab.strategy import Proposal


def run_best(store: TrialStore, tip: str, excluding: str, by_commit: Mapping[str, Trial]) -> Trial | None:
    """The run's best now: the newest measured success on the run branch from `tip` back, other
    than `excluding` (the trial being judged)."""
    for commit in store.first_parents(tip):
        known = by_commit.get(commit)
        if (
            commit != excluding
            and known is not None
            and known.status is Status.SUCCESS
            and known.value is not None
        ):
            return known
    return None


def merge_forward_job(
    store: TrialStore, tag: str, job: Job, old_tip: str, by_commit: Mapping[str, Trial]
) -> tuple[Job | None, str]:
    """The kept `job` overtook a best (`old_tip`) it never saw: a new trial carrying what that best
    had added since the job's parent onto the job's commit, to be trained next, and a line saying
    so. (None, why) when the changes conflict or nothing is missing (then the line is empty)."""
    tree, conflicts = store.merge_trees(job.parent, job.trial.commit, old_tip)
    overtaken = by_commit[old_tip].name if old_tip in by_commit else old_tip[:10]
    if tree is None:
        return None, (
            f"trial {job.trial.name} overtook {overtaken}; its change conflicts with "
            f"{overtaken}'s in {', '.join(conflicts)}, so it is not carried forward"
        )
    if tree == store.tree_of(job.trial.commit):
        return None, ""  # nothing of the overtaken best is missing from the trial
    description = f"merge forward: {overtaken}'s change onto {job.trial.name}"
    trial = store.create_trial(tag, tree, job.trial.commit, description)
    changed = sorted(store.diff_paths(job.trial.commit, trial.commit))
    extra = {"merged_from": overtaken}
    forward = Job(trial, job.trial.commit, Proposal(description), changed, MERGE_FORWARD, extra=extra)
    return forward, f"trial {trial.name} queued: {description}"
