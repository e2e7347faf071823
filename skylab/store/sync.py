"""`skylab push` / `skylab pull`: share trials, run branches and notes with teammates.

The network part is plain `git fetch` / `git push`, so every remote and credential setup that works
for the user's git works here too. Everything else (merging notes, adopting trial refs, choosing the
shared best) is done locally through the store. Remote refs are fetched into a staging namespace
first and integrated from there, so nothing of the teammate's ever overwrites ours.

A lab's remote holds one trial ref per trial, 100,000 of them after a month, and git lists every ref
a fetch asks for and every ref of the remote to a push. So the pull a push starts with asks for the
few shared refs first (notes, best, baseline, run branches) and for the trial refs only when one of
those moved since the staged copies were last brought up to date: a trial always writes a note, and a
push sends trial refs and notes together (atomically). A trial ref pushed some other way is no risk
there, since git itself refuses a push that would move one of the remote's refs; `skylab pull`
always fetches every trial ref. A push whose refs all match the remote's skips `git push`, and after
a push the staged copies are moved to what was pushed, as git moves remote-tracking refs.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from skylab.errors import StoreError
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from skylab.store.historyindex import parse_trial_ref
from skylab.store.notes import Status
from skylab.store.refs import BASELINE_REF, BEST_REF, BRANCH_PREFIX, NOTES_REF, STAGING_PREFIX, TRIALS_PREFIX
from skylab.store.repository import git_failure
from skylab.terminal import plural

TRACK_AFTER_PUSH = 1000  # pushed trial refs up to which the staged copies are moved to them at once


@dataclass
class SyncReport:
    notes_added: int = 0
    note_conflicts: list[str] = field(default_factory=list)
    trials_added: int = 0
    trial_collisions: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # the remote's refs that were not adopted, and why
    branches: list[str] = field(default_factory=list)
    best: str | None = None
    pushed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report in a screen or so, however many refs moved: counts, and at most
        LISTED_PER_KIND lines of each kind of problem (with how many more there are)."""
        out = [f"{self.trials_added} new trials, {self.notes_added} new notes"]
        out += self.branches
        if self.best:
            out.append(f"best is now {self.best}")
        out += _listed("note conflict on {}: kept the local note", [c[:10] for c in self.note_conflicts])
        out += _listed("trial ref collision: {}", self.trial_collisions)
        out += _listed("left out: {}", self.left_out)
        if self.pushed:
            out.append(pushed_summary(self.pushed))
        out += _listed("rejected by the remote: {}", self.rejected)
        return out


LISTED_PER_KIND = 10  # lines of one kind a sync report lists before it just counts the rest


def _listed(template: str, items: list[str]) -> list[str]:
    shown = [template.format(item) for item in items[:LISTED_PER_KIND]]
    if len(items) > LISTED_PER_KIND:
        shown.append(f"… and {len(items) - LISTED_PER_KIND} more like it")
    return shown


def pushed_summary(refs: list[str]) -> str:
    """One line for what a push moved: trial refs counted, every other ref named."""
    trials = [ref for ref in refs if ref.startswith(TRIALS_PREFIX)]
    others = [ref for ref in refs if not ref.startswith(TRIALS_PREFIX)]
    parts = [plural(len(trials), "trial ref")] if trials else []
    return "pushed " + ", ".join(parts + others)


def _git(store: TrialStore, *args: str) -> str:
    result = store.git(*args)
    if result.returncode != 0 and args[0] != "push":
        raise StoreError(f"git {args[0]} failed: {git_failure(result.stderr)}")
    return result.stdout + result.stderr


def staging_prefix(store: TrialStore, remote: str) -> str:
    """The folder where a remote's refs are staged: `refs/skylab-remotes/<name>/` for a named
    remote, `refs/skylab-remotes/url-<hash>/` for one given by its URL."""
    if re.fullmatch(r"[A-Za-z0-9._-]+", remote) and remote in store.remote_names():
        key = remote
    else:
        key = "url-" + hashlib.sha1(remote.encode()).hexdigest()[:12]
    return f"{STAGING_PREFIX}{key}/"


def default_remote(store: TrialStore) -> str:
    names = store.remote_names()
    if "origin" in names:
        return "origin"
    if len(names) == 1 and names[0]:
        return names[0]
    raise StoreError("no remote given and no single default: name one, e.g. `skylab push origin`")


# Whether the remote's best (a trial) should replace ours (None when we have none), given the history
# both now make up: the experiment's decision rule, passed in by the caller (the judge's, not ours).
Prefers = Callable[[Trial, Trial | None, History], bool]


