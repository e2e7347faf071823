from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from skylab.experiment.scaffold import init_experiment
from skylab.store.gitstore import TrialStore
from tests.slurm import slurm  # noqa: F401  (a fixture for every test module)
from tests.sshd import sshd  # noqa: F401  (a fixture for every test module)

SKYLAB = str(Path(sys.executable).parent / "skylab")


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fixed identity and no user/system git config, so tests see what a fresh machine sees."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    (home / ".gitconfig").write_text("[user]\n\tname = Test Researcher\n\temail = test@example.com\n")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """An initialised tiny-bigram experiment repository (numpy only: fast to copy and to run)."""
    directory = tmp_path / "exp"
    init_experiment(directory, template="tiny-bigram")
    return directory


@pytest.fixture
def store(experiment: Path) -> TrialStore:
    return TrialStore.open(experiment)


def ctrl_c_reaches_it() -> None:
    """preexec_fn for a process a test will Ctrl-C: SIGINT back to its default, which a test run
    started in the background of a shell (`make test &`) would otherwise pass on as ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_skylab(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """The installed `skylab` command, as a user runs it."""
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([SKYLAB, *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"skylab {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def copy_template(tmp_path: Path) -> Iterator[Path]:
    """A writable copy of the tiny-bigram template, not yet a repository."""
    from skylab.experiment.resources import template_dir

    target = tmp_path / "tpl"
    shutil.copytree(template_dir("tiny-bigram"), target)
    yield target


@pytest.fixture
def team(experiment: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two teammates: Alice's experiment with a bare remote, Bob's clone of it; (alice, bob, remote)."""
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=experiment)
    git("push", "-q", "origin", "main", cwd=experiment)
    run_skylab("push", "-C", str(experiment), check=True)
    bob = tmp_path / "bob"
    git("clone", "-q", str(remote), str(bob), cwd=tmp_path)
    run_skylab("init", str(bob), check=True)
    return experiment, bob, remote
