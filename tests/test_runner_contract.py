"""One contract every runner passes (as Optuna's samplers and storages each pass one suite): success,
crash, missing metric, timeout and stop, against the local runner, a real sshd on loopback and a
real local Slurm."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skylab.runner import Runner, RunResult, TrialRequest, TrialStopped
from skylab.runner.registry import RUNNERS
from skylab.store.notes import Status
from tests.slurm import LocalSlurm
from tests.sshd import SSHServer

SUCCESS = """\
import os
print("step 00000 | loss 3.0", flush=True)
print("---")
print("val_bpb:          0.9979")
print("peak_vram_mb:     512.5")
print("seed:             " + os.environ.get("SKYLAB_CONTRACT", "unset"))
"""
CRASH = "import sys\nprint('step 00000', flush=True)\nsys.exit('RuntimeError: boom')\n"
NO_METRIC = "print('---')\nprint('loss: 3.0')\n"
SLOW = "import time\nprint('step 00000', flush=True)\ntime.sleep(120)\n"

MakeRunner = Callable[[], Runner]


def local_runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeRunner]:
    from skylab.runner.local import LocalRunner

    yield lambda: LocalRunner(kill_grace=1.0)


def remote_runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeRunner]:
    from skylab.runner.remote import RemoteRunner
    from skylab.runner.remote_config import load_remote_config

    server: SSHServer = request.getfixturevalue("sshd")
    toml = tmp_path / "remote.toml"
    toml.write_text(server.remote_toml(tmp_path / "remote-work"))
    yield lambda: RemoteRunner(load_remote_config(toml), kill_grace=1.0, backoff=0.1)


def slurm_runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeRunner]:
    from skylab.experiment.config import SlurmConfig
    from skylab.runner.slurm import SlurmRunner

    slurm: LocalSlurm = request.getfixturevalue("slurm")
    patch = pytest.MonkeyPatch()
    patch.setenv("SLURM_CONF", str(slurm.conf))
    yield lambda: SlurmRunner(SlurmConfig(poll_seconds=0.3))
    patch.undo()


# How the suite gets a runner of each registered kind, against the real thing it drives: a new
# kind in RUNNERS without one here fails `test_every_registered_runner_is_in_the_suite`.
SETUPS = {"local": local_runner, "remote": remote_runner, "slurm": slurm_runner}
QUICK = {"local"}  # the others start a real sshd or Slurm: with the slow tests


@pytest.fixture(
    params=[name if name in QUICK else pytest.param(name, marks=pytest.mark.slow) for name in RUNNERS]
)
def make_runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeRunner]:
    yield from SETUPS[request.param](request, tmp_path)


def test_every_registered_runner_is_in_the_suite() -> None:
    assert set(SETUPS) == set(RUNNERS)


def workdir_with(tmp_path: Path, script: str) -> Path:
    """A trial's work tree: a git repository holding train.py (the remote runner syncs its index)."""
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    (workdir / "train.py").write_text(script)
    for args in (["init", "-q"], ["add", "train.py"]):
        subprocess.run(["git", *args], cwd=workdir, check=True, capture_output=True)
    return workdir


def run(
    make_runner: MakeRunner, tmp_path: Path, script: str, **options: object
) -> tuple[RunResult, list[str]]:
    lines: list[str] = []
    request = TrialRequest(
        workdir_with(tmp_path, script),
        "python train.py",
        "val_bpb",
        float(options.pop("wall_limit", 60.0)),  # type: ignore[arg-type]
        tmp_path / "logs" / "1.log",
        lines.append,
        **options,  # type: ignore[arg-type]
    )
    return make_runner().run(request), lines


def test_success_reads_the_summary_streams_lines_and_passes_the_environment(
    make_runner: MakeRunner, tmp_path: Path
) -> None:
    result, lines = run(make_runner, tmp_path, SUCCESS, env={"SKYLAB_CONTRACT": "7"})
    assert result.status is Status.SUCCESS and result.value == 0.9979 and result.peak_vram_mb == 512.5
    assert result.summary["seed"] == 7.0
    assert "step 00000 | loss 3.0" in lines
    assert "val_bpb" in (tmp_path / "logs" / "1.log").read_text()


def test_a_crash_keeps_the_log_tail(make_runner: MakeRunner, tmp_path: Path) -> None:
    result, _ = run(make_runner, tmp_path, CRASH)
    assert result.status is Status.CRASH and "boom" in result.log_tail and result.value is None


def test_a_missing_metric_is_a_crash(make_runner: MakeRunner, tmp_path: Path) -> None:
    result, _ = run(make_runner, tmp_path, NO_METRIC)
    assert result.status is Status.CRASH and "printed no val_bpb" in result.reason


def test_the_wall_limit_ends_the_trial(make_runner: MakeRunner, tmp_path: Path) -> None:
    started = time.monotonic()
    result, _ = run(make_runner, tmp_path, SLOW, wall_limit=3.0)
    assert result.status is Status.TIMEOUT and "wall-time limit" in result.reason
    assert time.monotonic() - started < 60


def test_stop_ends_the_trial_with_trial_stopped(make_runner: MakeRunner, tmp_path: Path) -> None:
    stop = threading.Event()
    log = tmp_path / "logs" / "1.log"

    def stop_once_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and "step 00000" in log.read_text()):
            time.sleep(0.05)
        stop.set()

    stopper = threading.Thread(target=stop_once_running)
    stopper.start()
    started = time.monotonic()
    with pytest.raises(TrialStopped):
        run(make_runner, tmp_path, SLOW, stop=stop)
    stopper.join()
    assert time.monotonic() - started < 60


def test_an_unknown_kind_is_an_error_naming_the_known_ones(tmp_path: Path) -> None:
    from skylab.errors import SkylabError
    from skylab.experiment.config import load_config
    from skylab.runner.registry import WorkerSettings, make_runners
    from skylab.strategy import make_strategy
    from tests.loop_experiment import make_loop_experiment

    config = load_config(make_loop_experiment(tmp_path / "q"))
    with pytest.raises(SkylabError, match=r"unknown runner 'ssh' \(runners: local, remote, slurm\)"):
        make_runners("ssh", WorkerSettings(config))
    with pytest.raises(SkylabError, match=r"unknown strategy 'grid' \(strategies: sweep, llm\)"):
        make_strategy("grid", config)
