"""The remote runner against a real sshd on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skylab.errors import ConfigError
from skylab.runner.remote import remote_shell_command, training_argv
from skylab.runner.remote_config import RemoteConfig, load_remote_config
from tests.conftest import SKYLAB, ctrl_c_reaches_it
from tests.loop_experiment import make_loop_experiment
from tests.sshd import SSHServer


def remote_experiment(tmp_path: Path, server: SSHServer, **constants: object) -> Path:
    wall = constants.pop("wall", 30)
    exp = make_loop_experiment(tmp_path / "q", wall=float(wall), **constants)  # type: ignore[arg-type]
    (exp / "remote.toml").write_text(server.remote_toml(tmp_path / "remote-work"))
    return exp


def run_remote(exp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [SKYLAB, "run", "--runner", "remote", "--tag", "t", "-C", str(exp), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=180
    )


def history(exp: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [SKYLAB, "history", "--json", "-C", str(exp)], capture_output=True, text=True, check=True
    )
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def remote_processes(server: SSHServer, root: Path, pattern: str = "") -> str:
    """The processes on the remote host working in `root` (this test's remote work folder) whose
    command line contains `pattern`, one `pid args` line each (asked over SSH, as a user would).
    Only this test's own: a process of anyone else on the machine never matches, whatever it runs."""
    folder = shlex.quote(str(root))
    script = (
        'for d in /proc/[0-9]*; do c=$(readlink "$d/cwd" 2>/dev/null) || continue; '
        f'case "$c" in {folder}*) echo "${{d#/proc/}} $(tr "\\0" " " < "$d/cmdline" 2>/dev/null)";; '
        "esac; done"
    )
    command = [
        "ssh",
        "-p",
        str(server.port),
        "-i",
        str(server.key),
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={server.known_hosts}",
        f"{server.user}@127.0.0.1",
        script,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if pattern in line)


def test_trial_over_ssh_end_to_end(tmp_path: Path, sshd: SSHServer) -> None:
    exp = remote_experiment(tmp_path, sshd)
    result = run_remote(exp, "--max-trials", "2")
    assert result.returncode == 0, result.stderr
    rows = history(exp)
    assert [r["status"] for r in rows] == ["success", "success"] and rows[1]["value"] == 10.0
    assert (tmp_path / "remote-work" / "t" / "train.py").is_file()  # synced by rsync
    assert not (tmp_path / "remote-work" / "t" / ".git").exists()  # only what the command needs
    log = (exp / ".skylab" / "logs" / "t" / "2.log").read_text()
    assert "step 00002" in log and "val_bpb" in log and "skylab-pgid" not in log


def test_crash_over_ssh(tmp_path: Path, sshd: SSHServer) -> None:
    exp = remote_experiment(tmp_path, sshd, CRASH=True)
    result = run_remote(exp, "--max-trials", "1")
    assert result.returncode == 2 and "does not train" in result.stderr  # the starting point crashed
    (row,) = history(exp)
    assert row["status"] == "crash"


@pytest.mark.slow
def test_timeout_leaves_no_remote_process(tmp_path: Path, sshd: SSHServer) -> None:
    exp = remote_experiment(tmp_path, sshd, SLEEP=60.0, SPAWN_CHILD=True, wall=3)
    started = time.monotonic()
    assert run_remote(exp, "--max-trials", "1").returncode == 2  # the starting point timed out: stop
    assert time.monotonic() - started < 40
    (row,) = history(exp)
    assert row["status"] == "timeout"
    time.sleep(0.5)
    assert remote_processes(sshd, tmp_path / "remote-work") == ""  # nothing left: not even the sleep


@pytest.mark.slow
def test_dropped_connection_is_an_infra_failure_and_the_loop_goes_on(tmp_path: Path, sshd: SSHServer) -> None:
    exp = remote_experiment(tmp_path, sshd, SLEEP=4.0)
    log = exp / ".skylab" / "logs" / "t" / "1.log"

    def cut_the_link() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and "step 00000" in log.read_text()):
            time.sleep(0.05)
        for pid in sshd.session_pids():
            os.kill(pid, 9)

    killer = threading.Thread(target=cut_the_link)
    killer.start()
    result = run_remote(exp, "--max-trials", "2")
    killer.join()
    assert result.returncode == 0, result.stderr
    rows = history(exp)
    assert [r["status"] for r in rows] == ["infra", "success"]
    note = rows[0]
    assert note["decision"] == "revert"
    time.sleep(0.5)
    assert remote_processes(sshd, tmp_path / "remote-work", "train.py") == ""  # the orphan was killed


