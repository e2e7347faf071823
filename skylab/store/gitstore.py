"""The trial store: every trial is a commit, every result a git note. No database.

The refs it writes are listed in `refs`. Writes are ordered so that a process killed between any two
of them leaves a state the next start reads and repairs: trial ref, then note, then run branch, then
best. A trial ref without a note is an interrupted trial; best and the run branch only ever move to a
trial whose note is already written. All writers take one file lock (`GitRepo.writing`), so writes
from several processes never interleave; it is taken here and in the store package alone. A decision
that reads the run and then writes its result does both under it through `decide` and `settle`.

A TrialStore holds the repository (`git`, reading), what commits change (`changes`), the
researcher's checkout (`checkout`) and the diffs of trials (`diffs`); it writes refs and notes
through `refwrites` alone and loads history through `loading`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import pygit2

from skylab.errors import StoreError
from skylab.store.changes import Changes
from skylab.store.checkout import Checkout
from skylab.store.clone import CloneFiles
from skylab.store.curvestore import CurveStore
from skylab.store.history import History, Trial, find_trial
from skylab.store.historyindex import parse_trial_ref
from skylab.store.loading import HistoryLoader
from skylab.store.notes import Decision, Status, TrialNote
from skylab.store.partial import PartialMeasurements
from skylab.store.refs import (
    BASELINE_REF,
    BEST_REF,
    NOTES_REF,
    TRIALS_PREFIX,
    TrialRef,
    branch_name_problem,
    check_tag,
    run_branch,
    trial_ref,
)
from skylab.store.refwrites import RefWriter
from skylab.store.repair import repair_after_crash
from skylab.store.repository import GitRepo
from skylab.store.teamrefs import TeamRefs
from skylab.store.trialdiffs import TrialDiffs

MAINTENANCE_EVERY = 200  # trials between `git gc --auto` checks


@dataclass(frozen=True)
class RunMoment:
    """A run as one decision reads it, under the store's lock: nothing moves until it is recorded."""

    history: History
    tip: str  # the run branch
    best: str | None


class Recording(Protocol):
    """What a decision records: the trial's note, whether it is the new best of all runs (None: a
    kept trial is), and whether a kept trial moves the run branch."""

    @property
    def note(self) -> TrialNote: ...

    @property
    def new_best(self) -> bool | None: ...

    @property
    def move_branch(self) -> bool: ...


Decided = TypeVar("Decided", bound=Recording)


def trial_commit(
    git: GitRepo, tag: str, number: int, tree: pygit2.Oid | str, parent: str, message: str
) -> str:
    """A commit of `tree` on `parent` whose message ends with the `Skylab-Trial: tag/n` trailer
    (no ref points at it yet)."""
    sig = git.signature()
    summary = message.strip() or "skylab trial"
    text = f"{summary}\n\nSkylab-Trial: {tag}/{number}\n"
    parents = [pygit2.Oid(hex=parent)]
    return str(git.repo.create_commit(None, sig, sig, text, pygit2.Oid(hex=str(tree)), parents))


