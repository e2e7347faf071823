"""The trial store: every trial is a commit, every result a git note. No database.

The refs it writes are listed in `refs`. Writes are ordered so that a process killed between any two
of them leaves a state the next start reads and repairs: trial ref, then note, then run branch, then
best. A trial ref without a note is an interrupted trial; best and the run branch only ever move to a
trial whose note is already written. All writers take one file lock (`GitRepo.writing`), so writes
from several processes never interleave.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

import pygit2

from skylab.errors import StoreError
from skylab.store.clone import CloneFiles
from skylab.store.collector import collector_paused
from skylab.store.derived.diffcache import cached_diffs
from skylab.store.derived.historycache import SAVE_AFTER, load_snapshot, save_due, save_snapshot
from skylab.store.derived.snapshot import NotesSnapshot
from skylab.store.history import (
    History,
    Trial,
    best_after_repair,
    find_trial,
    run_tips_to_repair,
)
from skylab.store.historyindex import HistoryIndex, parse_trial_ref
from skylab.store.notemerge import notes_to_take
from skylab.store.notes import Decision, NoteFormatError, Status, TrialNote, iso_utc
from skylab.store.partial import PartialMeasurements
from skylab.store.reffiles import OBJECT_ID
from skylab.store.refs import (
    BASELINE_REF,
    BEST_REF,
    NOTES_REF,
    STAGING_PREFIX,
    TRIALS_PREFIX,
    TrialRef,
    branch_name_problem,
    check_tag,
    run_branch,
    trial_ref,
)
from skylab.store.repository import GitRepo

MAINTENANCE_EVERY = 200  # trials between `git gc --auto` checks


class TrialStore(GitRepo):
    """Reads and writes trials in one repository. Open it with `TrialStore.open(path)`."""

    def __init__(self, repo: pygit2.Repository) -> None:
        super().__init__(repo)
        self.clone = CloneFiles(self.skylab_dir)
        self.partial = PartialMeasurements(self.skylab_dir / "measuring")
        self._last_number: dict[str, int] = {}  # per tag, so numbering a trial is not a full ref scan
        self._snapshot: NotesSnapshot | None = None  # the parsed notes as of the last load
        self._index: HistoryIndex | None = None  # history as of the last load, built on _snapshot

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".") -> TrialStore:
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise StoreError(f"{Path(path).resolve()} is not in a git repository (run `skylab init` first)")
        return cls(pygit2.Repository(found))

    # ----- reading -------------------------------------------------------------------------------

    def best(self) -> str | None:
        return self.ref_target(BEST_REF)

    def baseline(self) -> str | None:
        return self.ref_target(BASELINE_REF)

    def start_point(self) -> str:
        """The commit a new trial starts from: the best trial, else the baseline."""
        start = self.best() or self.baseline()
        if start is None:
            raise StoreError("no baseline: run `skylab init` in this repository first")
        return start

    def trial_refs(self) -> Iterator[TrialRef]:
        for rest, target in self.refs_under(TRIALS_PREFIX):
            ref = parse_trial_ref(rest, target)
            if ref is not None:
                yield ref

    def note_versions(self, trials: list[Trial]) -> list[str]:
        """For each trial, an id that changes whenever its note does (the note's blob id; "" for
        no note), as of the last load: a key for what is derived from notes."""
        known = self.note_versions_by_commit()
        return [known.get(trial.commit, "") for trial in trials]

    def note_versions_by_commit(self) -> Mapping[str, str]:
        """`note_versions` for every annotated commit (as of the last load), by commit."""
        return MappingProxyType(self._snapshot.blob_ids if self._snapshot is not None else {})

    def notes_as_written(self, trials: list[Trial]) -> list[str | None]:
        """Each trial's note as git holds it (None: no note), as of the last load: the text a
        reader of `git notes --ref=skylab show` sees, hand edits included."""
        texts: list[str | None] = []
        for blob_id in self.note_versions(trials):
            blob = self.repo.get(blob_id) if blob_id else None
            texts.append(blob.data.decode("utf-8", "replace") if isinstance(blob, pygit2.Blob) else None)
        return texts

    def diff_keys(self, trials: list[Trial]) -> list[tuple[str, str]]:
        """(commit, the parent it is diffed against) of each trial: what its diff depends on."""
        return [(trial.commit, self._named_parent(trial)) for trial in trials]

    def note_for(self, commit: str) -> TrialNote | None:
        """The note of `commit`, looked up by itself: reading the whole notes tree for it took 0.18 s
        at 100,000 notes, once a trial in the loop (NoteFormatError when it does not parse)."""
        try:
            blob = self.repo[self.repo.lookup_note(commit, NOTES_REF).id]
        except (KeyError, ValueError, pygit2.GitError):  # no note, no notes ref, or no commit id
            return None
        return TrialNote.parse(blob.data.decode("utf-8")) if isinstance(blob, pygit2.Blob) else None

    def load(self) -> History:
        """History rebuilt from refs and notes alone (see `historyindex` for the rules).
        The notes come parsed from the history cache, brought up to date with the notes that
        changed since it was built (see `historycache`).

        The first load of a handle builds all of history, a million small objects at 100,000
        trials: they are frozen out of the garbage collector's sight once built (`gc.freeze`), or
        its next pass would walk them all (0.3 s) only to find no garbage, and every later full
        pass again. Later loads add the few objects of the new trials and freeze nothing, so a
        long run leaks nothing: objects freed later are freed by reference counting, as history
        holds no reference cycles."""
        with collector_paused(freeze=self._index is None):
            return self._load()

    def _load(self) -> History:
        snapshot, changed = self._notes_snapshot()

        def is_commit(sha: str) -> bool:
            if sha in snapshot.commits:
                return True
            found = self.is_commit(sha)
            if found:
                snapshot.commits.add(sha)
                snapshot.unsaved += 1
            return found

        image, snapshot.image = snapshot.image, None
        if self._index is None and changed is not None and image is not None:
            # A new handle on a cache file that holds history: start from it (see IndexImage).
            self._index = HistoryIndex.restored(image, snapshot.notes, is_commit, self._started)
            self.seed_ref_layers(TRIALS_PREFIX, image.refs)
        elif self._index is None or changed is None:
            self._index, changed = HistoryIndex(is_commit, self._started), None
        self._index.update(self.ref_layers(TRIALS_PREFIX), snapshot.notes, snapshot.unreadable, changed)
        if save_due(snapshot.unsaved, len(snapshot.notes), SAVE_AFTER):
            save_snapshot(self.skylab_dir, snapshot, self._index.image())
        return self._index.history(self.best(), self.baseline())

    def _notes_snapshot(self) -> tuple[NotesSnapshot, set[str] | None]:
        """The parsed notes of the notes ref now: this handle's snapshot or the cache file's, with
        the notes that changed since parsed; everything parsed afresh when neither can be used.
        Also the commits whose notes changed since the snapshot it started from (this handle's
        last, or the cache file's); None when everything was parsed afresh."""
        current = self.ref_target(NOTES_REF)
        ours = self._snapshot
        snapshot = ours or load_snapshot(self.skylab_dir)
        changed = None if snapshot is None else self._catch_up(snapshot, current)
        if snapshot is None or changed is None:
            snapshot = NotesSnapshot(current)
            self._parse_into(snapshot, self.read_notes(current))
        self._snapshot = snapshot
        return snapshot, changed

    def _catch_up(self, snapshot: NotesSnapshot, current: str | None) -> set[str] | None:
        """Bring `snapshot` to the notes commit `current` by the notes that differ between the two
        trees; return their commits, or None when that cannot be done (another fan-out, a notes
        commit gone)."""
        if snapshot.notes_commit == current:
            return set()
        if current is None or snapshot.notes_commit is None or not self.is_commit(snapshot.notes_commit):
            return None
        changed = self.notes_changed(snapshot.notes_commit, current)
        if changed is None:
            return None
        for commit, _blob in changed.items():
            snapshot.notes.pop(commit, None)
            snapshot.unreadable.pop(commit, None)
            snapshot.blob_ids.pop(commit, None)
        self._parse_into(snapshot, {c: b for c, b in changed.items() if b is not None})
        snapshot.notes_commit = current
        return set(changed)

    @staticmethod
    def _parse_into(snapshot: NotesSnapshot, blobs: dict[str, pygit2.Blob]) -> None:
        for commit, blob in blobs.items():
            snapshot.blob_ids[commit] = str(blob.id)
            try:
                snapshot.notes[commit] = TrialNote.parse(blob.data.decode("utf-8", "replace"))
            except NoteFormatError as exc:
                snapshot.unreadable[commit] = str(exc)
        snapshot.unsaved += len(blobs)

    def _started(self, trial: Trial) -> str:
        if trial.note and trial.note.started_at:
            return trial.note.started_at
        commit = self._commit(trial.commit)
        if commit is None:
            return ""
        return iso_utc(datetime.fromtimestamp(commit.commit_time, timezone.utc))

    def resolve_trial(self, spec: str, tag: str | None = None) -> Trial:
        """The trial `spec` names (see `history.find_trial`)."""
        return find_trial(self.load(), spec, tag, self.resolve_commit)

    def diff_against_parent(self, trial: Trial) -> str:
        """The trial's change: against the parent its note names, or (when the note names none, or
        no commit of this repository) against its commit's first parent."""
        return self._diff(trial.commit, self._named_parent(trial))

    def diffs_against_parents(self, trials: list[Trial]) -> list[str]:
        """`diff_against_parent` of each trial ("" where its commit cannot be read), from the diff
        cache where it holds them (see `derived.diffcache`)."""
        return cached_diffs(self.skylab_dir, self.diff_keys(trials), self._diff)

    def _named_parent(self, trial: Trial) -> str:
        """The parent the trial's note names, when that is a commit here; else ""."""
        named = trial.parent
        if self._snapshot is not None and named in self._snapshot.commits:  # a trial's commit: known
            return named
        named = named if OBJECT_ID.fullmatch(named) else ""
        return named if named and self._commit(named) is not None else ""

    def _diff(self, commit_id: str, named: str) -> str:
        commit = self.repo[commit_id].peel(pygit2.Commit)
        parent_id = named or (str(commit.parent_ids[0]) if commit.parent_ids else "")
        if parent_id:
            parent_tree = self.repo[parent_id].peel(pygit2.Tree)
            diff = parent_tree.diff_to_tree(commit.tree, context_lines=3)
        else:
            diff = commit.tree.diff_to_tree(swap=True)
        return str(diff.patch or "")

    # ----- writing -------------------------------------------------------------------------------

    def set_baseline(self, commit: str) -> None:
        with self.writing():
            self._set_ref(BASELINE_REF, commit, "skylab: baseline")

    def start_notes(self) -> bool:
        """Point refs/notes/skylab at an empty notes commit when it does not exist yet; whether
        it did that."""
        with self.writing():
            if self.ref_target(NOTES_REF) is not None:
                return False
            self._write_notes({}, "skylab: notes of this experiment's trials")
            return True

    def ensure_run_branch(self, tag: str, start: str) -> str:
        """The run branch of `tag`, created at `start` when the run is new; returns its tip."""
        with self.writing():
            existing = self.ref_target(run_branch(tag))
            if existing is not None:
                return existing
            self._set_ref(run_branch(tag), start, f"skylab: start run {tag}")
            return start

    def create_trial(self, tag: str, tree: pygit2.Oid | str, parent: str, message: str) -> TrialRef:
        """Commit `tree` on `parent` as the next trial of `tag`, with a ref of its own.

        The commit message carries a `Skylab-Trial: tag/n` trailer, so two trials never share a
        commit (and so a note) even when they make the same change.
        """
        return self._claim_number(tag, lambda number: self.trial_commit(tag, number, tree, parent, message))

    def trial_commit(self, tag: str, number: int, tree: pygit2.Oid | str, parent: str, message: str) -> str:
        """A commit of `tree` on `parent` whose message ends with the `Skylab-Trial: tag/n` trailer
        (no ref points at it yet)."""
        sig = self.signature()
        summary = message.strip() or "skylab trial"
        text = f"{summary}\n\nSkylab-Trial: {tag}/{number}\n"
        parents = [pygit2.Oid(hex=parent)]
        return str(self.repo.create_commit(None, sig, sig, text, pygit2.Oid(hex=str(tree)), parents))

    def begin_trial(self, tag: str, commit: str) -> TrialRef:
        """Make an existing commit (one made by hand) the next trial of `tag`."""
        with self.writing():
            if any(ref.commit == commit for ref in self.trial_refs()) or commit in self.read_notes():
                raise StoreError(f"commit {commit[:10]} is already a trial")
            return self._claim_number(tag, lambda number: commit)

    def _claim_number(self, tag: str, make_commit: Callable[[int], str]) -> TrialRef:
        check_tag(tag)
        with self.writing():
            self.clone.remember_own_tag(tag)
            if tag not in self._last_number:
                self._last_number[tag] = max((r.number for r in self.trial_refs() if r.tag == tag), default=0)
            while True:
                # Another process may have taken the number since we counted: then try the next.
                number = self._last_number[tag] = self._last_number[tag] + 1
                commit = make_commit(number)
                try:
                    self._set_ref(
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
        with self.writing():
            self._write_notes(
                {trial.commit: note.format()}, f"skylab: trial {trial.name} {note.status.value}"
            )
            if kept and move_branch:
                self._set_ref(run_branch(trial.tag), trial.commit, f"skylab: keep {trial.name}")
            if kept and (new_best is None or new_best):
                self._set_ref(BEST_REF, trial.commit, f"skylab: best is {trial.name}")
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
        with self.writing():
            self.clone.remember_own_tag(tag)
            self._create_refs({trial_ref(r.tag, r.number): r.commit for r in new_refs}, f"skylab: {tag}")
            self._last_number.pop(tag, None)  # counted again on the next trial
            if notes:
                text: dict[str, str | pygit2.Oid] = {ref.commit: note.format() for ref, note in notes}
                self._write_notes(text, f"skylab: {len(notes)} trials of {tag}")
            if tip is not None:
                self._set_ref(run_branch(tag), tip, f"skylab: run {tag} recorded")
            if best is not None:
                self._set_ref(BEST_REF, best, f"skylab: best is {tag}'s")

    def adopt_trial_refs(self, refs: dict[str, str]) -> None:
        """Create the trial refs `tag/n` -> commit (a teammate's) in one transaction, all or none;
        never moves an existing one (StoreError then). One `git update-ref` for the lot: a first
        pull of 100,000 trials adopted them one libgit2 write at a time, over a minute."""
        with self.writing():
            self._create_refs({TRIALS_PREFIX + name: commit for name, commit in refs.items()}, "skylab: pull")

    def track_remote_refs(self, refs: dict[str, str]) -> None:
        """Point refs under the staging namespace (a remote's refs as we last saw them) at the
        given commits, in one transaction; as git moves its remote-tracking refs after a push."""
        assert all(name.startswith(STAGING_PREFIX) for name in refs)
        with self.writing():
            self._update_refs(refs, "skylab: push")

    def forget_remote_refs(self, folder: str) -> None:
        """Delete every ref under `folder` of the staging namespace, in one transaction."""
        assert folder.startswith(STAGING_PREFIX) and folder.endswith("/")
        self.drop_staged_refs([folder + rest for rest, _ in self.refs_under(folder)])

    def drop_staged_refs(self, names: list[str]) -> None:
        """Delete these refs of the staging namespace, in one transaction."""
        assert all(name.startswith(STAGING_PREFIX) for name in names)
        with self.writing():
            self._ref_transaction("".join(f"delete {name}\0\0" for name in names), "skylab: sync")

    def set_best(self, commit: str, reason: str) -> None:
        """Point the best at `commit` (the caller has judged it better)."""
        with self.writing():
            self._set_ref(BEST_REF, commit, f"skylab: {reason}")

    def create_branch(self, name: str, commit: str) -> str:
        """An ordinary branch `name` at `commit`, for the researcher's own line of work; never moves
        an existing branch. Returns its full ref name."""
        ref = f"refs/heads/{name}"
        problem = branch_name_problem(name)
        if problem:
            raise StoreError(f"branch {name!r} {problem}")
        with self.writing():
            self._set_ref(ref, commit, f"skylab: branch {name}", force=False)
        return ref

    def move_run_branch(self, tag: str, commit: str, reason: str) -> None:
        """Point a run branch at `commit`: a reverted hand commit leaves the kept chain this way."""
        with self.writing():
            self._set_ref(run_branch(tag), commit, f"skylab: {reason}")

    def record_interrupted(self, trial: Trial, metric: str, reason: str) -> TrialNote:
        """Write the note of a trial that never finished, so history shows why."""
        parent, description = self.commit_summary(trial.commit) or ("", "")
        note = TrialNote.begun(trial.tag, trial.number, metric, parent, self._started(trial), description)
        note.status, note.other = Status.INTERRUPTED, {"reason": reason} if reason else {}
        with self.writing():
            self._write_notes({trial.commit: note.format()}, f"skylab: trial {trial.name} interrupted")
        self.partial.drop(trial.commit)
        return note

    def repair(
        self, metric: str, is_better: Callable[[float, float | None], bool], resuming: str | None = None
    ) -> list[str]:
        """Bring refs back in line with the notes after a crash; return what was fixed, in words.

        Trials of this clone's runs without a note become interrupted (a teammate's unfinished trial
        may still be training elsewhere, and a note that cannot be read is kept as it is), except
        the partly measured trials of `resuming`, the run about to continue them; a kept trial whose
        run branch or best was not moved before the crash gets them moved now.
        """
        fixed = self.clear_stale_ref_locks()
        history = self.load()
        own = self.clone.own_tags()
        for trial in history.trials:
            unfinished = trial.note is None and trial.has_ref and trial.commit not in history.unreadable_notes
            resumed = trial.tag == resuming and self.partial.load(trial.commit) is not None
            if unfinished and trial.tag in own and not resumed:
                self.record_interrupted(trial, metric, "the process recording it stopped before it finished")
                fixed.append(f"trial {trial.name} had no result: recorded as interrupted")
        history = self.load()
        tips = {tag: self.ref_target(run_branch(tag)) for tag in history.tags()}
        with self.writing():
            for last in run_tips_to_repair(history, tips):
                self._set_ref(run_branch(last.tag), last.commit, f"skylab: repair keep {last.name}")
                fixed.append(f"run branch skylab/{last.tag} moved to kept trial {last.name}")
            best = best_after_repair(history, is_better)
            if best is not None and best != self.best():
                self._set_ref(BEST_REF, best, "skylab: repair best")
                fixed.append(f"best moved to {history.by_commit()[best].name}")
        return fixed

    def merge_notes(self, other: str | None) -> tuple[int, list[str]]:
        """Bring in the notes of another notes commit (a teammate's); return (added, conflicts).

        Note by note, never by fast-forward: a note we have is never removed or replaced by the
        teammate's version, even when their notes history descends from ours (they may have
        deleted or edited it), except that a trial's own finished note replaces an `interrupted`
        note of the same trial. Other differences keep the local note and are reported as
        conflicts. The result is a merge commit with both histories as parents, so a later push
        fast-forwards the remote.
        """
        with self.writing():
            local = self.ref_target(NOTES_REF)
            if other is None or other == local:
                return 0, []
            if local is not None and self.descends_from(local, other):
                return 0, []
            theirs = self.read_notes(other)
            if local is None:
                self._set_ref(NOTES_REF, other, "skylab: notes from the remote")
                return len(theirs), []
            take, conflicts = notes_to_take(self.read_notes(local), theirs)
            self._write_notes(dict(take), f"skylab: merge {len(take)} notes", merge_parent=other)
            return len(take), conflicts
