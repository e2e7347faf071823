"""Builds trials through the real store API, as the research loop does, for tests and benchmarks."""

from __future__ import annotations

import pygit2

from skylab.store.gitstore import TrialStore
from skylab.store.notes import Decision, Status, TrialNote, utc_now
from skylab.store.refs import TrialRef


def tree_with(store: TrialStore, parent: str, files: dict[str, str]) -> pygit2.Oid:
    """The tree of `parent` with top-level `files` replaced: what a strategy's edit becomes."""
    repo = store.git.repo
    builder = repo.TreeBuilder(repo[parent].peel(pygit2.Commit).tree)
    for name, text in files.items():
        builder.insert(name, repo.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB)
    return builder.write()


def add_trial(
    store: TrialStore,
    tag: str,
    value: float | None,
    *,
    keep: bool | None = None,
    status: Status = Status.SUCCESS,
    description: str = "",
    files: dict[str, str] | None = None,
    parent: str | None = None,
    params: dict[str, int | float | str | bool] | None = None,
    lower_is_better: bool = True,
    measurements: list[float] | None = None,
) -> TrialRef:
    """Run the store's side of one trial: commit, ref, note, and keep when it beats the best.
    With `measurements`, `value` is expected to be their mean, as the loop records it."""
    parent = parent or store.git.ref_target(f"refs/heads/skylab/{tag}") or store.start_point()
    store.ensure_run_branch(tag, parent)
    number_hint = description or f"trial of {tag}"
    content = files or {"train.py": f"# {number_hint}\nVALUE = {value!r}\n"}
    ref = store.create_trial(tag, tree_with(store, parent, content), parent, number_hint)
    if keep is None:
        best = store.load().by_commit().get(store.best() or "")
        best_value = best.value if best else None
        better = best_value is None or (value is not None and (value < best_value) == lower_is_better)
        keep = status is Status.SUCCESS and value is not None and better
    note = TrialNote(
        trial=ref.number,
        tag=tag,
        status=status,
        decision=Decision.KEEP if keep else Decision.REVERT,
        metric="val_bpb",
        value=value,
        peak_vram_mb=1234.5 if value is not None else None,
        strategy="sweep",
        parent=parent,
        started_at=utc_now(),
        train_seconds=300.0,
        wall_seconds=321.5,
        description=description or f"trial {ref.number}",
        params=params or {},
        measurements=list(measurements or []),
        seeds=list(range(len(measurements or []))),
    )
    store.finish_trial(ref, note)
    return ref


def rewrite_note(store: TrialStore, commit: str, note: TrialNote) -> None:
    """Replace the note of `commit` as a person or another tool would: with `git notes`."""
    import subprocess

    subprocess.run(
        ["git", "notes", "--ref=skylab", "add", "-f", "-F", "-", commit],
        cwd=store.git.root,
        input=note.format(),
        text=True,
        check=True,
        capture_output=True,
    )
