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
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from skylab.store.history import History, Trial
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


class HistoryIndex:
    """History as of the last `update`: the refs and notes it was given, applied commit by commit."""

    def __init__(self, is_commit: Callable[[str], bool], started: Callable[[Trial], str]) -> None:
        self._is_commit = is_commit
        self._started = started
        self._refs = NO_REFS  # trial ref name under the folder ("tag/n") -> commit
        self._refs_at: dict[str, dict[str, TrialRef]] = {}  # commit -> its trial refs, by name
        self._parts: dict[str, CommitPart] = {}
        self._keys: dict[str, SortKey] = {}  # commit -> its place in `_order`
        self._order: list[SortKey] = []  # history order
        self._trials: list[Trial] = []  # the trial of each key in `_order`, in the same places
        self._stray: dict[str, str] = {}
        self._unreadable: dict[str, str] = {}
        self._missing: set[str] = set()  # commits to look for again on every update

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
        affected: set[str] = set(self._missing)
        if changed_notes is None:
            affected |= self._parts.keys() | notes.keys() | parse_errors.keys()
        else:
            affected.update(changed_notes)
        removed, added = ref_changes(self._refs, refs)
        for name, commit in removed.items():
            affected.add(commit)
            self._refs_at.get(commit, {}).pop(name, None)
        for name, commit in added.items():
            ref = parse_trial_ref(name, commit)
            if ref is not None:
                affected.add(commit)
                self._refs_at.setdefault(commit, {})[name] = ref
        self._refs = refs
        rebuild = len(affected) > max(64, len(self._order) // 8)
        for commit in affected:  # every old part goes first: a moved ref's stray entry is the new one's
            self._drop(commit, keep_order=rebuild)
        for commit in affected:
            commit_refs = self._refs_at.get(commit)
            if not commit_refs:
                self._refs_at.pop(commit, None)
            found = commit_refs.values() if commit_refs else ()
            part = commit_part(commit, found, notes.get(commit), parse_errors.get(commit), self._is_commit)
            self._add(commit, part, keep_order=rebuild)
        if rebuild:
            self._order = sorted(self._keys.values())
            self._trials = [self._trial_at(key) for key in self._order]

    def history(self, best: str | None, baseline: str | None) -> History:
        return History(list(self._trials), best, baseline, dict(self._unreadable), dict(self._stray))

    def _trial_at(self, key: SortKey) -> Trial:
        trial = self._parts[key[3]].trial
        assert trial is not None  # only a commit with a trial has a key
        return trial

    def _drop(self, commit: str, keep_order: bool) -> None:
        part = self._parts.pop(commit, None)
        if part is None:
            return
        for name, _why in part.stray:
            self._stray.pop(name, None)
        if part.unreadable is not None:
            self._unreadable.pop(commit, None)
        self._missing.discard(commit)
        key = self._keys.pop(commit, None)
        if key is not None and not keep_order:
            place = bisect.bisect_left(self._order, key)
            del self._order[place]
            del self._trials[place]

    def _add(self, commit: str, part: CommitPart, keep_order: bool) -> None:
        trial = part.trial
        if trial is None and not part.stray and part.unreadable is None:
            return
        self._parts[commit] = part
        if part.stray:
            self._stray.update(part.stray)
        if part.unreadable is not None:
            self._unreadable[commit] = part.unreadable
        if part.missing:
            self._missing.add(commit)
        if trial is not None:
            key = self._keys[commit] = (self._started(trial), trial.tag, trial.number, commit)
            if not keep_order:
                place = bisect.bisect_left(self._order, key)
                self._order.insert(place, key)
                self._trials.insert(place, trial)


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