def pull(store: TrialStore, remote: str, prefers: Prefers, every_trial_ref: bool = True) -> SyncReport:
    """Fetch a remote's trials and integrate them: notes merged, refs adopted, shared best chosen.
    Without `every_trial_ref`, its trial refs are fetched only when its shared refs moved."""
    staging = staging_prefix(store, remote)
    _fetch(store, remote, staging, every_trial_ref)
    report = SyncReport()
    their_notes = store.ref_target(staging + _tracked(NOTES_REF))
    report.notes_added, report.note_conflicts = store.merge_notes(their_notes)
    _adopt_trials(store, staging, report)
    store.pack_loose_refs()  # a first pull of N trials stages N loose ref files and adopts N more
    their_baseline = store.ref_target(staging + _tracked(BASELINE_REF))
    if store.baseline() is None and their_baseline:
        store.set_baseline(their_baseline)
    elif their_baseline and their_baseline != store.baseline():
        report.branches.append(
            f"the remote's baseline {their_baseline[:10]} is not ours: are these clones of one experiment?"
        )
    _adopt_branches(store, staging, report)
    _choose_best(store, store.ref_target(staging + _tracked(BEST_REF)), prefers, report)
    return report


def _fetch(store: TrialStore, remote: str, staging: str, every_trial_ref: bool) -> None:
    """The remote's refs into `staging`: the shared ones, then its trial refs (unless none of the
    shared ones moved since our staged copies were last brought up to date and not
    `every_trial_ref`: see the module docstring)."""
    before = _shared_staged(store, staging)
    _git(
        store,
        "fetch",
        "--no-tags",
        "--prune",
        remote,
        f"+refs/notes/*:{staging}notes/*",
        f"+refs/skylab/b*:{staging}skylab/b*",  # best and baseline: git lists only refs asked for
        f"+{BRANCH_PREFIX}*:{staging}branches/*",
    )
    if not every_trial_ref and _tracked(NOTES_REF) in before and _shared_staged(store, staging) == before:
        return
    _git(store, "fetch", "--no-tags", "--prune", remote, f"+{TRIALS_PREFIX}*:{staging}skylab/trials/*")


def _shared_staged(store: TrialStore, staging: str) -> dict[str, str]:
    """The staged notes, best, baseline and run branches: name under `staging` -> commit."""
    found = {f"branches/{tag}": commit for tag, commit in store.refs_under(f"{staging}branches/")}
    for ref in (NOTES_REF, BEST_REF, BASELINE_REF):
        target = store.ref_target(staging + _tracked(ref))
        if target is not None:
            found[_tracked(ref)] = target
    return found


def _staged(store: TrialStore, prefix: str) -> dict[str, str]:
    return dict(store.refs_under(prefix))


def _adopt_trials(store: TrialStore, staging: str, report: SyncReport) -> None:
    """Adopt the remote's trial refs we lack, except those that would take over another trial's
    commit or result, or that do not point at a commit: those are reported and left out."""
    with store.writing():
        ours = _staged(store, TRIALS_PREFIX)
        # Only refs we lack or that differ need a look: an incremental pull of 100,000 shared trial
        # refs must not load history or open a commit for each of them.
        new = {
            rest: commit
            for rest, commit in _staged(store, f"{staging}skylab/trials/").items()
            if ours.get(rest) != commit
        }
        if not new:
            return
        named = {t.commit: t.name for t in store.load().trials}
        adopted: dict[str, str] = {}
        for rest, commit in new.items():
            local = ours.get(rest)
            problem = _stray_trial_ref(store, rest, commit, named)
            if local is None and problem:
                report.left_out.append(f"trial ref {rest}: {problem}")
            elif local is None:
                adopted[rest] = commit
            elif local != commit:
                report.trial_collisions.append(
                    f"{rest} is {local[:10]} here but {commit[:10]} there (use distinct run tags)"
                )
        store.adopt_trial_refs(adopted)
        report.trials_added = len(adopted)


def _adopt_branches(store: TrialStore, staging: str, report: SyncReport) -> None:
    checked_out = store.checked_out_branch()
    for tag, theirs in _staged(store, f"{staging}branches/").items():
        name = BRANCH_PREFIX + tag
        ours = store.ref_target(name)
        if ours == theirs or (ours is not None and store.descends_from(ours, theirs)):
            continue
        if ours is not None and not store.descends_from(theirs, ours):
            report.branches.append(f"skylab/{tag} has diverged from the remote's: left as it is")
            continue
        if name == checked_out:
            report.branches.append(
                f"skylab/{tag} is checked out: update it with `git merge --ff-only {theirs[:10]}`"
            )
            continue
        try:
            store.move_run_branch(tag, theirs, "pull")
        except StoreError as exc:  # a branch name that is no run tag of ours
            report.left_out.append(f"branch skylab/{tag}: {exc}")
            continue
        report.branches.append(f"skylab/{tag} {'fast-forwarded' if ours else 'created'} at {theirs[:10]}")


