"""How the run's line moves when the best moved elsewhere: the run's best so far, carrying an
overtaken best's change forward, and continuing from a better best of another run. The
orchestrator calls these under its decision lock; they write only through the store."""

from __future__ import annotations

from collections.abc import Mapping

from skylab.loop.jobs import MERGE_FORWARD, Job
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.store.notes import Status
from skylab.strategy import Proposal

HAND_COMMIT = "hand_commit"  # the note key of a trial rebuilt from a hand commit: that commit's id


class RunLine:
    """A run branch's commits read as trials: a commit is a trial, or a hand commit that a trial
    was rebuilt from (see proposals.hand_job), which stands for that trial."""

    def __init__(self, history: History, tag: str) -> None:
        self.by_commit = history.by_commit()
        self._history, self._tag = history, tag
        self._sources: dict[str, Trial] | None = None  # built the first time a commit is no trial

    def trial(self, commit: str) -> Trial | None:
        found = self.by_commit.get(commit)
        if found is not None:
            return found
        if self._sources is None:
            self._sources = {
                t.note.other[HAND_COMMIT]: t
                for t in self._history.for_tag(self._tag)
                if t.note is not None and HAND_COMMIT in t.note.other
            }
        return self._sources.get(commit)


def run_best(
    store: TrialStore, tip: str, excluding: str, line: RunLine, metric: str | None = None
) -> Trial | None:
    """The run's best now: the newest kept, measured success on the run branch from `tip` back,
    other than `excluding` (the trial being judged), and with `metric` its note's metric when
    given. A trial that was not kept (a hand commit below one not yet judged) is never what a
    trial is judged against, nor one that measured another metric (experiment.toml's changed)."""
    for commit in store.git.first_parents(tip):
        known = line.trial(commit)
        if (
            known is not None
            and known.commit != excluding
            and known.kept
            and known.status is Status.SUCCESS
            and known.value is not None
            and (metric is None or (known.note is not None and known.note.metric == metric))
        ):
            return known
    return None


def kept_base(store: TrialStore, commit: str, line: RunLine) -> tuple[str, list[Trial]]:
    """What `commit` stands on once every change below it that was not kept is left out: the
    first commit of its first-parent chain (itself included) that is a kept trial (or a hand
    commit rebuilt as one: then that trial), or no trial at all (the run's starting point); and
    the trials passed over on the way (reverted, failed or never finished), newest first."""
    passed: list[Trial] = []
    for step in store.git.first_parents(commit):
        trial = line.trial(step)
        if trial is None:
            return step, passed
        if trial.kept:
            return trial.commit, passed
        passed.append(trial)
    raise AssertionError(f"{commit[:10]}'s history holds nothing but trials that were not kept")


def settled_tip(store: TrialStore, tip: str, line: RunLine, queued: set[str]) -> str:
    """Where the run branch belongs when it ends at `tip`: at `tip` while that is kept, no trial,
    or a hand commit still waiting to be trained (or training); otherwise at its kept base, so at
    rest the branch is a chain of kept trials."""
    for step in store.git.first_parents(tip):
        if step in queued:
            return tip
        trial = line.trial(step)
        if trial is None or trial.kept:
            return tip if step == tip else (trial.commit if trial else step)
        if trial.note is None:
            return tip  # still training
    return tip


def merge_forward_job(
    store: TrialStore, tag: str, job: Job, old_tip: str, by_commit: Mapping[str, Trial]
) -> tuple[Job | None, str]:
    """The kept `job` overtook a best (`old_tip`) it never saw: a new trial carrying what that best
    had added since the job's parent onto the job's commit, to be trained next, and a line saying
    so. (None, why) when the changes conflict or nothing is missing (then the line is empty)."""
    tree, conflicts = store.changes.merge_trees(job.parent, job.trial.commit, old_tip)
    overtaken = by_commit[old_tip].name if old_tip in by_commit else old_tip[:10]
    if tree is None:
        return None, (
            f"trial {job.trial.name} overtook {overtaken}; its change conflicts with "
            f"{overtaken}'s in {', '.join(conflicts)}, so it is not carried forward"
        )
    if tree == store.git.tree_of(job.trial.commit):
        return None, ""  # nothing of the overtaken best is missing from the trial
    description = f"merge forward: {overtaken}'s change onto {job.trial.name}"
    trial = store.create_trial(tag, tree, job.trial.commit, description)
    changed = sorted(store.changes.diff_paths(job.trial.commit, trial.commit))
    extra = {"merged_from": overtaken}
    forward = Job(trial, job.trial.commit, Proposal(description), changed, MERGE_FORWARD, extra=extra)
    return forward, f"trial {trial.name} queued: {description}"
