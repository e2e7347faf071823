"""The Slurm runner against a real single-node Slurm (slurmctld, slurmd, munge): submit, follow,
stream, time out, cancel, and map Slurm's end states to trial statuses."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from skylab.experiment.config import SlurmConfig
from skylab.runner import TrialRequest
from skylab.runner.slurm import JobEnd, SlurmRunner, map_end
from skylab.store.notes import Status
from tests.conftest import run_skylab
from tests.loop_experiment import make_loop_experiment
from tests.slurm import LocalSlurm
from tests.test_loop import trials, wait_for


@pytest.fixture()
def slurm_env(slurm: LocalSlurm, monkeypatch: pytest.MonkeyPatch) -> LocalSlurm:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    return slurm


def slurm_experiment(tmp_path: Path, sleep: float, table: str) -> Path:
    """The cheap loop experiment with a committed [slurm] table."""
    exp = make_loop_experiment(tmp_path / "q", SLEEP=sleep)
    toml = exp / "experiment.toml"
    toml.write_text(toml.read_text() + f"\n[slurm]\n{table}\n")
    subprocess.run(["git", "commit", "-qam", "slurm settings"], cwd=exp, check=True)
    return exp


@pytest.mark.parametrize(
    ("state", "code", "status", "retried"),
    [
        ("COMPLETED", 0, Status.SUCCESS, False),
        ("FAILED", 1, Status.CRASH, False),
        ("OUT_OF_MEMORY", 0, Status.CRASH, False),
        ("TIMEOUT", 0, Status.TIMEOUT, False),
        ("NODE_FAIL", 0, Status.INFRA, True),
        ("PREEMPTED", 0, Status.INFRA, True),
        ("BOOT_FAIL", 0, Status.INFRA, True),
        ("CANCELLED by 0", 0, Status.INFRA, False),
    ],
)
def test_slurm_states_map_to_trial_statuses(state: str, code: int, status: Status, retried: bool) -> None:
    mapped, reason, retry = map_end(JobEnd(state, code))
    assert (mapped, retry) == (status, retried)
    assert mapped is Status.SUCCESS or reason


def test_sbatch_options_come_from_the_slurm_table(tmp_path: Path) -> None:
    config = SlurmConfig(partition="gpu", account="lab", gpus_per_trial=8, options=("--qos=high",))
    argv = SlurmRunner(config).sbatch_argv(tmp_path / "w", "python train.py", 660, tmp_path / "1.log")
    assert argv[0] == "sbatch" and "--partition=gpu" in argv and "--account=lab" in argv
    assert "--gpus=8" in argv and "--qos=high" in argv and argv[-1] == "--wrap=python train.py"
    assert "--time=13" in argv  # the wall-time limit plus Slurm's margin, in whole minutes


@pytest.mark.slow
def test_slurm_runs_trials_end_to_end_with_two_workers(tmp_path: Path, slurm_env: LocalSlurm) -> None:
    exp = slurm_experiment(tmp_path, 1.0, 'partition = "debug"\npoll_seconds = 0.3')
    result = run_skylab(
        "run", "--tag", "t", "--runner", "slurm", "--workers", "2", "--max-trials", "4", "-C", str(exp)
    )
    assert result.returncode == 0, result.stderr
    rows = trials(exp)
    assert [r["status"] for r in rows] == ["success"] * 4
    log = (exp / ".skylab" / "logs" / "t" / "1.log").read_text()
    assert "step 00002" in log and "val_bpb:" in log  # the job's output file is the trial's log
    assert slurm_env.squeue().count("RUNNING") == 0


@pytest.mark.slow
def test_slurm_timeout_cancels_the_job(tmp_path: Path, slurm_env: LocalSlurm) -> None:
    runner = SlurmRunner(SlurmConfig(poll_seconds=0.3))
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "train.py").write_text("import time\nprint('step 0', flush=True)\ntime.sleep(120)\n")
    lines: list[str] = []
    result = runner.run(
        TrialRequest(workdir, "python train.py", "val_bpb", 3.0, tmp_path / "1.log", lines.append)
    )
    assert result.status is Status.TIMEOUT and "wall-time limit" in result.reason
    assert "step 0" in lines
    assert " RUNNING " not in slurm_env.squeue()


@pytest.mark.slow
def test_a_job_cancelled_outside_skylab_is_an_infra_failure(tmp_path: Path, slurm_env: LocalSlurm) -> None:
    runner = SlurmRunner(SlurmConfig(poll_seconds=0.3))
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "train.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(120)\n")
    log = tmp_path / "1.log"

    def cancel_when_running() -> None:
        wait_for(lambda: log.exists() and "started" in log.read_text())
        job = slurm_env.squeue().split()[0]
        subprocess.run(["scancel", job], env=slurm_env.env(), check=True)

    import threading

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    result = runner.run(TrialRequest(workdir, "python train.py", "val_bpb", 60.0, log))
    canceller.join()
    assert result.status is Status.INFRA and "cancelled outside Skylab" in result.reason


@pytest.mark.slow
def test_ctrl_c_cancels_the_running_job(tmp_path: Path, slurm_env: LocalSlurm) -> None:
    exp = slurm_experiment(tmp_path, 120.0, "poll_seconds = 0.3")
    env = {**os.environ, "COLUMNS": "200"}
    from tests.conftest import SKYLAB, ctrl_c_reaches_it

    run = subprocess.Popen(
        [SKYLAB, "run", "--tag", "t", "--runner", "slurm", "-C", str(exp)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=ctrl_c_reaches_it,
    )
    wait_for(lambda: " RUNNING " in slurm_env.squeue() + " ")
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    run.wait(timeout=60)
    assert run.returncode == 130
    (row,) = trials(exp)
    assert row["status"] == "interrupted"
    assert "RUNNING" not in slurm_env.squeue()


def test_missing_slurm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = make_loop_experiment(tmp_path / "q")
    env_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(Path(env_path.split(os.pathsep)[0])))  # the venv's bin only
    result = run_skylab("run", "--runner", "slurm", "-C", str(exp))
    assert result.returncode == 2 and "--runner slurm needs sbatch" in result.stderr