class TrialStore:
    """Reads and writes trials in one repository. Open it with `TrialStore.open(path)`."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.git = GitRepo(repo)
        self.changes = Changes(repo)
        self.checkout = Checkout(repo, self.changes)
        self.clone = CloneFiles(self.git.skylab_dir)
        self.partial = PartialMeasurements(self.git.skylab_dir / "measuring")
        self._refs = RefWriter(self.git)
        self.notes = HistoryLoader(self.git)  # loads history; the notes as of the last load
        self.diffs = TrialDiffs(self.git, self.notes)
        self.team = TeamRefs(self.git, self._refs)  # a teammate's refs and notes (see sync)
        self.curves = CurveStore(self.git, self._refs)  # the trials' learning curves
        self._last_number: dict[str, int] = {}  # per tag, so numbering a trial is not a full ref scan

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".") -> TrialStore:
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise StoreError(f"{Path(path).resolve()} is not in a git repository (run `skylab init` first)")
        return cls(pygit2.Repository(found))

    # ----- reading -------------------------------------------------------------------------------

    def best(self) -> str | None:
        return self.git.ref_target(BEST_REF)

    def baseline(self) -> str | None:
        return self.git.ref_target(BASELINE_REF)

    def start_point(self) -> str:
        """The commit a new trial starts from: the best trial, else the baseline."""
        start = self.best() or self.baseline()
        if start is None:
            raise StoreError("no baseline: run `skylab init` in this repository first")
        return start

    def trial_refs(self) -> Iterator[TrialRef]:
        for rest, target in self.git.refs_under(TRIALS_PREFIX):
            ref = parse_trial_ref(rest, target)
            if ref is not None:
                yield ref

    def load(self) -> History:
        """History rebuilt from refs and notes alone (see `loading`)."""
        return self.notes.load()

    def note_for(self, commit: str) -> TrialNote | None:
        """The note of `commit`, looked up by itself: reading the whole notes tree for it took 0.18 s
        at 100,000 notes, once a trial in the loop (NoteFormatError when it does not parse)."""
        blob = self.git.note_blob(commit)
        return TrialNote.parse(blob.data.decode("utf-8")) if blob is not None else None

    def resolve_trial(self, spec: str, tag: str | None = None) -> Trial:
        """The trial `spec` names (see `history.find_trial`)."""
        return find_trial(self.load(), spec, tag, self.git.resolve_commit)

    def moment(self, tag: str) -> RunMoment:
        """The run of `tag` now (its branch exists from the start of a run)."""
        tip = self.git.ref_target(run_branch(tag))
        assert tip is not None, "the run branch exists from the start of a run"
        return RunMoment(self.load(), tip, self.best())

    # ----- writing -------------------------------------------------------------------------------

    def decide(self, trial: TrialRef, decision: Callable[[RunMoment], Decided]) -> tuple[RunMoment, Decided]:
        """Under the store's lock: read the run of `trial` as it is now, let `decision` (which writes
        nothing) say what to record, and record it (see `finish_trial`). No other writer moves the
        run, its best or its notes in between."""
        with self.git.writing():
            moment = self.moment(trial.tag)
            decided = decision(moment)
            self.finish_trial(trial, decided.note, decided.new_best, decided.move_branch)
        return moment, decided

    def settle(self, tag: str, settled: Callable[[RunMoment], str], reason: str) -> tuple[str, str]:
        """Under the store's lock: move the run branch of `tag` to where `settled` says it belongs
        now (`reason` for the reflog). Returns (the tip before, the tip after)."""
        with self.git.writing():
            moment = self.moment(tag)
            tip = settled(moment)
            if tip != moment.tip:
                self._refs.set_ref(run_branch(tag), tip, f"skylab: {reason}")
        return moment.tip, tip

    def follow_checkout(self, branch: str, old: str, new: str) -> bool:
        """`branch` moved from `old` to `new`: the researcher's checkout of it that sat clean moves
        along (see `Checkout.follow_checkout`), under the lock, so no move of the branch races it."""
        with self.git.writing():
            return self.checkout.follow_checkout(branch, old, new)

    def maintain(self, loose_refs_limit: int | None = None) -> None:
        """Pack objects and refs when they pile up (see `RefWriter.maintain`)."""
        with self.git.writing():
            self._refs.maintain(loose_refs_limit)

    def repair(
        self, metric: str, is_better: Callable[[float, float | None], bool], resuming: str | None = None
    ) -> list[str]:
        """Bring refs back in line with the notes after a crash; what was fixed, in words (see
        `repair.repair_after_crash`)."""
        with self.git.writing():
            fixed = self._refs.clear_stale_ref_locks()
        return fixed + repair_after_crash(self, metric, is_better, resuming)

    def set_baseline(self, commit: str) -> None:
        with self.git.writing():
            self._refs.set_ref(BASELINE_REF, commit, "skylab: baseline")

    def start_notes(self) -> bool:
        """Point refs/notes/skylab at an empty notes commit when it does not exist yet; whether
        it did that."""
        with self.git.writing():
            if self.git.ref_target(NOTES_REF) is not None:
                return False
            self._refs.write_notes({}, "skylab: notes of this experiment's trials")
            return True

    def ensure_run_branch(self, tag: str, start: str) -> str:
        """The run branch of `tag`, created at `start` when the run is new; returns its tip."""
        with self.git.writing():
            existing = self.git.ref_target(run_branch(tag))
            if existing is not None:
                return existing
            self._refs.set_ref(run_branch(tag), start, f"skylab: start run {tag}")
            return start

    def create_trial(self, tag: str, tree: pygit2.Oid | str, parent: str, message: str) -> TrialRef:
        """Commit `tree` on `parent` as the next trial of `tag`, with a ref of its own.

        The commit message carries a `Skylab-Trial: tag/n` trailer, so two trials never share a
        commit (and so a note) even when they make the same change.
        """
        return self._claim_number(
            tag, lambda number: trial_commit(self.git, tag, number, tree, parent, message)
        )

    def begin_trial(self, tag: str, commit: str) -> TrialRef:
        """Make an existing commit (one made by hand) the next trial of `tag`."""
        with self.git.writing():
            if any(ref.commit == commit for ref in self.trial_refs()) or commit in self.git.read_notes():
                raise StoreError(f"commit {commit[:10]} is already a trial")
            return self._claim_number(tag, lambda number: commit)

    def _claim_number(self, tag: str, make_commit: Callable[[int], str]) -> TrialRef:
        check_tag(tag)
        with self.git.writing():
            self.clone.remember_own_tag(tag)
            if tag not in self._last_number:
                self._last_number[tag] = max((r.number for r in self.trial_refs() if r.tag == tag), default=0)
            while True:
                # Another process may have taken the number since we counted: then try the next.
                number = self._last_number[tag] = self._last_number[tag] + 1
                commit = make_commit(number)
                try:
                    self._refs.set_ref(
                        trial_ref(tag, number), commit, f"skylab: trial {tag}/{number}", force=False
                    )
                except StoreError:
                    continue
                return TrialRef(tag, number, commit)

    def finish_trial(
        self, trial: TrialRef, note: TrialNote, new_best: bool | None = None, move_branch: bool = True
    ) -> None:
        """Record the result; a kept trial then becomes the run's tip (unless not `move_branch`)
        and, when `new_best`, the best.

        The orchestrator decides keep/revert and whether the trial beats the best of all runs
        (default: every kept trial does); the store only records it, note first.
        """
        if (note.tag, note.trial) != (trial.tag, trial.number):
            raise StoreError(f"note for {note.tag}/{note.trial} given to trial {trial.name}")
        kept = note.decision is Decision.KEEP
        with self.git.writing():
            self._refs.write_notes(
                {trial.commit: note.format()}, f"skylab: trial {trial.name} {note.status.value}"
            )
            if kept and move_branch:
                self._refs.set_ref(run_branch(trial.tag), trial.commit, f"skylab: keep {trial.name}")
            if kept and (new_best is None or new_best):
                self._refs.set_ref(BEST_REF, trial.commit, f"skylab: best is {trial.name}")
        self.partial.drop(trial.commit)  # the note holds every measurement now
        if trial.number % MAINTENANCE_EVERY == 0:
            self.maintain()

    def record_batch(
        self,
        tag: str,
        new_refs: list[TrialRef],
        notes: list[tuple[TrialRef, TrialNote]],
        tip: str | None,
        best: str | None,
    ) -> None:
        """Record many finished trials of `tag` at once (an import), in the store's order of writes:
        the `new_refs` in one transaction (all or none: StoreError when one exists), then every
        note in one notes commit, then the run branch at `tip` and the best at `best` (each when
        given). A process killed in between leaves refs without notes, which a second call with
        the same notes and no `new_refs` finishes."""
        check_tag(tag)
        if any(ref.tag != tag for ref in new_refs) or any(
            (note.tag, note.trial) != (ref.tag, ref.number) for ref, note in notes
        ):
            raise StoreError(f"a batch of trials of run {tag} holds another run's trial or note")
        with self.git.writing():
            self.clone.remember_own_tag(tag)
            self._refs.create_refs({trial_ref(r.tag, r.number): r.commit for r in new_refs}, f"skylab: {tag}")
            self._last_number.pop(tag, None)  # counted again on the next trial
            if notes:
                text: dict[str, str | pygit2.Oid] = {ref.commit: note.format() for ref, note in notes}
                self._refs.write_notes(text, f"skylab: {len(notes)} trials of {tag}")
            if tip is not None:
                self._refs.set_ref(run_branch(tag), tip, f"skylab: run {tag} recorded")
            if best is not None:
                self._refs.set_ref(BEST_REF, best, f"skylab: best is {tag}'s")

    def set_best(self, commit: str, reason: str) -> None:
        """Point the best at `commit` (the caller has judged it better)."""
        with self.git.writing():
            self._refs.set_ref(BEST_REF, commit, f"skylab: {reason}")

    def create_branch(self, name: str, commit: str) -> str:
        """An ordinary branch `name` at `commit`, for the researcher's own line of work; never moves
        an existing branch. Returns its full ref name."""
        ref = f"refs/heads/{name}"
        problem = branch_name_problem(name)
        if problem:
            raise StoreError(f"branch {name!r} {problem}")
        with self.git.writing():
            self._refs.set_ref(ref, commit, f"skylab: branch {name}", force=False)
        return ref

    def move_run_branch(self, tag: str, commit: str, reason: str) -> None:
        """Point a run branch at `commit`: a reverted hand commit leaves the kept chain this way."""
        with self.git.writing():
            self._refs.set_ref(run_branch(tag), commit, f"skylab: {reason}")

    def record_interrupted(self, trial: Trial, metric: str, reason: str) -> TrialNote:
        """Write the note of a trial that never finished, so history shows why."""
        parent, description = self.git.commit_summary(trial.commit) or ("", "")
        note = TrialNote.begun(
            trial.tag, trial.number, metric, parent, self.notes.started(trial), description
        )
        note.status, note.other = Status.INTERRUPTED, {"reason": reason} if reason else {}
        with self.git.writing():
            self._refs.write_notes({trial.commit: note.format()}, f"skylab: trial {trial.name} interrupted")
        self.partial.drop(trial.commit)
        return note
