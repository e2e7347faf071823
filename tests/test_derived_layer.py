"""The derived layer: every derived file declared once, invalidated by a change of the classes it
pickles (no version to remember to bump), bounded, and dropped all at once by `skylab gc`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import skylab
from skylab.experiment.resources import resource_dir
from skylab.store import loading
from skylab.store.derived import diffcache
from skylab.store.derived.catalog import DERIVED_FILES, DIFF_CACHE
from skylab.store.derived.derivedfile import DerivedFile
from skylab.store.gitstore import TrialStore
from tests.conftest import SKYLAB
from tests.factory import add_trial

FIELD_BEFORE = "    value: float | None = None\n"


def skylab_from(package_root: Path | None, experiment: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI of the skylab package under `package_root` (None: the installed one). `-P` and a
    working directory of its own: neither the current directory nor the checkout shadows it."""
    env = {**os.environ, "COLUMNS": "200"}
    if package_root is not None:
        env["PYTHONPATH"] = str(package_root)
    command = [
        sys.executable,
        "-P",
        "-c",
        "from skylab.cli import main; main()",
        *args,
        "-C",
        str(experiment),
    ]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=True, cwd=experiment.parent
    )


def with_note_field_in_the_middle(tmp_path: Path) -> Path:
    """A copy of skylab whose TrialNote has a new field right after `value`: what a contributor
    adding a field does, with no format version touched."""
    root = tmp_path / "changed"
    shutil.copytree(
        Path(skylab.__file__).parent, root / "skylab", ignore=shutil.ignore_patterns("__pycache__")
    )
    for shipped in ("experiments", "hooks", "templates"):  # beside the package in a checkout
        (root / shipped).symlink_to(resource_dir(shipped))
    notes = root / "skylab" / "store" / "notes.py"
    text = notes.read_text()
    assert text.count(FIELD_BEFORE) == 1
    notes.write_text(text.replace(FIELD_BEFORE, FIELD_BEFORE + "    value_low: float | None = None\n"))
    check = "import skylab.store.notes as notes; print(notes.NOTE_FIELDS[5:7])"
    env = {**os.environ, "PYTHONPATH": str(root)}
    used = subprocess.run(
        [sys.executable, "-P", "-c", check], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert used.stdout.strip() == "('value', 'value_low')", used.stderr  # the copy is what runs
    return root


def test_a_note_field_added_in_the_middle_rebuilds_old_caches_and_never_misreads_them(
    experiment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "SAVE_AFTER", 1)  # the cache is written by this process's load
    store = TrialStore.open(experiment)
    for value in (2.0, 1.5, 1.7):
        add_trial(store, "r", value, description=f"value {value}")
    TrialStore.open(experiment).load()
    skylab_from(None, experiment, "history", "--json")  # the history-json chunks, too
    assert (store.git.skylab_dir / "history-cache").is_file() and (
        store.git.skylab_dir / "history-json"
    ).is_file()
    changed = with_note_field_in_the_middle(tmp_path)

    from_old_files = skylab_from(changed, experiment, "history", "--json").stdout
    for file in DERIVED_FILES:
        file.drop(store.git.skylab_dir)
    from_state = skylab_from(changed, experiment, "history", "--json").stdout

    assert from_old_files == from_state
    rows = json.loads(from_state)
    assert [(row["value"], row["description"]) for row in rows] == [
        (2.0, "value 2.0"),
        (1.5, "value 1.5"),
        (1.7, "value 1.7"),
    ]


@dataclass
class Point:
    x: int
    y: int


@dataclass
class PointWithZ:
    x: int
    z: int
    y: int


def test_the_fingerprint_follows_the_fields_of_the_classes_a_file_pickles(tmp_path: Path) -> None:
    def declared(kind: type, format: int = 1) -> DerivedFile:
        return DerivedFile("points", "test", format, (kind,), "never", 1 << 20)

    assert declared(Point).fingerprint == declared(Point).fingerprint
    assert declared(Point).fingerprint != declared(PointWithZ).fingerprint
    assert declared(Point).fingerprint != declared(Point, format=2).fingerprint
    declared(Point).save(tmp_path, [Point(1, 2)])
    assert declared(Point).load(tmp_path) == [Point(1, 2)]
    assert declared(PointWithZ).load(tmp_path) is None  # another schema: absent, rebuilt by the caller


def test_a_value_over_the_size_bound_removes_the_file_instead(tmp_path: Path) -> None:
    small = DerivedFile("bounded", "test", 1, (), "never", max_bytes=1000)
    small.save(tmp_path, "x" * 10)
    assert small.load(tmp_path) == "x" * 10
    small.save(tmp_path, "x" * 5000)
    assert small.load(tmp_path) is None and not (tmp_path / "bounded").exists()


def test_the_diff_cache_keeps_what_was_asked_and_a_bounded_number_of_others(tmp_path: Path) -> None:
    computed: list[tuple[str, str]] = []

    def compute(commit: str, parent: str) -> str:
        computed.append((commit, parent))
        return f"diff {commit}"

    keys = [(f"c{n}", "") for n in range(10)]
    assert diffcache.cached_diffs(tmp_path, keys, compute, kept_beyond=3) == [f"diff c{n}" for n in range(10)]
    later = [(f"c{n}", "") for n in range(10, 12)]
    diffcache.cached_diffs(tmp_path, later, compute, kept_beyond=3)
    kept = DIFF_CACHE.load(tmp_path)
    assert isinstance(kept, dict) and len(kept) == 5 and set(later) <= set(kept)
    computed.clear()
    assert diffcache.cached_diffs(tmp_path, later, compute, kept_beyond=3) == ["diff c10", "diff c11"]
    assert computed == []  # reused


def test_skylab_gc_drops_every_derived_file_and_keeps_the_state(
    experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "SAVE_AFTER", 1)
    store = TrialStore.open(experiment)
    for value in (2.0, 1.5, 1.7):
        add_trial(store, "r", value)
    TrialStore.open(experiment).load()
    before = subprocess.run(
        [SKYLAB, "history", "--json", "-C", str(experiment)], capture_output=True, text=True
    )
    report = experiment.parent / "report.html"
    subprocess.run(
        [SKYLAB, "report", "-o", str(report), "-C", str(experiment)], check=True, capture_output=True
    )
    (store.git.skylab_dir / "remotes").mkdir(exist_ok=True)
    (store.git.skylab_dir / "remotes" / "origin").write_bytes(b"a stale record")
    (store.git.skylab_dir / ".history-cache.123.tmp").write_bytes(b"left by a kill -9")
    present = [file.name for file in DERIVED_FILES if (store.git.skylab_dir / file.name).exists()]
    state = [
        path for path in store.git.skylab_dir.rglob("*") if path.is_file() and not is_derived(path, store)
    ]
    assert state  # the lock, the clone's own tags
    assert set(present) == {"history-cache", "diff-cache", "history-json", "report-details", "remotes"}

    dry = subprocess.run([SKYLAB, "gc", "--dry-run", "-C", str(experiment)], capture_output=True, text=True)
    assert dry.returncode == 0 and "would drop history-cache" in dry.stdout
    assert all((store.git.skylab_dir / name).exists() for name in present)

    done = subprocess.run([SKYLAB, "gc", "-C", str(experiment)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in present:
        assert f"dropped {name}" in done.stdout
        assert not (store.git.skylab_dir / name).exists()
    assert not (store.git.skylab_dir / ".history-cache.123.tmp").exists()
    assert all(path.exists() for path in state)
    after = subprocess.run(
        [SKYLAB, "history", "--json", "-C", str(experiment)], capture_output=True, text=True
    )
    assert after.stdout == before.stdout  # rebuilt from the state, the same
    again = subprocess.run([SKYLAB, "gc", "-C", str(experiment)], capture_output=True, text=True)
    assert again.returncode == 0


def is_derived(path: Path, store: TrialStore) -> bool:
    first = path.relative_to(store.git.skylab_dir).parts[0]
    return any(first == file.name or first.startswith(f".{file.name}.") for file in DERIVED_FILES)