def test_torchrun_for_several_gpus() -> None:
    remote = RemoteConfig(
        path=Path("remote.toml"), host="h", user="u", num_gpus=8, python="/opt/venv/bin/python"
    )
    assert training_argv(remote, "python train.py --x 1") == [
        "/opt/venv/bin/python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=8",
        "train.py",
        "--x",
        "1",
    ]
    single = RemoteConfig(path=Path("remote.toml"), host="h", user="u")
    assert training_argv(single, "python3 train.py") == ["python3", "train.py"]
    from skylab.errors import SkylabError

    with pytest.raises(SkylabError, match="needs a command that starts with python"):
        training_argv(remote, "bash run.sh")


def test_commands_are_built_without_shell_injection(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    remote = RemoteConfig(
        path=Path("remote.toml"), host="h", user="u", env={"NOTE": f"$(touch {marker}); `touch {marker}`"}
    )
    workdir = tmp_path / "dir with 'quotes' and $x"
    workdir.mkdir()
    argv = ["sh", "-c", 'printf "%s\\n" "$NOTE"', "--", "; touch " + str(marker)]
    out = subprocess.run(
        ["sh", "-c", remote_shell_command(remote, str(workdir), argv)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"$(touch {marker})" in out and not marker.exists()
    assert shlex.split(out.splitlines()[0])[0] == "skylab-pgid"


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda t, s: t.replace(f'key_path = "{s.key}"', 'key_path = "/nonexistent/key"'), "does not exist"),
        (lambda t, s: t + "colour = 1\n", "remote.colour: unknown key"),
        (lambda t, s: t.replace(f"port = {s.port}", "port = 1"), "cannot reach root@127.0.0.1:1"),
        (
            lambda t, s: t.replace(f'known_hosts = "{s.known_hosts}"', 'known_hosts = "/dev/null"'),
            "host key is not in known_hosts",
        ),
        (
            lambda t, s: t.replace("[remote]\n", "[remote]\nnum_gpus = 0\n"),
            "remote.num_gpus: must be at least 1",
        ),
    ],
)
def test_bad_remote_config_is_one_line_and_exit_2(
    tmp_path: Path, sshd: SSHServer, change: Callable[[str, SSHServer], str], problem: str
) -> None:
    exp = remote_experiment(tmp_path, sshd)
    (exp / "remote.toml").write_text(
        change((exp / "remote.toml").read_text(), sshd).replace("root@", f"{sshd.user}@")
    )
    result = run_remote(exp, "--max-trials", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem.replace("root@", f"{sshd.user}@") in lines[0]
    assert history(exp) == []


def test_key_readable_by_others_is_refused(tmp_path: Path, sshd: SSHServer) -> None:
    key = tmp_path / "loose_key"
    key.write_bytes(sshd.key.read_bytes())
    key.chmod(0o644)
    exp = remote_experiment(tmp_path, sshd)
    (exp / "remote.toml").write_text((exp / "remote.toml").read_text().replace(str(sshd.key), str(key)))
    with pytest.raises(Exception, match="chmod 600"):
        load_remote_config(exp / "remote.toml")


def test_host_key_checking_can_be_turned_off_explicitly(tmp_path: Path, sshd: SSHServer) -> None:
    exp = remote_experiment(tmp_path, sshd)
    text = (
        (exp / "remote.toml")
        .read_text()
        .replace(f'known_hosts = "{sshd.known_hosts}"', 'known_hosts = "/dev/null"')
    )
    (exp / "remote.toml").write_text(text + "host_key_checking = false\n")
    result = run_remote(exp, "--max-trials", "1")
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in history(exp)] == ["success"]


