"""The trial store: every trial is a commit, every result a git note. No database.

Layout in the experiment's repository:

    refs/skylab/trials/<tag>/<n>   each trial commit, kept or reverted, so gc never loses one
    refs/heads/skylab/<tag>        the run branch: the chain of kept trials of that run
    refs/skylab/best               the best trial of all runs, per the metric's direction
    refs/skylab/baseline           the commit `skylab init` made the starting point
    refs/notes/skylab              one note per trial commit, in a 2-hex-character fan-out tree

Writes are ordered so that a process killed between any two of them leaves a state the next start
reads and repairs: trial ref, then note, then run branch, then best. A trial ref without a note is an
interrupted trial; best and the run branch only ever move to a trial whose note is already written.
All writers take one file lock, so writes from several processes never interleave.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pygit2

from skylab.errors import StoreError
from skylab.store.notes import Decision, NoteFormatError, Status, TrialNote

NOTES_REF = "refs/notes/skylab"
BEST_REF = "refs/skylab/best"
BASELINE_REF = "refs/skylab/baseline"
TRIALS_PREFIX = "refs/skylab/trials/"
BRANCH_PREFIX = "refs/heads/skylab/"
FALLBACK_SIGNATURE = ("Skylab", "skylab@localhost")

MAINTENANCE_EVERY = 200  # trials between `git gc --auto` checks
OWN_RUNS_FILE = "own-runs"  # in .git/skylab: the tags this clone has run
CLONE_ID_FILE = "clone-id"  # in .git/skylab: this clone's id, part of its default run tags

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_tag(tag: str) -> str:
    """A run tag is one ref path component: letters, digits, '.', '_' and '-'."""
    if not _TAG.fullmatch(tag) or ".." in tag or tag.endswith(".lock") or tag.endswith("."):
        raise StoreError(
            f"{tag!r} is not a valid run tag: use letters, digits, '.', '_' and '-' (at most 64)"
        )
    return tag


def run_branch(tag: str) -> str:
    return BRANCH_PREFIX + check_tag(tag)


def trial_ref(tag: str, number: int) -> str:
    return f"{TRIALS_PREFIX}{check_tag(tag)}/{number}"


@dataclass(frozen=True)
class TrialRef:
    """A started trial: its commit is safe from gc from this moment on."""

    tag: str
    number: int
    commit: str

    @property
    def name(self) -> str:
        return f"{self.tag}/{self.number}"


@dataclass
class Trial:
    """One trial as history shows it: its ref and, once finished, its note."""

    tag: str
    number: int
    commit: str
    note: TrialNote | None
    has_ref: bool = True

    @property
    def name(self) -> str:
        return f"{self.tag}/{self.number}"

    @property
    def status(self) -> Status:
        return self.note.status if self.note else Status.INTERRUPTED

    @property
    def value(self) -> float | None:
        return self.note.value if self.note else None

    @property
    def parent(self) -> str:
        return self.note.parent if self.note else ""

    @property
    def kept(self) -> bool:
        return self.note is not None and self.note.decision is Decision.KEEP


@dataclass
class History:
    """Everything the refs and notes say, rebuilt on every load."""

    trials: list[Trial]
    best: str | None
    baseline: str | None
    unreadable_notes: dict[str, str]  # commit -> why its note cannot be read (the note is kept as is)
    stray_refs: dict[str, str] = field(default_factory=dict)  # ref name -> why history leaves it out

    def by_commit(self) -> dict[str, Trial]:
        return {t.commit: t for t in self.trials}

    def for_tag(self, tag: str | None) -> list[Trial]:
        return [t for t in self.trials if tag is None or t.tag == tag]

    def tags(self) -> list[str]:
        return list(dict.fromkeys(t.tag for t in self.trials))

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


def finishes_interrupted(old: pygit2.Blob, new: pygit2.Blob) -> bool:
    """Whether `new` is the finished note of the trial that `old` records as interrupted."""
    try:
        before = TrialNote.parse(old.data.decode("utf-8", "replace"))
        after = TrialNote.parse(new.data.decode("utf-8", "replace"))
    except NoteFormatError:
        return False
    same_trial = (before.tag, before.trial) == (after.tag, after.trial)
    return same_trial and before.status is Status.INTERRUPTED and after.status is not Status.INTERRUPTED


def utc_now() -> str:
    """ISO 8601 in UTC, to the millisecond so that trials started in one second still sort in order."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TrialStore:
    """Reads and writes trials in one repository. Open it with `TrialStore.open(path)`."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.skylab_dir = Path(repo.path) / "skylab"
        self._lock_depth = 0
        self._thread_lock = threading.RLock()
        self._last_number: dict[str, int] = {}  # per tag, so numbering a trial is not a full ref scan

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".") -> TrialStore:
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise StoreError(f"{Path(path).resolve()} is not in a git repository (run `skylab init` first)")
        return cls(pygit2.Repository(found))

    @property
    def root(self) -> Path:
        """The experiment's directory: the repository's work tree."""
        return Path(self.repo.workdir or ".")

    @property
    def git_dir(self) -> Path:
        return Path(self.repo.path)

    # ----- reading -------------------------------------------------------------------------------

    def _commit(self, sha: str) -> pygit2.Commit | None:
        """The commit `sha` names in this repository; None for anything else (a tree, a blob, an
        object that is not here, a string that is no object id)."""
        try:
            obj = self.repo.get(sha)
        except ValueError:  # pygit2's GitErrors for a malformed or ambiguous id are ValueErrors
            return None
        return obj if isinstance(obj, pygit2.Commit) else None

    def ref_target(self, name: str) -> str | None:
        ref = self.repo.references.get(name)
        return None if ref is None else str(ref.resolve().target)

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

    def refs_under(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(name without prefix, target commit) for every direct ref under `prefix`."""
        for ref in self.repo.references.iterator():
            name = ref.name
            if name.startswith(prefix) and ref.type == pygit2.enums.ReferenceType.DIRECT:
                yield name[len(prefix) :], str(ref.target)

    def trial_refs(self) -> Iterator[TrialRef]:
        for rest, target in self.refs_under(TRIALS_PREFIX):
            tag, _, number = rest.rpartition("/")
            if tag and number.isdigit():
                yield TrialRef(tag, int(number), target)

    def read_notes(self, notes_commit: str | None = None) -> dict[str, pygit2.Blob]:
        """Annotated commit -> note blob, read by walking the notes tree (any fan-out)."""
        if notes_commit is None:
            notes_commit = self.ref_target(NOTES_REF)
        if notes_commit is None:
            return {}
        tree = self.repo[notes_commit].peel(pygit2.Tree)
        found: dict[str, pygit2.Blob] = {}
        flat: dict[str, pygit2.Blob] = {}

        def walk(tree: pygit2.Tree, prefix: str) -> None:
            for entry in tree:
                name = prefix + (entry.name or "")
                if isinstance(entry, pygit2.Tree):
                    walk(entry, name)
                elif isinstance(entry, pygit2.Blob) and len(name) in (40, 64):
                    # A note git wrote without fan-out loses to ours for the same commit.
                    (flat if not prefix else found)[name] = entry

        walk(tree, "")
        for commit, blob in flat.items():
            found.setdefault(commit, blob)
        return found

    def note_for(self, commit: str) -> TrialNote | None:
        blob = self.read_notes().get(commit)
        return None if blob is None else TrialNote.parse(blob.data.decode("utf-8"))

    def load(self) -> History:
        """History rebuilt from refs and notes alone.

        A commit is one trial: when several trial refs point at it, the one its note names wins and
        the others are left out as stray (a second ref never takes over a result). A trial ref that
        does not point at a commit is stray too. A note that does not parse is kept as it is and
        listed as unreadable; its trial shows with no result."""
        notes: dict[str, TrialNote] = {}
        unreadable: dict[str, str] = {}
        for commit, blob in self.read_notes().items():
            try:
                notes[commit] = TrialNote.parse(blob.data.decode("utf-8", "replace"))
            except NoteFormatError as exc:
                unreadable[commit] = str(exc)
        refs_by_commit: dict[str, list[TrialRef]] = {}
        stray: dict[str, str] = {}
        for ref in self.trial_refs():
            if self._commit(ref.commit) is None:
                stray[trial_ref(ref.tag, ref.number)] = f"points at {ref.commit[:10]}, not a commit here"
                continue
            refs_by_commit.setdefault(ref.commit, []).append(ref)
        trials: dict[str, Trial] = {}
        for commit, refs in refs_by_commit.items():
            note = notes.pop(commit, None)
            named = [r for r in refs if note is not None and (r.tag, r.number) == (note.tag, note.trial)]
            chosen = named[0] if named else min(refs, key=lambda r: (r.tag, r.number))
            for other in refs:
                if other != chosen:
                    stray[trial_ref(other.tag, other.number)] = f"points at trial {chosen.name}'s commit"
            if note is not None and (chosen.tag, chosen.number) != (note.tag, note.trial):
                stray[trial_ref(chosen.tag, chosen.number)] = f"its commit is trial {note.tag}/{note.trial}"
                trials[commit] = Trial(note.tag, note.trial, commit, note, has_ref=False)
                continue
            trials[commit] = Trial(chosen.tag, chosen.number, commit, note)
        # Notes whose trial ref is gone (deleted by hand, or not fetched) still count as trials,
        # when their commit is here to show.
        for commit, note in notes.items():
            if self._commit(commit) is not None:
                trials[commit] = Trial(note.tag, note.trial, commit, note, has_ref=False)
            else:
                unreadable[commit] = "its commit is not in this repository"
        ordered = sorted(trials.values(), key=lambda t: (self._started(t), t.tag, t.number))
        return History(ordered, self.best(), self.baseline(), unreadable, stray)

    def _started(self, trial: Trial) -> str:
        if trial.note and trial.note.started_at:
            return trial.note.started_at
        commit = self._commit(trial.commit)
        if commit is None:
            return ""
        when = datetime.fromtimestamp(commit.commit_time, timezone.utc)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def resolve_trial(self, spec: str, tag: str | None = None) -> Trial:
        """A trial named as `tag/n`, `n` (with a tag, or when only one run has it) or a commit."""
        history = self.load()
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
            try:
                commit = str(self.repo.revparse_single(spec).peel(pygit2.Commit).id)
            except (KeyError, ValueError, pygit2.GitError):
                commit = ""
            matches = [t for t in history.trials if t.commit == commit]
        if not matches:
            raise StoreError(f"no trial named '{spec}' (try `skylab history`)")
        return matches[0]

    def diff_paths(self, a: str, b: str) -> set[str]:
        """The paths that differ between two commits' trees."""
        diff = self.repo[a].peel(pygit2.Tree).diff_to_tree(self.repo[b].peel(pygit2.Tree))
        return {path for delta in diff.deltas for path in (delta.new_file.path, delta.old_file.path)}

    def commit_summary(self, commit: str) -> tuple[str, str] | None:
        """(first parent, first line of the message) of a commit here; None for a root commit or
        anything that is not a commit of this repository."""
        obj = self._commit(commit)
        if obj is None or not obj.parent_ids:
            return None
        return str(obj.parent_ids[0]), obj.message.strip().split("\n")[0]

    def tree_of(self, commit: str) -> str | None:
        """The tree id of a commit of this repository (None for anything else)."""
        obj = self._commit(commit)
        return None if obj is None else str(obj.tree_id)

    def merge_trees(self, base: str, ours: str, theirs: str) -> tuple[str | None, list[str]]:
        """The 3-way merge of two commits' trees over `base`'s: (the merged tree id, []) or, when
        they conflict, (None, the conflicting paths). Writes no commit and no ref."""
        base_tree, our_tree, their_tree = (
            self.repo[c].peel(pygit2.Commit).tree for c in (base, ours, theirs)
        )
        index = self.repo.merge_trees(base_tree, our_tree, their_tree)
        if index.conflicts is not None:
            paths = {(entry or their).path for entry, _, their in index.conflicts if entry or their}
            return None, sorted(paths)
        return str(index.write_tree(self.repo)), []

    def descends_from(self, commit: str, ancestor: str) -> bool:
        """Whether `ancestor` is in `commit`'s history (and is not `commit` itself)."""
        return bool(self.repo.descendant_of(commit, ancestor))

    def checked_out_branch(self) -> str | None:
        """The full name of the branch the user's checkout is on (None when detached or unborn)."""
        repo = self.repo
        return None if repo.head_is_unborn or repo.head_is_detached else str(repo.head.name)

    def first_parents(self, commit: str | None) -> Iterator[str]:
        """`commit`, then its first parent, and so on back to the root (at most 10,000 steps)."""
        for _ in range(10_000):
            if commit is None:
                return
            yield commit
            obj = self._commit(commit)
            commit = str(obj.parent_ids[0]) if obj is not None and obj.parent_ids else None

    def diff_against_parent(self, trial: Trial) -> str:
        """The trial's change: against the parent its note names, or (when the note names none, or
        no commit of this repository) against its commit's first parent."""
        commit = self.repo[trial.commit].peel(pygit2.Commit)
        named = trial.parent if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", trial.parent) else ""
        if named and self._commit(named) is None:
            named = ""
        parent_id = named or (str(commit.parent_ids[0]) if commit.parent_ids else "")
        if parent_id:
            parent_tree = self.repo[parent_id].peel(pygit2.Tree)
            diff = parent_tree.diff_to_tree(commit.tree, context_lines=3)
        else:
            diff = commit.tree.diff_to_tree(swap=True)
        return str(diff.patch or "")

    # ----- writing -------------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store's write lock: one writer at a time across processes and threads (re-entrant).

        The thread lock orders writers inside one process (an flock is per open file, not per
        thread); the flock orders processes.
        """
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            self.skylab_dir.mkdir(exist_ok=True)
            with open(self.skylab_dir / "store.lock", "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def signature(self) -> pygit2.Signature:
        try:
            return self.repo.default_signature
        except (KeyError, pygit2.GitError):
            return pygit2.Signature(*FALLBACK_SIGNATURE)

    def set_baseline(self, commit: str) -> None:
        with self.writing():
            self._set_ref(BASELINE_REF, commit, "skylab: baseline")

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
        sig = self.signature()
        tree_id = pygit2.Oid(hex=str(tree))
        summary = message.strip() or "skylab trial"

        def make_commit(number: int) -> str:
            text = f"{summary}\n\nSkylab-Trial: {tag}/{number}\n"
            return str(self.repo.create_commit(None, sig, sig, text, tree_id, [pygit2.Oid(hex=parent)]))

        return self._claim_number(tag, make_commit)

    def begin_trial(self, tag: str, commit: str) -> TrialRef:
        """Make an existing commit (one made by hand) the next trial of `tag`."""
        with self.writing():
            if any(ref.commit == commit for ref in self.trial_refs()) or commit in self.read_notes():
                raise StoreError(f"commit {commit[:10]} is already a trial")
            return self._claim_number(tag, lambda number: commit)

    def clone_id(self) -> str:
        """Four hex digits naming this clone, made once and kept in .git (never pushed)."""
        path = self.skylab_dir / CLONE_ID_FILE
        if not path.is_file():
            self.skylab_dir.mkdir(exist_ok=True)
            with self.writing():
                if not path.is_file():
                    path.write_text(os.urandom(2).hex() + "\n", encoding="utf-8")
        text = path.read_text(encoding="utf-8").strip()
        return text if re.fullmatch(r"[0-9a-f]{4}", text) else "0000"

    def own_tags(self) -> set[str]:
        """The run tags this clone has trained trials of (kept in .git, never pushed): only their
        unfinished trials are this clone's to record as interrupted."""
        path = self.skylab_dir / OWN_RUNS_FILE
        return set(path.read_text(encoding="utf-8").split()) if path.is_file() else set()

    def _remember_own_tag(self, tag: str) -> None:
        if tag not in self.own_tags():
            self.skylab_dir.mkdir(exist_ok=True)
            with open(self.skylab_dir / OWN_RUNS_FILE, "a", encoding="utf-8") as handle:
                handle.write(tag + "\n")

    def _claim_number(self, tag: str, make_commit: Callable[[int], str]) -> TrialRef:
        check_tag(tag)
        with self.writing():
            self._remember_own_tag(tag)
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

    def finish_trial(self, trial: TrialRef, note: TrialNote, new_best: bool | None = None) -> None:
        """Record the result; a kept trial then becomes the run's tip and, when `new_best`, the best.

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
            if kept:
                self._set_ref(run_branch(trial.tag), trial.commit, f"skylab: keep {trial.name}")
                if new_best is None or new_best:
                    self._set_ref(BEST_REF, trial.commit, f"skylab: best is {trial.name}")
        if trial.number % MAINTENANCE_EVERY == 0:
            self.maintain()

    def adopt_trial_ref(self, name: str, commit: str) -> None:
        """Create the trial ref `tag/n` (a teammate's) at `commit`; never moves an existing one."""
        with self.writing():
            self._set_ref(TRIALS_PREFIX + name, commit, "skylab: pull", force=False)

    def set_best(self, commit: str, reason: str) -> None:
        """Point the best at `commit` (the caller has judged it better)."""
        with self.writing():
            self._set_ref(BEST_REF, commit, f"skylab: {reason}")

    def move_run_branch(self, tag: str, commit: str, reason: str) -> None:
        """Point a run branch at `commit`: a reverted hand commit leaves the kept chain this way."""
        with self.writing():
            self._set_ref(run_branch(tag), commit, f"skylab: {reason}")

    def maintain(self) -> None:
        """Let git pack loose objects and refs when it judges it worthwhile (`git gc --auto`).

        Each trial adds a handful of loose objects and a loose ref; packed, history loads about
        twice as fast. Runs every MAINTENANCE_EVERY trials, never on a trial's critical path.
        """
        workdir = self.repo.workdir or self.repo.path
        subprocess.run(["git", "-C", workdir, "gc", "--auto", "--quiet"], check=False, capture_output=True)

    def record_interrupted(self, trial: Trial, metric: str, reason: str) -> TrialNote:
        """Write the note of a trial that never finished, so history shows why."""
        commit = self.repo[trial.commit].peel(pygit2.Commit)
        parent = str(commit.parent_ids[0]) if commit.parent_ids else ""
        note = TrialNote(
            trial=trial.number,
            tag=trial.tag,
            status=Status.INTERRUPTED,
            decision=Decision.REVERT,
            metric=metric,
            parent=parent,
            started_at=self._started(trial),
            description=commit.message.strip().split("\n")[0],
            other={"reason": reason} if reason else {},
        )
        with self.writing():
            self._write_notes({trial.commit: note.format()}, f"skylab: trial {trial.name} interrupted")
        return note

    def repair(self, metric: str, is_better: Callable[[float, float | None], bool]) -> list[str]:
        """Bring refs back in line with the notes after a crash; return what was fixed, in words.

        Trials of this clone's runs without a note become interrupted (a teammate's unfinished trial
        may still be training elsewhere, and a note that cannot be read is kept as it is); a kept
        trial whose run branch or best was not moved before the crash gets them moved now.
        """
        fixed = self._clear_stale_ref_locks()
        history = self.load()
        own = self.own_tags()
        for trial in history.trials:
            unfinished = trial.note is None and trial.has_ref and trial.commit not in history.unreadable_notes
            if unfinished and trial.tag in own:
                self.record_interrupted(trial, metric, "the process recording it stopped before it finished")
                fixed.append(f"trial {trial.name} had no result: recorded as interrupted")
        history = self.load()
        best = self.best()
        best_value = self._value_of(history, best)
        with self.writing():
            for tag in history.tags():
                kept = [t for t in history.for_tag(tag) if t.kept]
                if not kept:
                    continue
                last = kept[-1]
                tip = self.ref_target(run_branch(tag))
                if tip != last.commit and (tip is None or tip == last.parent):
                    self._set_ref(run_branch(tag), last.commit, f"skylab: repair keep {last.name}")
                    fixed.append(f"run branch skylab/{tag} moved to kept trial {last.name}")
            for trial in history.trials:
                candidate = trial.kept and trial.value is not None and trial.commit != best
                if candidate and trial.value is not None and is_better(trial.value, best_value):
                    best, best_value = trial.commit, trial.value
            if best is not None and best != self.best():
                self._set_ref(BEST_REF, best, "skylab: repair best")
                fixed.append(f"best moved to {history.by_commit()[best].name}")
        return fixed

    def _clear_stale_ref_locks(self) -> list[str]:
        """Remove `.lock` files a killed writer left on Skylab's refs; they would block every update.

        Every Skylab writer holds the store lock while it writes a ref, so once we hold it, a ref
        lock file on one of our refs belongs to a process that is gone.
        """
        fixed = []
        gitdir = Path(self.repo.path)
        with self.writing():
            for folder in (
                gitdir / "refs" / "skylab",
                gitdir / "refs" / "notes",
                gitdir / "refs" / "heads" / "skylab",
            ):
                for lock in folder.rglob("*.lock") if folder.is_dir() else []:
                    lock.unlink()
                    fixed.append(f"removed a stale lock {lock.relative_to(gitdir)}")
        return fixed

    @staticmethod
    def _value_of(history: History, commit: str | None) -> float | None:
        trial = history.by_commit().get(commit or "")
        return None if trial is None else trial.value

    def _set_ref(self, name: str, target: str, message: str, force: bool = True) -> None:
        try:
            self.repo.create_reference_direct(name, pygit2.Oid(hex=target), force, message=message)
        except pygit2.AlreadyExistsError:
            raise StoreError(f"{name} already exists") from None

    def _write_notes(
        self, notes: dict[str, str | pygit2.Oid], message: str, merge_parent: str | None = None
    ) -> None:
        """One notes commit adding or replacing `notes` (commit -> text or blob id)."""
        parent = self.ref_target(NOTES_REF)
        base_tree = self.repo[parent].peel(pygit2.Tree) if parent else None
        tree = self._notes_tree(base_tree, notes)
        sig = self.signature()
        parents = [pygit2.Oid(hex=p) for p in (parent, merge_parent) if p]
        commit = self.repo.create_commit(None, sig, sig, message, tree, parents)
        self._set_ref(NOTES_REF, str(commit), message)

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
            if local is not None and self.repo.descendant_of(local, other):
                return 0, []
            theirs = self.read_notes(other)
            if local is None:
                self._set_ref(NOTES_REF, other, "skylab: notes from the remote")
                return len(theirs), []
            ours = self.read_notes(local)
            new: dict[str, str | pygit2.Oid] = {c: b.id for c, b in theirs.items() if c not in ours}
            replaced, conflicts = {}, []
            for commit, blob in theirs.items():
                if commit in ours and ours[commit].id != blob.id:
                    if finishes_interrupted(ours[commit], blob):
                        replaced[commit] = blob.id
                    elif not finishes_interrupted(blob, ours[commit]):
                        conflicts.append(commit)
            self._write_notes(
                {**new, **replaced}, f"skylab: merge {len(new) + len(replaced)} notes", merge_parent=other
            )
            return len(new) + len(replaced), sorted(conflicts)

    def _notes_tree(self, base: pygit2.Tree | None, notes: dict[str, str | pygit2.Oid]) -> pygit2.Oid:
        by_prefix: dict[str, list[tuple[str, pygit2.Oid]]] = {}
        for commit, content in notes.items():
            blob = content if isinstance(content, pygit2.Oid) else self.repo.create_blob(content.encode())
            by_prefix.setdefault(commit[:2], []).append((commit[2:], blob))
        root = self.repo.TreeBuilder(base) if base is not None else self.repo.TreeBuilder()
        for prefix, entries in by_prefix.items():
            existing = base[prefix] if base is not None and prefix in base else None
            if isinstance(existing, pygit2.Tree):
                sub = self.repo.TreeBuilder(existing)
            else:
                sub = self.repo.TreeBuilder()
            for rest, blob in entries:
                sub.insert(rest, blob, pygit2.GIT_FILEMODE_BLOB)
                if base is not None and prefix + rest in base:
                    root.remove(prefix + rest)  # a flat note git wrote for the same commit
            root.insert(prefix, sub.write(), pygit2.GIT_FILEMODE_TREE)
        return root.write()
