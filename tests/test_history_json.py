"""`skylab history --json` from chunks kept between calls (`.git/skylab/history-json`): always the
bytes a build from nothing prints, and only the chunks whose trials changed are built again."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from skylab.jsontext import json_bytes
from skylab.report import history_json as history_json_module
from skylab.report.history_json import history_json
from skylab.report.history_view import HistoryRow, history_rows, rows_as_json
from skylab.store.gitstore import TrialStore
from skylab.store.history import History, Trial
from tests.factory import add_trial

Select = Callable[[History], list[Trial]]


def every(history: History) -> list[Trial]:
    return history.trials


def from_nothing(experiment: Path, select: Select = every) -> bytes:
    history = TrialStore.open(experiment).load()
    return json_bytes(rows_as_json(history_rows(history, select(history))))


def kept(experiment: Path, select: Select = every) -> bytes:
    store = TrialStore.open(experiment)  # a new handle, as each `skylab history --json` is
    history = store.load()
    return history_json(store, history, select(history), chunk=3)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The trials whose rows were built (not taken from the kept file), in the order built."""
    seen: list[list[str]] = []
    build = history_rows

    def counting(history: History, trials: list[Trial]) -> list[HistoryRow]:
        seen.append([t.name for t in trials])
        return build(history, trials)

    monkeypatch.setattr(history_json_module, "history_rows", counting)
    return seen


def rewrite_value(store: TrialStore, experiment: Path, commit: str, value: float) -> None:
    """Rewrite a trial's note by hand with another value, as `git notes add -f` would."""
    note = store.note_for(commit)
    assert note is not None
    text = dataclasses.replace(note, value=value).format()
    subprocess.run(
        ["git", "-C", str(experiment), "notes", "--ref=skylab", "add", "-f", "-m", text, commit], check=True
    )


def test_new_trials_build_only_the_last_chunk(
    store: TrialStore, experiment: Path, built: list[list[str]]
) -> None:
    for n in range(7):
        add_trial(store, "d", 3.0 - n / 100)
    assert kept(experiment) == from_nothing(experiment)
    assert built == [[f"d/{n}" for n in range(1, 8)]]
    built.clear()
    assert kept(experiment) == from_nothing(experiment) and built == []  # nothing new: nothing built
    add_trial(store, "d", 2.0)
    assert kept(experiment) == from_nothing(experiment)
    assert built == [["d/7", "d/8"]]


def test_a_parents_value_rewritten_rebuilds_the_chunks_of_its_children(
    store: TrialStore, experiment: Path, built: list[list[str]]
) -> None:
    refs = [add_trial(store, "d", 3.0 - n / 100) for n in range(7)]  # each kept: the next's parent
    kept(experiment)
    built.clear()
    rewrite_value(store, experiment, refs[2].commit, 2.5)  # d/3, last of the first chunk
    assert kept(experiment) == from_nothing(experiment)  # d/4's change against it is shown anew
    assert built == [["d/1", "d/2", "d/3", "d/4", "d/5", "d/6"]]


def test_the_best_moved_or_a_note_made_unreadable_rebuilds_their_chunks(
    store: TrialStore, experiment: Path, built: list[list[str]]
) -> None:
    refs = [add_trial(store, "d", 3.0 - n / 100) for n in range(7)]
    kept(experiment)
    built.clear()
    store.set_best(refs[0].commit, "test")
    assert kept(experiment) == from_nothing(experiment)
    assert built == [["d/1", "d/2", "d/3", "d/7"]]  # where the best was, and is
    built.clear()
    git = ["git", "-C", str(experiment), "notes", "--ref=skylab"]
    subprocess.run([*git, "add", "-f", "-m", "not a note", refs[4].commit], check=True)
    assert kept(experiment) == from_nothing(experiment)
    # Without its start time d/5 sorts first (by its commit's time): the first two chunks change.
    assert [sorted(names) for names in built] == [["d/1", "d/2", "d/3", "d/4", "d/5", "d/6"]]


def test_a_run_or_the_kept_chain_alone_and_a_damaged_file(store: TrialStore, experiment: Path) -> None:
    for n in range(5):
        add_trial(store, "d", 3.0 - n / 100)
        add_trial(store, "e", 3.0 + n / 100)
    one_run: Select = lambda history: history.for_tag("e")  # noqa: E731
    assert kept(experiment, one_run) == from_nothing(experiment, one_run)
    chain: Select = lambda history: history.kept_chain()  # noqa: E731
    assert kept(experiment, chain) == from_nothing(experiment, chain)
    kept_file = experiment / ".git" / "skylab" / "history-json"
    kept_file.write_bytes(b"\x80\x05garbage")
    assert kept(experiment) == from_nothing(experiment)
    # A changed byte inside a kept chunk would print as a changed row: its checksum fails it.
    damaged = kept_file.read_bytes().replace(b'"description":"trial 3"', b'"description":"trial 9"')
    assert damaged != kept_file.read_bytes()
    kept_file.write_bytes(damaged)
    assert kept(experiment) == from_nothing(experiment)
