"""The report's trial details: packed in chunks, each built once and kept until a trial in it
changes (`.git/skylab/report-details`)."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from pathlib import Path

import pytest

from skylab.report import details as details_module
from skylab.report.details import NO_NOTE, details_chunks
from skylab.store.gitstore import TrialStore
from skylab.store.history import Trial
from tests.factory import add_trial


def unpacked(chunks: list[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for chunk in chunks:
        found.update(json.loads(gzip.decompress(base64.b64decode(chunk))))
    return found


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The trials of each chunk built (not taken from the kept file), in the order built."""
    seen: list[list[str]] = []
    build = details_module._build

    def counting(groups: list[list[Trial]], store: TrialStore) -> list[str]:
        seen.extend([t.name for t in group] for group in groups)
        return build(groups, store)

    monkeypatch.setattr(details_module, "_build", counting)
    return seen


def chunks_of(experiment: Path, chunk: int = 3) -> list[str]:
    store = TrialStore.open(experiment)  # a new handle, as each `skylab report` is
    return details_chunks(store, store.load().trials, chunk)


def test_a_report_after_new_trials_builds_only_the_chunks_they_change(
    store: TrialStore, experiment: Path, built: list[list[str]]
) -> None:
    for n in range(7):
        add_trial(store, "d", 3.0 - n / 100, description=f"step {n}")
    first = chunks_of(experiment)
    assert [len(group) for group in built] == [3, 3, 1]
    built.clear()
    assert chunks_of(experiment) == first and built == []  # nothing changed: nothing built
    add_trial(store, "d", 2.0, description="step 7")
    second = chunks_of(experiment)
    assert built == [["d/7", "d/8"]] and second[:2] == first[:2]
    (experiment / ".git" / "skylab" / "report-details").unlink()
    assert chunks_of(experiment) == second  # what is kept is what a build from nothing makes
    shown = unpacked(second)["d/8"]
    assert "description: step 7" in shown["note"] and "+VALUE = 2.0" in shown["diff"]


def test_a_note_rewritten_by_hand_rebuilds_its_chunk_and_shows_as_git_holds_it(
    store: TrialStore, experiment: Path, built: list[list[str]]
) -> None:
    refs = [add_trial(store, "d", 3.0 - n / 100) for n in range(5)]
    chunks_of(experiment)
    built.clear()
    text = "skylab-note: 1\nnot a key value line\n"
    git = ["git", "-C", str(experiment), "notes", "--ref=skylab"]
    subprocess.run([*git, "add", "-f", "-m", text, refs[1].commit], check=True)
    shown = unpacked(chunks_of(experiment))
    assert [sorted(group) for group in built] == [["d/1", "d/2", "d/3"]]  # (history orders it anew)
    assert shown["d/2"]["note"].startswith("skylab-note: 1\nnot a key value line")  # unreadable, shown
    subprocess.run([*git, "remove", refs[3].commit], check=True)
    assert unpacked(chunks_of(experiment))["d/4"]["note"] == NO_NOTE


def test_a_damaged_details_file_is_rebuilt(
    store: TrialStore, experiment: Path, built: list[list[str]]
) -> None:
    for n in range(4):
        add_trial(store, "d", 3.0 - n / 100)
    first = chunks_of(experiment)
    (experiment / ".git" / "skylab" / "report-details").write_bytes(b"\x80\x05garbage")
    built.clear()
    assert chunks_of(experiment) == first and len(built) == 2
