"""What the LLM researcher carries from trial to trial, read back from the notes (git-native: it
survives a crash and travels with push/pull like every result).

- **Memory**: each trial's `lesson` (what it taught), and every so often a `memory` the model wrote
  by consolidating the lessons within MEMORY_CHARS; the prompt shows the latest memory and the
  lessons since.
- **Ledger**: each trial's `predicted_delta` (the metric change the model expected) scored against the
  measured change, per `category` of change.
- **Plateau**: after PLATEAU_TRIALS trials without a keep, the prompt asks for another category.
Pure functions of the history; the notes hold everything.
"""

from __future__ import annotations

import json
import math

from skylab.experiment.objective import is_better
from skylab.store.history import History, Trial
from skylab.store.notes import Status

CATEGORIES = ("architecture", "optimisation", "schedule", "data", "simplification", "other")
MEMORY_CHARS = 4000  # the consolidated memory's cap
LESSON_CHARS = 300
CONSOLIDATE_EVERY = 10  # trials with lessons between two consolidations
PLATEAU_TRIALS = 8


def _mine(history: History, tag: str | None) -> list[Trial]:
    return [t for t in history.for_tag(tag) if t.note is not None]


def trials_since_keep(trials: list[Trial]) -> int:
    """How many of `trials` (in order) came after the last kept one (all of them when none was)."""
    kept = [index for index, trial in enumerate(trials) if trial.kept]
    return len(trials) - 1 - kept[-1] if kept else len(trials)


def latest_memory(history: History, tag: str) -> tuple[str, int]:
    """(the latest consolidated memory, the index of its trial in the run; -1 when none)."""
    trials = _mine(history, tag)
    for index in range(len(trials) - 1, -1, -1):
        note = trials[index].note
        if note is not None and "memory" in note.other:
            try:
                text = json.loads(note.other["memory"])
            except ValueError:
                continue
            if isinstance(text, str):
                return text, index
    return "", -1


def lessons_since(history: History, tag: str, index: int) -> list[tuple[str, str]]:
    """(trial name, lesson) of every trial after `index`, oldest first."""
    trials = _mine(history, tag)[index + 1 :]
    return [(t.name, t.note.other["lesson"]) for t in trials if t.note and t.note.other.get("lesson")]


def memory_section(history: History, tag: str) -> str:
    memory, index = latest_memory(history, tag)
    lessons = lessons_since(history, tag, index)
    if not memory and not lessons:
        return ""
    parts = ["## Research memory (yours: what the trials so far have taught)"]
    if memory:
        parts.append(memory)
    if lessons:
        parts.append("Lessons since:" if memory else "Lessons:")
        shown, size = [], 0
        for name, lesson in reversed(lessons):  # the newest first, within twice the memory's cap
            if size + len(lesson) > 2 * MEMORY_CHARS:
                break
            shown.append(f"- {name}: {lesson}")
            size += len(lesson)
        parts += list(reversed(shown))
    return "\n".join(parts)


def consolidation_due(history: History, tag: str) -> bool:
    _, index = latest_memory(history, tag)
    return len(lessons_since(history, tag, index)) >= CONSOLIDATE_EVERY


def ledger(history: History, tag: str | None) -> dict[str, tuple[int, int, float]]:
    """Per category: (predictions scored, direction right, mean |predicted − measured|), over the
    trials that predicted a change and were measured against a measured parent."""
    by_commit = history.by_commit()
    scores: dict[str, list[tuple[bool, float]]] = {}
    for trial in _mine(history, tag):
        note = trial.note
        assert note is not None
        parent = by_commit.get(note.parent)
        try:
            predicted = float(note.other.get("predicted_delta", "nan"))
        except ValueError:
            continue
        if parent is None or parent.value is None or note.value is None or not math.isfinite(predicted):
            continue
        measured = note.value - parent.value
        right = (measured < 0) == (predicted < 0) if predicted and measured else predicted == measured
        scores.setdefault(note.other.get("category", "other"), []).append((right, abs(measured - predicted)))
    return {
        category: (len(rows), sum(r for r, _ in rows), sum(e for _, e in rows) / len(rows))
        for category, rows in sorted(scores.items())
    }


def ledger_section(history: History, tag: str) -> str:
    table = ledger(history, tag)
    if not table:
        return ""
    lines = ["## How your predictions held up (predicted vs measured change of the metric)"]
    for category, (count, right, error) in table.items():
        lines.append(
            f"- {category}: {count} predictions, direction right {right}/{count}, mean error {error:.4g}"
        )
    return "\n".join(lines)


def plateau_line(history: History, tag: str) -> str:
    """The category mix, and after PLATEAU_TRIALS trials without a keep, a push to another one."""
    trials = _mine(history, tag)
    mix: dict[str, int] = {}
    for trial in trials:
        category = trial.note.other.get("category") if trial.note else None
        if category:
            mix[category] = mix.get(category, 0) + 1
    if not mix:
        return ""
    line = "Categories tried so far: " + ", ".join(
        f"{c} {n}" for c, n in sorted(mix.items(), key=lambda x: -x[1])
    )
    since = trials_since_keep(trials)
    if since >= PLATEAU_TRIALS:
        recent = [t.note.other.get("category", "") for t in trials[-since:] if t.note]
        common = max(set(recent), key=recent.count) if recent else ""
        line += f". No keep in the last {since} trials: propose a change of a different category" + (
            f" than {common}" if common else ""
        )
    return line + "."


NEAR_MISSES = 5


def near_misses_section(history: History, tag: str, direction: str) -> str:
    """The latest trials that were confirmed (their first measurement beat the best), measured better
    than their parent on average, and still were reverted, so within the noise: worth another try on
    the new best, or combined with each other."""
    by_commit = history.by_commit()
    misses = []
    for trial in _mine(history, tag):
        note, parent = trial.note, by_commit.get(trial.parent)
        if note is None or trial.kept or trial.status is not Status.SUCCESS or len(note.measurements) < 2:
            continue
        if parent is not None and note.value is not None and is_better(note.value, parent.value, direction):
            misses.append(trial)
    if not misses:
        return ""
    lines = ["## Near misses (better, but within noise: worth retrying on the new best, or combining two)"]
    for trial in misses[-NEAR_MISSES:]:
        assert trial.note is not None
        lines.append(f"- {trial.name}: {trial.note.description} ({trial.note.verdict})")
    return "\n".join(lines)
