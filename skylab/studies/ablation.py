"""Ablation: which of the kept changes on the way to a trial really mattered.

For each kept change on the chain from the run's starting point to the trial, the trial is built
with that one change undone (a 3-way revert, so later changes that touched the same lines stay as
long as they do not conflict) and measured like the trial was (as many times, the same seeds).
A change's contribution is how much worse the trial gets without it; a change whose removal is not
worse beyond the run's noise bar did not earn its place, and `prune_job` builds the simpler trial
without all such changes, to be judged as an ordinary candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig
from skylab.loop.evidence import Rules
from skylab.loop.jobs import Job
from skylab.loop.judge import sigma_of
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.store.notes import Status
from skylab.studies.common import (
    ABLATION,
    PRUNE,
    Gap,
    gap,
    measured,
    require_measured,
    run_start,
    studied_trial,
    study_job,
)


def kept_changes(history: History, trial: Trial) -> list[Trial]:
    """The kept changes on `trial`'s chain after the run's starting point, oldest first (`trial`
    itself last, when it is kept)."""
    _, changes = run_start(history, trial)
    return [change for change in changes if change.kept or change.commit == trial.commit]


def check_ablation(history: History, trial: Trial) -> list[Trial]:
    """The kept changes `trial` can be ablated of; a one-line error when it cannot be."""
    require_measured(trial)
    changes = kept_changes(history, trial)
    if not changes:
        raise SkylabError(f"trial {trial.name} has no kept change after its run's starting point to ablate")
    return changes


def ablation_jobs(
    store: TrialStore, config: ExperimentConfig, history: History, trial: Trial
) -> tuple[list[Job], list[str]]:
    """One trial per kept change: `trial` with that change reverted, committed on `trial`; and a
    line for each change skipped (its revert conflicts, or undoes nothing) or already measured (an
    earlier ablation of the same tree, finished and measured as often: it is reused, not retrained)."""
    changes = check_ablation(history, trial)
    wanted = len(require_measured(trial))
    done = latest_ablations(history, trial)
    jobs, skipped = [], []
    for change in changes:
        tree, conflicts = store.changes.revert_onto(trial.commit, [(change.commit, change.parent)])
        if tree is None:
            skipped.append(
                f"{change.name}: undoing it conflicts with later changes in {', '.join(conflicts)}; skipped"
            )
            continue
        if tree == store.git.tree_of(trial.commit):
            skipped.append(f"{change.name}: undoing it changes nothing in {trial.name}; skipped")
            continue
        earlier = done.get(change.name)
        if earlier is not None and _finished(earlier, wanted) and store.git.tree_of(earlier.commit) == tree:
            skipped.append(f"{change.name}: measured without it already as {earlier.name}; reused")
            continue
        what = change.note.description if change.note else ""
        description = f"ablation: {trial.name} without {change.name}" + (f" ({what})" if what else "")
        extra = {"ablates": change.name, "ablation_of": trial.name}
        jobs.append(
            study_job(store, config, trial.tag, tree, trial.commit, description, ABLATION, extra, wanted)
        )
    return jobs, skipped


@dataclass(frozen=True)
class Contribution:
    """What one kept change contributed to a trial, from its ablation."""

    change: str  # the kept trial whose change it is
    description: str
    ablation: str  # the trial measured without it
    status: str  # the ablation's status
    gap: Gap | None  # how much better the trial is than without the change (None: it failed)

    @property
    def flagged(self) -> bool:
        """Removing it is not worse beyond noise: the change did not earn its place."""
        return self.gap is not None and not self.gap.beyond_noise()

    def verdict(self) -> str:
        if self.gap is None:
            return f"needed: without it the trial ends in {self.status}"
        if self.gap.beyond_noise():
            return "helps, beyond noise"
        if self.gap.worse_beyond_noise():
            return "hurts: the trial is better without it"
        return "within noise: the trial is no worse without it"


def latest_ablations(history: History, trial: Trial) -> dict[str, Trial]:
    """The latest ablation of `trial` of each change it was ablated of, by the change's name."""
    latest: dict[str, Trial] = {}
    for candidate in history.trials:  # in start order: a later ablation of a change replaces one
        note = candidate.note
        if note is not None and note.strategy == ABLATION and studied_trial(note) == trial.name:
            latest[note.other.get("ablates", "")] = candidate
    return latest


def _finished(ablation: Trial, wanted: int) -> bool:
    """An ablation that needs no retraining: it failed (a finding), or it has every measurement."""
    note = ablation.note
    if note is None or note.status is Status.INTERRUPTED:
        return False
    return note.status is not Status.SUCCESS or len(measured(ablation)) >= wanted


def contributions(history: History, trial: Trial, rules: Rules) -> list[Contribution]:
    """The contribution of each kept change ablated from `trial` (its latest ablation each), most
    important first: failures without the change, then by how much worse the trial gets without
    it. Empty when `trial` was never ablated. Pure."""
    base = measured(trial)
    if not base:
        return []
    by_name = {t.name: t for t in history.trials}
    latest = latest_ablations(history, trial)
    sigma = sigma_of(t.note for t in history.for_tag(trial.tag))
    found = []
    for name, ablation in latest.items():
        changed = by_name.get(name)
        values = measured(ablation)
        found.append(
            Contribution(
                name,
                changed.note.description if changed is not None and changed.note is not None else "",
                ablation.name,
                ablation.status.value,
                gap(base, values, sigma, rules) if values else None,
            )
        )
    return sorted(found, key=lambda c: (c.gap is not None, -(c.gap.gain if c.gap else 0.0)))


def prune_job(
    store: TrialStore, config: ExperimentConfig, trial: Trial, flagged: list[Contribution]
) -> tuple[Job | None, str]:
    """The candidate `trial` without every flagged change (undone newest first), committed on
    `trial` and judged as an ordinary trial (equal and simpler is a keep); (None, why) when undoing
    them together conflicts."""
    by_name = {t.name: t for t in store.load().trials}
    changes = [by_name[c.change] for c in flagged if c.change in by_name]
    changes.sort(key=lambda t: t.number, reverse=True)
    tree, conflicts = store.changes.revert_onto(trial.commit, [(t.commit, t.parent) for t in changes])
    names = ", ".join(t.name for t in changes)
    if tree is None:
        return None, f"undoing {names} together conflicts in {', '.join(conflicts)}: no pruned trial"
    description = f"prune: {trial.name} without {names}, which did not help beyond noise"
    extra = {"prunes": names}
    job = study_job(
        store, config, trial.tag, tree, trial.commit, description, PRUNE, extra, None, candidate=True
    )
    return job, f"trial {job.trial.name}: {description}"
