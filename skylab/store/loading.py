"""Loading history: the parsed notes of the notes ref, kept and brought up to date between loads,
and the history built from them and the trial refs (see `historyindex` for the rules, and
`derived.historycache` for what is kept between processes)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType

import pygit2

from skylab.store.collector import collector_paused
from skylab.store.derived.historycache import SAVE_AFTER, load_snapshot, save_due, save_snapshot
from skylab.store.derived.snapshot import NotesSnapshot
from skylab.store.history import History, Trial
from skylab.store.historyindex import HistoryIndex
from skylab.store.notes import NoteFormatError, TrialNote, iso_utc
from skylab.store.refs import BASELINE_REF, BEST_REF, NOTES_REF, TRIALS_PREFIX
from skylab.store.repository import GitRepo


class HistoryLoader:
    """Loads the history of one repository; keeps what the last load parsed and built, so the next
    costs what changed since. Not shared between threads: each worker has a store of its own."""

    def __init__(self, git: GitRepo) -> None:
        self.git = git
        self._snapshot: NotesSnapshot | None = None  # the parsed notes as of the last load
        self._index: HistoryIndex | None = None  # history as of the last load, built on _snapshot

    def known_commit(self, sha: str) -> bool:
        """Whether `sha` is a trial commit the last load found in the repository."""
        return self._snapshot is not None and sha in self._snapshot.commits

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
            blob = self.git.repo.get(blob_id) if blob_id else None
            texts.append(blob.data.decode("utf-8", "replace") if isinstance(blob, pygit2.Blob) else None)
        return texts

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
            found = self.git.is_commit(sha)
            if found:
                snapshot.commits.add(sha)
                snapshot.unsaved += 1
            return found

        image, snapshot.image = snapshot.image, None
        if self._index is None and changed is not None and image is not None:
            # A new handle on a cache file that holds history: start from it (see IndexImage).
            self._index = HistoryIndex.restored(image, snapshot.notes, is_commit, self.started)
            self.git.seed_ref_layers(TRIALS_PREFIX, image.refs)
        elif self._index is None or changed is None:
            self._index, changed = HistoryIndex(is_commit, self.started), None
        self._index.update(self.git.ref_layers(TRIALS_PREFIX), snapshot.notes, snapshot.unreadable, changed)
        if save_due(snapshot.unsaved, len(snapshot.notes), SAVE_AFTER):
            save_snapshot(self.git.skylab_dir, snapshot, self._index.image())
        return self._index.history(self.git.ref_target(BEST_REF), self.git.ref_target(BASELINE_REF))

    def _notes_snapshot(self) -> tuple[NotesSnapshot, set[str] | None]:
        """The parsed notes of the notes ref now: this handle's snapshot or the cache file's, with
        the notes that changed since parsed; everything parsed afresh when neither can be used.
        Also the commits whose notes changed since the snapshot it started from (this handle's
        last, or the cache file's); None when everything was parsed afresh."""
        current = self.git.ref_target(NOTES_REF)
        ours = self._snapshot
        snapshot = ours or load_snapshot(self.git.skylab_dir)
        changed = None if snapshot is None else self._catch_up(snapshot, current)
        if snapshot is None or changed is None:
            snapshot = NotesSnapshot(current)
            self._parse_into(snapshot, self.git.read_notes(current))
        self._snapshot = snapshot
        return snapshot, changed

    def _catch_up(self, snapshot: NotesSnapshot, current: str | None) -> set[str] | None:
        """Bring `snapshot` to the notes commit `current` by the notes that differ between the two
        trees; return their commits, or None when that cannot be done (another fan-out, a notes
        commit gone)."""
        if snapshot.notes_commit == current:
            return set()
        if current is None or snapshot.notes_commit is None or not self.git.is_commit(snapshot.notes_commit):
            return None
        changed = self.git.notes_changed(snapshot.notes_commit, current)
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

    def started(self, trial: Trial) -> str:
        if trial.note and trial.note.started_at:
            return trial.note.started_at
        when = self.git.commit_time(trial.commit)
        return "" if when is None else iso_utc(datetime.fromtimestamp(when, timezone.utc))
