"""Repair after a crash: the refs brought back in line with the notes, in the store's order of
writes (see `gitstore`), so a process killed at any point leaves what the next start repairs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from skylab.store.history import best_after_repair, run_tips_to_repair
from skylab.store.refs import run_branch

if TYPE_CHECKING:
    from skylab.store.gitstore import TrialStore


def repair_after_crash(
    store: TrialStore, metric: str, is_better: Callable[[float, float | None], bool], resuming: str | None
) -> list[str]:
    """What was fixed, in words. Trials of this clone's runs without a note become interrupted (a
    teammate's unfinished trial may still be training elsewhere, and a note that cannot be read is
    kept as it is), except the partly measured trials of `resuming`, the run about to continue
    them; a kept trial whose run branch or best was not moved before the crash gets them moved."""
    fixed: list[str] = []
    history = store.load()
    own = store.clone.own_tags()
    for trial in history.trials:
        unfinished = trial.note is None and trial.has_ref and trial.commit not in history.unreadable_notes
        resumed = trial.tag == resuming and store.partial.load(trial.commit) is not None
        if unfinished and trial.tag in own and not resumed:
            store.record_interrupted(trial, metric, "the process recording it stopped before it finished")
            fixed.append(f"trial {trial.name} had no result: recorded as interrupted")
    with store.git.writing():
        history = store.load()
        tips = {tag: store.git.ref_target(run_branch(tag)) for tag in history.tags()}
        for last in run_tips_to_repair(history, tips):
            store.move_run_branch(last.tag, last.commit, f"repair keep {last.name}")
            fixed.append(f"run branch skylab/{last.tag} moved to kept trial {last.name}")
        best = best_after_repair(history, is_better)
        if best is not None and best != store.best():
            store.set_best(best, "repair best")
            fixed.append(f"best moved to {history.by_commit()[best].name}")
    return fixed
