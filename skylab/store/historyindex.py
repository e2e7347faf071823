"""History kept up to date commit by commit, so a load after a few new trials costs the few.

The rules (what one commit contributes to history) are one pure function, `commit_part`; the index
applies them to the commits whose refs or notes changed since its last update and keeps the trials
in history order. Building from nothing is the same update with every commit changed, so the two
paths cannot disagree.

The rules: a commit is one trial. When several trial refs point at it, the one its note names wins
and the others are left out as stray (a second ref never takes over a result). A trial ref that
does not point at a commit is stray too. A note that does not parse is kept as it is and listed as
unreadable; its trial shows with no result. A note whose trial ref is gone (deleted by hand, or not
fetched) still counts as a trial when its commit is here to show. Trials sort by start time, then
tag and number.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from skylab.store.derived.notechunks import ChunkedNotes
from skylab.store.history import History, NoteInChunk, Trial
from skylab.store.notes import TrialNote
from skylab.store.reffiles import NO_REFS, RefLayers, ref_changes
from skylab.store.refs import TrialRef, trial_ref

NOT_HERE = "its commit is not in this repository"

SortKey = tuple[str, str, int, str]  # (start time, tag, number, commit): unique, as commits are


@dataclass(slots=True)
class CommitPart:
    """What one commit contributes to history."""

    trial: Trial | None = None
    stray: tuple[tuple[str, str], ...] = ()  # (trial ref name, why it is left out)
    unreadable: str | None = None  # why the commit's note cannot be shown
    missing: bool = False  # refs or a note name it, but it is not a commit here (yet)


def commit_part(
    commit: str,
    refs: Collection[TrialRef],
    note: TrialNote | None,
    parse_error: str | None,
    is_commit: Callable[[str], bool],
) -> CommitPart:
    """The trial, stray refs and unreadable note of `commit`, from its trial refs and note alone."""
    if len(refs) == 1 and parse_error is None:  # the common case, first: one ref, its own note
        (ref,) = refs
        if (note is None or (note.tag, note.trial) == (ref.tag, ref.number)) and is_commit(commit):
            return CommitPart(Trial(ref.tag, ref.number, commit, note))
    if not refs and note is None:
        return CommitPart(unreadable=parse_error)
    if not is_commit(commit):
        why = f"points at {commit[:10]}, not a commit here"
        stray = tuple((trial_ref(r.tag, r.number), why) for r in refs)
        return CommitPart(None, stray, NOT_HERE if note is not None else parse_error, missing=True)
    if not refs:
        assert note is not None
        return CommitPart(Trial(note.tag, note.trial, commit, note, has_ref=False), (), parse_error)
    named = [r for r in refs if note is not None and (r.tag, r.number) == (note.tag, note.trial)]
    chosen = named[0] if named else min(refs, key=lambda r: (r.tag, r.number))
    left_out = [
        (trial_ref(r.tag, r.number), f"points at trial {chosen.name}'s commit") for r in refs if r != chosen
    ]
    if note is not None and (chosen.tag, chosen.number) != (note.tag, note.trial):
        left_out.append(
            (trial_ref(chosen.tag, chosen.number), f"its commit is trial {note.tag}/{note.trial}")
        )
        trial = Trial(note.tag, note.trial, commit, note, has_ref=False)
    else:
        trial = Trial(chosen.tag, chosen.number, commit, note)
    return CommitPart(trial, tuple(left_out), parse_error)


def parse_trial_ref(name: str, commit: str) -> TrialRef | None:
    """The trial ref `tag/n` (a name under the trials folder) at `commit`; None for other names."""
    tag, _, number = name.rpartition("/")
    return TrialRef(tag, int(number), commit) if tag and number.isdigit() else None


@dataclass
class IndexImage:
    """What a `HistoryIndex` shows, in columns, for the history cache to keep beside the notes it
    was built from: restoring it makes one object per trial (0.1 s at 100,000 trials) where
    building applies the rules to each commit again (1 s)."""

    refs: RefLayers  # the trial refs it was built from
    started: list[str]  # the history order's sort keys, column by column...
    tags: list[str]
    numbers: list[int]
    commits: list[str]
    has_ref: list[bool]  # ...and whether each trial has its ref
    stray: dict[str, str]
    unreadable: dict[str, str]
    missing: set[str]


def _restored_trials(image: IndexImage, notes: Mapping[str, TrialNote]) -> list[Trial]:
    """The trials of `image`, each with its note from `notes`: read from its chunk when first
    asked for where `notes` holds chunks (see `notechunks`), so restoring unpickles no note."""
    chunked = notes if isinstance(notes, ChunkedNotes) else ChunkedNotes()
    located, chunks = chunked.located, chunked.chunks
    return [
        Trial(tag, number, commit, notes.get(commit), has_ref)
        if (at := located(commit)) is None
        else Trial(tag, number, commit, NoteInChunk(chunks, at), has_ref)
        for tag, number, commit, has_ref in zip(
            image.tags, image.numbers, image.commits, image.has_ref, strict=True
        )
    ]


class HistoryIndex:
    """History as of the last `update`: the refs and notes it was given, applied commit by commit.

    Invariants: `_order` holds the sort key of each commit with a trial, in history order, and
    `_trials` that trial in the same place (`_placed` has both, by commit); every entry of `_stray`
    names a trial ref at a commit whose rules put it there, so taking back a commit's contribution
    takes back the stray entries of the refs at it."""

    def __init__(self, is_commit: Callable[[str], bool], started: Callable[[Trial], str]) -> None:
        self._is_commit = is_commit
        self._started = started
        self._refs = NO_REFS  # trial ref name under the folder ("tag/n") -> commit
        self._refs_at: dict[str, list[str]] = {}  # commit -> the names of the refs at it
        self._placed: dict[str, tuple[SortKey, Trial]] = {}  # commit -> its key and trial
        self._order: list[SortKey] = []  # history order
        self._trials: list[Trial] = []  # the trial of each key in `_order`, in the same places
        self._stray: dict[str, str] = {}
        self._unreadable: dict[str, str] = {}
        self._missing: set[str] = set()  # commits to look for again on every update
        # How much of `_placed` and `_refs_at` is built (see `restored` and `_look_up`): all, none
        # (restored, and the commits in `_order`'s order), or only what one update touched.
        self._lookups: Literal["all", "none", "touched"] = "all"
        self._restored_commits: list[str] = []
        self._shown: History | None = None  # the history last made, while nothing changed since

    @classmethod
    def restored(
        cls,
        image: IndexImage,
        notes: Mapping[str, TrialNote],
        is_commit: Callable[[str], bool],
        started: Callable[[Trial], str],
    ) -> HistoryIndex:
        """The index `image` was taken of, each trial with its note from `notes` (the notes it was
        built from, or newer ones that `update` is then told changed). The lookups an update needs
        are found for the commits the first update touches (a scan, for a command that loads once)
        and built whole at the second (for a run that goes on loading)."""
        index = cls(is_commit, started)
        index._refs = image.refs
        index._order = list(zip(image.started, image.tags, image.numbers, image.commits, strict=True))
        index._trials = _restored_trials(image, notes)
        index._stray, index._unreadable, index._missing = image.stray, image.unreadable, image.missing
        index._lookups, index._restored_commits = "none", image.commits
        return index

    def image(self) -> IndexImage:
        trials = self._trials
        return IndexImage(
            self._refs,
            [key[0] for key in self._order],
            [t.tag for t in trials],
            [t.number for t in trials],
            [t.commit for t in trials],
            [t.has_ref for t in trials],
            dict(self._stray),
            dict(self._unreadable),
            set(self._missing),
        )

    def update(
        self,
        refs: RefLayers,
        notes: Mapping[str, TrialNote],
        parse_errors: Mapping[str, str],
        changed_notes: Iterable[str] | None,
    ) -> None:
        """Bring the index to `refs` (name -> commit, as read: see `ref_changes`) and `notes` /
        `parse_errors` (commit -> note or why it does not parse), given the commits whose notes
        changed since the last update (None: any may have)."""
        removed, added = ref_changes(self._refs, refs)
        affected: set[str] = set(self._missing)
        if changed_notes is None:
            self._look_up(None)
            affected |= self._placed.keys() | self._refs_at.keys() | self._unreadable.keys()
            affected |= notes.keys() | parse_errors.keys()
        else:
            affected.update(changed_notes)
        affected.update(removed.values())
        affected.update(added.values())
        if not affected:
            self._refs = refs
            return
        self._shown = None
        rebuild = len(affected) > max(64, len(self._order) // 8)
        self._look_up(None if rebuild else affected)
        # Every contribution is taken back before any is added: a moved ref's stray entry is the
        # new commit's. (An index with nothing in it has nothing to take back.)
        for commit in affected if self._placed or self._stray or self._unreadable or self._missing else ():
            self._drop(commit, keep_order=rebuild)
        for name, commit in removed.items():
            names = self._refs_at.get(commit, [])
            if name in names:
                names.remove(name)
        for name, commit in added.items():
            self._refs_at.setdefault(commit, []).append(name)
        self._refs = refs
        for commit in affected:
            found = self._trial_refs_at(commit)
            if not found:
                self._refs_at.pop(commit, None)
            part = commit_part(commit, found, notes.get(commit), parse_errors.get(commit), self._is_commit)
            self._add(commit, part, keep_order=rebuild)
        if rebuild:
            placed = sorted(self._placed.values(), key=operator.itemgetter(0))
            self._order, self._trials = [key for key, _ in placed], [trial for _, trial in placed]

    def history(self, best: str | None, baseline: str | None) -> History:
        """History as of the last update. The same object again while nothing changed (no update
        that changed it, the same best and baseline): what a history builds once (its maps by
        commit and by tag) then serves every load of a loop's trial, not only the first."""
        shown = self._shown
        if shown is None or shown.best != best or shown.baseline != baseline:
            trials = list(self._trials)
            shown = History(trials, best, baseline, dict(self._unreadable), dict(self._stray))
            self._shown = shown
        return shown

    def _look_up(self, commits: set[str] | None) -> None:
        """Fill `_placed` and `_refs_at` of a restored index: for `commits` alone by one scan of
        its order and refs while no update has touched it yet, else whole (and from then on they
        are kept up to date, as in an index that was built)."""
        if self._lookups == "all":
            return
        if commits is not None and self._lookups == "none":
            for at, commit in enumerate(self._restored_commits):
                if commit in commits:
                    self._placed[commit] = (self._order[at], self._trials[at])
            for name, commit in self._refs.merged().items():
                if commit in commits:
                    self._refs_at.setdefault(commit, []).append(name)
            self._lookups, self._restored_commits = "touched", []
            return
        self._placed = {key[3]: (key, trial) for key, trial in zip(self._order, self._trials, strict=True)}
        self._refs_at = {}
        for name, commit in self._refs.merged().items():
            self._refs_at.setdefault(commit, []).append(name)
        self._lookups = "all"

    def _trial_refs_at(self, commit: str) -> list[TrialRef]:
        return [ref for name in self._refs_at.get(commit, ()) if (ref := parse_trial_ref(name, commit))]

    def _drop(self, commit: str, keep_order: bool) -> None:
        """Take back what `commit` contributed: its trial, unreadable note and stray refs."""
        for ref in self._trial_refs_at(commit):
            self._stray.pop(trial_ref(ref.tag, ref.number), None)
        self._unreadable.pop(commit, None)
        self._missing.discard(commit)
        placed = self._placed.pop(commit, None)
        if placed is not None and not keep_order:
            at = bisect.bisect_left(self._order, placed[0])
            del self._order[at]
            del self._trials[at]

    def _add(self, commit: str, part: CommitPart, keep_order: bool) -> None:
        trial = part.trial
        if part.stray:
            self._stray.update(part.stray)
        if part.unreadable is not None:
            self._unreadable[commit] = part.unreadable
        if part.missing:
            self._missing.add(commit)
        if trial is not None:
            key = (self._started(trial), trial.tag, trial.number, commit)
            self._placed[commit] = (key, trial)
            if not keep_order:
                at = bisect.bisect_left(self._order, key)
                self._order.insert(at, key)
                self._trials.insert(at, trial)


def build_history(
    notes: Mapping[str, TrialNote],
    parse_errors: Mapping[str, str],
    refs: Iterable[TrialRef],
    is_commit: Callable[[str], bool],
    started: Callable[[Trial], str],
    best: str | None,
    baseline: str | None,
) -> History:
    """History from parsed notes and trial refs alone (the rules are in the module's docstring)."""
    index = HistoryIndex(is_commit, started)
    index.update(RefLayers({f"{r.tag}/{r.number}": r.commit for r in refs}, {}), notes, parse_errors, None)
    return index.history(best, baseline)
