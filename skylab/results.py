"""What a researcher does with the results: bring a trial into their checkout, branch from it, and
compare two trials. Reads through the store; writes refs only through it (`create_branch`); writes
the checkout's editable files only when they hold no uncommitted edit, unless forced."""

from __future__ import annotations

from dataclasses import dataclass

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig, experiment_file
from skylab.report.history_view import format_mean
from skylab.store.gitstore import TrialStore
from skylab.store.history import Trial


def apply_trial(store: TrialStore, config: ExperimentConfig, trial: Trial, force: bool = False) -> list[str]:
    """Write `trial`'s editable files into the checkout as uncommitted changes; one line per file
    that changed. Refused when one of them has uncommitted edits (they would be lost), unless `force`."""
    editable = list(config.editable_files)
    dirty = sorted(
        name
        for name in store.dirty_paths() & set(editable)
        if _content(store, name) != store.file_at(trial.commit, name)  # already the trial's: no loss
    )
    if dirty and not force:
        raise SkylabError(
            f"{', '.join(dirty)} {'has' if len(dirty) == 1 else 'have'} uncommitted edits that apply would "
            "overwrite: commit or stash them, or pass --force"
        )
    changed = []
    for name in editable:
        wanted = store.file_at(trial.commit, name)
        path = experiment_file(store.root, name)
        current = _content(store, name)
        if wanted == current:
            continue
        if wanted is None:
            path.unlink()
            changed.append(f"deleted {name}")
        else:
            path.write_bytes(wanted)
            changed.append(f"{'wrote' if current is not None else 'created'} {name}")
    return changed


def _content(store: TrialStore, name: str) -> bytes | None:
    path = experiment_file(store.root, name)
    return path.read_bytes() if path.is_file() else None


@dataclass
class Side:
    """One trial in a comparison: the lines `skylab diff` shows for it."""

    name: str
    value: str
    status: str
    vram: str
    steps: str


def _side(trial: Trial) -> Side:
    note = trial.note
    if note is None:
        return Side(trial.name, "—", "interrupted", "—", "—")
    value = format_mean(note.value, len(note.measurements), note.sem) or "—"
    steps = note.summary.get("num_steps")
    return Side(
        trial.name,
        value,
        f"{note.status.value}, {note.decision.value}",
        "—" if note.peak_vram_mb is None else f"{note.peak_vram_mb / 1024:.1f} GB",
        "—" if not isinstance(steps, int | float) else f"{steps:g}",
    )


def compare(
    store: TrialStore, config: ExperimentConfig, a: Trial, b: Trial
) -> tuple[list[tuple[str, str, str]], str]:
    """The two trials side by side ((field, A, B) rows: the metric, every constant that differs as
    from → to, status, VRAM, steps) and the editable files' diff from A to B."""
    left, right = _side(a), _side(b)
    rows = [("trial", left.name, right.name), (config.metric, left.value, right.value)]
    params_a = a.note.params if a.note else {}
    params_b = b.note.params if b.note else {}
    for key in sorted(set(params_a) | set(params_b)):
        if params_a.get(key) != params_b.get(key):
            rows.append((key, str(params_a.get(key, "—")), str(params_b.get(key, "—"))))
    rows += [
        ("status", left.status, right.status),
        ("peak VRAM", left.vram, right.vram),
        ("steps", left.steps, right.steps),
    ]
    return rows, store.diff_text(a.commit, b.commit, list(config.editable_files))
