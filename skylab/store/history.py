"""History as the refs and notes say it: the trial and history types, and the pure rules that read
a built history (repair, best, naming a trial). `historyindex` builds it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from skylab.errors import StoreError
from skylab.store.notes import Decision, Status, TrialNote

if TYPE_CHECKING:
    from skylab.store.derived.notechunks import NoteChunks


class NoteInChunk:
    """Where the note of a trial restored from the history cache lies: chunk `at` of `chunks` (see
    `notechunks`), unpickled when a note in it is first read, so restoring 100,000 trials from the
    cache unpickles none. Invariant: a chunk never changes once made, so the note read later is the
    note the history was built with, whatever was parsed since."""

    __slots__ = ("at", "chunks", "note")

    def __init__(self, chunks: NoteChunks, at: int) -> None:
        self.chunks, self.at = chunks, at
        self.note: TrialNote | Unread | None = UNREAD

    def read(self, commit: str) -> TrialNote | None:
        note = self.note
        if isinstance(note, Unread):  # two threads may both read it: they read the same note
            note = self.note = self.chunks.note(self.at, commit)
        return note


class Unread:
    """The note of a NoteInChunk not read yet."""


UNREAD = Unread()


@dataclass(frozen=True, eq=False)
class Trial:
    """One trial as history shows it: its ref and, once finished, its note (`stored`: the note
    itself, or where it lies in the history cache, read on first use)."""

    tag: str
    number: int
    commit: str
    stored: TrialNote | NoteInChunk | None
    has_ref: bool = True

    @property
    def note(self) -> TrialNote | None:
        stored = self.stored
        return stored.read(self.commit) if isinstance(stored, NoteInChunk) else stored

    def _key(self) -> tuple[str, int, str, TrialNote | None, bool]:
        return (self.tag, self.number, self.commit, self.note, self.has_ref)

    def __eq__(self, other: object) -> bool:
        """Equal to the trial made with the same note, wherever its note is read from."""
        return isinstance(other, Trial) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # a note is mutable: as the dataclass it was

    @property
    def name(self) -> str:
        return f"{self.tag}/{self.number}"

    @property
    def status(self) -> Status:
        note = self.note
        return note.status if note else Status.INTERRUPTED

    @property
    def value(self) -> float | None:
        note = self.note
        return note.value if note else None

    @property
    def parent(self) -> str:
        note = self.note
        return note.parent if note else ""

    @property
    def kept(self) -> bool:
        note = self.note
        return note is not None and note.decision is Decision.KEEP


def read_deferred_notes(trials: list[Trial]) -> None:
    """Read the note of each trial restored from the history cache now, chunk by chunk, for what
    reads every note (the report)."""
    for trial in trials:
        stored = trial.stored
        if isinstance(stored, NoteInChunk) and isinstance(stored.note, Unread):
            stored.note = stored.chunks.chunk(stored.at).get(trial.commit)


@dataclass
class History:
    """Everything the refs and notes say, as of one load. Later loads of the same store handle
    return this very object while nothing changed (see `HistoryIndex.history`): never change one."""

    trials: list[Trial]
    best: str | None
    baseline: str | None
    unreadable_notes: dict[str, str]  # commit -> why its note cannot be read (the note is kept as is)
    stray_refs: dict[str, str] = field(default_factory=dict)  # ref name -> why history leaves it out

    # Built on first use and kept: the loop asks a history for them several times a trial, and at
    # 100,000 trials each build took 20 ms. A history's trials never change once it is made.
    _by_commit: Mapping[str, Trial] | None = field(default=None, init=False, repr=False, compare=False)
    _by_tag: dict[str, list[Trial]] | None = field(default=None, init=False, repr=False, compare=False)

    def by_commit(self) -> Mapping[str, Trial]:
        if self._by_commit is None:
            self._by_commit = MappingProxyType({t.commit: t for t in self.trials})
        return self._by_commit

    def for_tag(self, tag: str | None) -> list[Trial]:
        if tag is None:
            return list(self.trials)
        if self._by_tag is None:
            self._by_tag = {}
            for trial in self.trials:
                self._by_tag.setdefault(trial.tag, []).append(trial)
        return list(self._by_tag.get(tag, ()))

    def tags(self) -> list[str]:
        return list(dict.fromkeys(t.tag for t in self.trials))

    def require_tag(self, tag: str | None) -> None:
        """A StoreError naming the runs there are when no run is tagged `tag` (None: any run)."""
        tags = self.tags()
        if tag is not None and tag not in tags:
            raise StoreError(f"no run tagged '{tag}' (runs: {', '.join(tags) or 'none yet'})")

    def kept_chain(self, tip: str | None = None) -> list[Trial]:
        """The kept trials leading to `tip` (default: best), oldest first."""
        index = self.by_commit()
        chain: list[Trial] = []
        commit = tip if tip is not None else self.best
        seen: set[str] = set()
        while commit and commit in index and commit not in seen:
            seen.add(commit)
            trial = index[commit]
            chain.append(trial)
            commit = trial.parent
        return list(reversed(chain))

    def value_of(self, commit: str | None) -> float | None:
        """The metric value of the trial at `commit` (None: no such trial, or no value)."""
        trial = self.by_commit().get(commit or "")
        return None if trial is None else trial.value


def run_tips_to_repair(history: History, tips: dict[str, str | None]) -> list[Trial]:
    """The last kept trial of each run whose branch (`tips`: tag -> tip) a crash left behind it:
    still at that trial's parent, or missing. A branch moved anywhere else was moved on purpose."""
    behind = []
    for tag in history.tags():
        kept = [t for t in history.for_tag(tag) if t.kept]
        if not kept:
            continue
        last, tip = kept[-1], tips.get(tag)
        if tip != last.commit and (tip is None or tip == last.parent):
            behind.append(last)
    return behind


def best_after_repair(history: History, is_better: Callable[[float, float | None], bool]) -> str | None:
    """The best once every kept trial is counted: history's best, unless a kept trial (one whose
    best move a crash cut off) beats it."""
    best, best_value = history.best, history.value_of(history.best)
    for trial in history.trials:
        if (
            trial.kept
            and trial.value is not None
            and trial.commit != best
            and is_better(trial.value, best_value)
        ):
            best, best_value = trial.commit, trial.value
    return best


def find_trial(
    history: History, spec: str, tag: str | None, resolve_commit: Callable[[str], str | None]
) -> Trial:
    """The trial `spec` names: `best`, `tag/n`, `n` (with `tag`, or when only one run has it) or a
    commit-ish (`skylab/best`, a short id, a branch) that `resolve_commit` turns into a commit.
    A StoreError (one line) for a name that fits no trial or several."""
    if spec == "best":
        best = history.by_commit().get(history.best or "")
        if best is None:
            raise StoreError("no best trial yet: run `skylab run` first")
        return best
    matches: list[Trial] = []
    if "/" in spec and spec.rpartition("/")[2].isdigit():
        want_tag, _, number = spec.rpartition("/")
        matches = [t for t in history.trials if t.tag == want_tag and t.number == int(number)]
    elif spec.isdigit() and len(spec) < 7:
        matches = [t for t in history.for_tag(tag) if t.number == int(spec)]
        if len(matches) > 1:
            names = ", ".join(t.name for t in matches)
            raise StoreError(f"trial {spec} is ambiguous ({names}): name it as TAG/{spec}")
    if not matches:
        commit = resolve_commit(spec) or ""
        matches = [t for t in history.trials if t.commit == commit]
    if not matches:
        raise StoreError(f"no trial named '{spec}' (try `skylab history`)")
    return matches[0]