def _stray_trial_ref(store: TrialStore, name: str, commit: str, named: dict[str, str]) -> str:
    """Why the remote's trial ref `name` -> `commit` must not be adopted ("" when it may)."""
    if parse_trial_ref(name, commit) is None:
        return "not a trial ref name (tag/number)"
    if store.tree_of(commit) is None:
        return f"points at {commit[:10]}, which is not a commit"
    if commit in named and named[commit] != name:
        return f"points at the commit of trial {named[commit]}"
    return ""


def _choose_best(
    store: TrialStore,
    theirs: str | None,
    prefers: Prefers,
    report: SyncReport,
) -> None:
    ours = store.best()
    if theirs is None or theirs == ours:
        return
    history = store.load()
    index = history.by_commit()
    their_trial = index.get(theirs)
    our_trial = index.get(ours or "")
    if their_trial is None or not _may_be_best(their_trial):
        metric = history_metric(their_trial)
        report.left_out.append(
            f"the remote's best {theirs[:10]}: not a successful trial with a finite {metric}"
        )
        return
    assert their_trial.value is not None
    if ours is None or prefers(their_trial, our_trial, history):
        store.set_best(theirs, "pull best")
        report.best = f"{their_trial.name} ({their_trial.value:.6f}, from the remote)"


def _may_be_best(trial: Trial) -> bool:
    note = trial.note
    return (
        note is not None
        and note.status is Status.SUCCESS
        and note.value is not None
        and math.isfinite(note.value)
    )


def history_metric(trial: Trial | None) -> str:
    return trial.note.metric if trial is not None and trial.note is not None else "metric"


def push(store: TrialStore, remote: str, prefers: Prefers) -> SyncReport:
    """Integrate the remote's trials first (so none of theirs is overwritten), then push ours:
    unless every ref we would push is already the remote's (as just fetched)."""
    report = pull(store, remote, prefers, every_trial_ref=False)
    staging = staging_prefix(store, remote)
    ours = _pushable(store)
    theirs = _shared_staged(store, staging)
    staged_trials = _staged(store, f"{staging}skylab/trials/")
    theirs.update({f"skylab/trials/{rest}": commit for rest, commit in staged_trials.items()})
    if all(theirs.get(_tracked(name)) == commit for name, commit in ours.items()):
        return report
    specs = [f"{TRIALS_PREFIX}*:{TRIALS_PREFIX}*", f"{BRANCH_PREFIX}*:{BRANCH_PREFIX}*"]
    if store.ref_target(NOTES_REF):
        specs.append(f"{NOTES_REF}:{NOTES_REF}")
    if store.baseline():
        specs.append(f"{BASELINE_REF}:{BASELINE_REF}")
    if store.best():
        specs.append(f"+{BEST_REF}:{BEST_REF}")  # already the better of both sides
    # --atomic: all or nothing, so a rejected trial ref never leaves its notes pushed without it.
    output = _git(store, "push", "--atomic", "--porcelain", remote, *specs)
    for line in output.splitlines():
        flag, _, rest = line.partition("\t")
        ref = rest.split("\t")[0].split(":")[-1]
        if flag in ("*", "+", " ", "-") and ref:
            report.pushed.append(ref)
        elif flag == "!" and ref:
            reason = rest.split("\t")[1] if "\t" in rest else "rejected"
            report.rejected.append(f"{ref} ({reason})")
    if "fatal:" in output and not report.pushed and not report.rejected:
        raise StoreError("git push failed: " + git_failure(output))
    if report.pushed and not report.rejected:
        _track_pushed(store, staging, {name: ours[name] for name in report.pushed if name in ours})
    return report


def _pushable(store: TrialStore) -> dict[str, str]:
    """Every ref a push sends, by full name -> commit."""
    found = {TRIALS_PREFIX + rest: commit for rest, commit in store.refs_under(TRIALS_PREFIX)}
    found.update({BRANCH_PREFIX + tag: commit for tag, commit in store.refs_under(BRANCH_PREFIX)})
    for name in (NOTES_REF, BASELINE_REF, BEST_REF):
        target = store.ref_target(name)
        if target is not None:
            found[name] = target
    return found


def _tracked(name: str) -> str:
    """Where the staged copy of our ref `name` lies, under a remote's staging folder."""
    if name.startswith(BRANCH_PREFIX):
        return "branches/" + name.removeprefix(BRANCH_PREFIX)
    return name.removeprefix("refs/")  # refs/skylab/... -> skylab/..., refs/notes/x -> notes/x


def _track_pushed(store: TrialStore, staging: str, pushed: dict[str, str]) -> None:
    """Move the staged copies to what was pushed, so the next sync knows the remote has them.
    Not after a push of more than TRACK_AFTER_PUSH trial refs (a first push): the next fetch
    stages those, and writing them here would double the first push's time."""
    if sum(name.startswith(TRIALS_PREFIX) for name in pushed) > TRACK_AFTER_PUSH:
        return
    store.track_remote_refs({staging + _tracked(name): commit for name, commit in pushed.items()})