@pytest.mark.slow
def test_ctrl_c_kills_the_remote_process_group(tmp_path: Path, sshd: SSHServer) -> None:
    import signal

    exp = remote_experiment(tmp_path, sshd, SLEEP=60.0, SPAWN_CHILD=True)
    log = exp / ".skylab" / "logs" / "t" / "1.log"
    command = [SKYLAB, "run", "--runner", "remote", "--tag", "t", "-C", str(exp)]
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_it
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and "step 00000" in log.read_text()):
        time.sleep(0.05)
    assert remote_processes(sshd, tmp_path / "remote-work", "sleep 301.25") != ""
    run.send_signal(signal.SIGINT)
    run.wait(timeout=60)
    assert run.returncode == 130
    assert [r["status"] for r in history(exp)] == ["interrupted"]
    time.sleep(0.5)
    assert remote_processes(sshd, tmp_path / "remote-work") == ""  # neither train.py nor its child


def test_prepare_runs_once_on_the_remote_host(tmp_path: Path, sshd: SSHServer) -> None:
    exp = tmp_path / "gpt"
    subprocess.run([SKYLAB, "init", str(exp), "--template", "gpt-pretrain"], check=True, capture_output=True)
    cache = tmp_path / "remote-cache"
    corpus = tmp_path / "remote-corpus.txt"  # a path on the remote host (it is this machine)
    from skylab.experiment.resources import template_dir

    corpus.write_text((template_dir("tiny-bigram") / "data" / "sonnets.txt").read_text())
    toml = sshd.remote_toml(tmp_path / "remote-work") + f'\n[remote.env]\nSKYLAB_CACHE = "{cache}"\n'
    (exp / "remote.toml").write_text(toml)
    command = [SKYLAB, "prepare", "--runner", "remote", "--source", str(corpus), "-C", str(exp)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prepared" in result.stdout and "train and" in result.stdout
    (prepared,) = (cache / "gpt-pretrain").glob("files-*/meta.json")  # the corpus's own folder
    meta = json.loads(prepared.read_text())
    assert meta["train_tokens"] > 10_000
    assert (tmp_path / "remote-work" / "gpt-prepare" / "prepare.py").is_file()


def test_hosts_and_gpus_give_one_worker_slot_each(tmp_path: Path) -> None:
    toml = tmp_path / "remote.toml"
    toml.write_text('[remote]\nhosts = ["a", "b"]\nuser = "u"\nnum_gpus = 2\ngpus = [0, 1, 2, 3]\n')
    slots = load_remote_config(toml).slots()
    assert [(s.host, s.env["CUDA_VISIBLE_DEVICES"]) for s in slots] == [
        ("a", "0,1"),
        ("a", "2,3"),
        ("b", "0,1"),
        ("b", "2,3"),
    ]
    toml.write_text('[remote]\nhosts = ["a"]\nuser = "u"\nnum_gpus = 2\ngpus = [0, 1, 2]\n')
    with pytest.raises(ConfigError, match="not a multiple of num_gpus"):
        load_remote_config(toml)
    toml.write_text('[remote]\nhost = "a"\nhosts = ["a"]\nuser = "u"\n')
    with pytest.raises(ConfigError, match="host or hosts, not both"):
        load_remote_config(toml)


@pytest.mark.slow
def test_two_remote_workers_each_pinned_to_a_gpu(tmp_path: Path, sshd: SSHServer) -> None:
    exp = make_loop_experiment(tmp_path / "q", SLEEP=1.0)
    (exp / "remote.toml").write_text(sshd.remote_toml(tmp_path / "remote-work", gpus="[0, 1]"))
    result = run_remote(exp, "--max-trials", "5")
    assert result.returncode == 0, result.stderr
    assert "2 workers" in result.stdout
    rows = history(exp)
    assert [r["status"] for r in rows] == ["success"] * 5
    assert {r["other"]["worker"] for r in rows} == {"0", "1"}
    assert (tmp_path / "remote-work" / "t" / "train.py").is_file()
    assert (tmp_path / "remote-work" / "t+1" / "train.py").is_file()  # a folder per worker
