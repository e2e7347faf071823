"""Which of a teammate's notes to take: the pure rule behind `TrialStore.merge_notes`.

A note we have is never removed or replaced by the teammate's version, except that a trial's own
finished note replaces an `interrupted` note of the same trial (their run finished what ours saw
stop). Every other difference keeps our note and is reported as a conflict.
"""

from __future__ import annotations

import pygit2

from skylab.store.notes import NoteFormatError, Status, TrialNote


def finishes_interrupted(old: pygit2.Blob, new: pygit2.Blob) -> bool:
    """Whether `new` is the finished note of the trial that `old` records as interrupted."""
    try:
        before = TrialNote.parse(old.data.decode("utf-8", "replace"))
        after = TrialNote.parse(new.data.decode("utf-8", "replace"))
    except NoteFormatError:
        return False
    same_trial = (before.tag, before.trial) == (after.tag, after.trial)
    return same_trial and before.status is Status.INTERRUPTED and after.status is not Status.INTERRUPTED


def notes_to_take(
    ours: dict[str, pygit2.Blob], theirs: dict[str, pygit2.Blob]
) -> tuple[dict[str, pygit2.Oid], list[str]]:
    """(annotated commit -> the teammate's blob to write, sorted commits whose notes conflict)."""
    take = {commit: blob.id for commit, blob in theirs.items() if commit not in ours}
    conflicts = []
    for commit, blob in theirs.items():
        if commit in ours and ours[commit].id != blob.id:
            if finishes_interrupted(ours[commit], blob):
                take[commit] = blob.id
            elif not finishes_interrupted(blob, ours[commit]):
                conflicts.append(commit)
    return take, sorted(conflicts)
