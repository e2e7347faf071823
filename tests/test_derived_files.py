"""Derived files under .git/skylab that are not regular files any more (a symlink to /dev/zero, a
FIFO, a directory): history, show and the report read them as absent, say so once, rebuild them,
and print what they print with the files intact; nothing hangs or runs out of memory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from skylab.store.gitstore import TrialStore
from tests.conftest import SKYLAB
from tests.factory import add_trial

DERIVED = ["history-cache", "diff-cache", "history-json", "report-details"]


def skylab(experiment: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [SKYLAB, *args, "-C", str(experiment)], capture_output=True, text=True, env=env, timeout=120
    )


def outputs(experiment: Path) -> list[subprocess.CompletedProcess[str]]:
    return [
        skylab(experiment, "history"),
        skylab(experiment, "history", "--json"),
        skylab(experiment, "show", "r/2"),
        skylab(experiment, "report", "-o", str(experiment.parent / "report.html")),
    ]


@pytest.mark.parametrize(
    "kind",
    [
        "fifo",  # the one that hung: in the quick run; the others with the slow tests
        pytest.param("symlink to /dev/zero", marks=pytest.mark.slow),
        pytest.param("directory", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("name", DERIVED)
def test_a_derived_file_that_is_not_a_regular_file_is_rebuilt_with_one_warning(
    experiment: Path, name: str, kind: str
) -> None:
    store = TrialStore.open(experiment)
    for value in (2.0, 1.5, 1.7):
        add_trial(store, "r", value)
    expected = [result.stdout for result in outputs(experiment)]
    path = store.git.skylab_dir / name
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    else:
        path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
        (path / "x").write_text("in the way\n")
    else:
        path.symlink_to("/dev/zero")
    results = outputs(experiment)
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    assert [r.stdout for r in results][:3] == expected[:3]
    said = [line for r in results for line in r.stderr.splitlines() if "warning:" in line]
    assert all(name in line and "ignored (Skylab rebuilds what it derives)" in line for line in said)
    assert all(r.stderr.count(f"{name} ") <= 1 for r in results)  # once per command at most
