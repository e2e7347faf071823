"""The command line as one consistent tool: version, -C everywhere, one --gpus, workflow order,
choices listed, one-line refusals that leave nothing behind."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_skylab
from tests.loop_experiment import make_loop_experiment


def test_version_and_help_in_workflow_order_without_internal_commands() -> None:
    assert run_skylab("--version", check=True).stdout.strip() == "skylab 0.1.0"
    help_text = run_skylab("--help", check=True).stdout
    commands = [line.split()[0] for line in help_text.split("Commands:")[1].splitlines() if line.strip()]
    assert commands[:9] == [
        "init",
        "import",
        "prepare",
        "constants",
        "run",
        "history",
        "show",
        "diff",
        "report",
    ]
    assert "hook" not in commands and "--install-completion" in help_text
    assert "gpt-pretrain, tiny-bigram" in " ".join(run_skylab("init", "--help", check=True).stdout.split())
    run_help = run_skylab("run", "--help", check=True).stdout
    assert "--gpu " not in run_help and "--gpus" in run_help
    assert "the measurement of a new run's starting point counts as one" in " ".join(run_help.split())


def test_dash_c_names_the_experiment_for_every_command(tmp_path: Path) -> None:
    exp = tmp_path / "made"
    out = run_skylab("init", "-C", str(exp), "--template", "tiny-bigram", check=True).stdout
    assert "copied the 'tiny-bigram' template" in out and (exp / "experiment.toml").is_file()
    for command in (["history"], ["constants"], ["prepare"], ["report", "-o", str(tmp_path / "r.html")]):
        assert run_skylab(*command, "-C", str(exp)).returncode == 0, command
    both = run_skylab("demo", str(tmp_path / "a"), "-C", str(tmp_path / "b"))
    assert both.returncode == 2 and both.stderr.startswith("error: give the directory once")


def test_refusals_are_one_line_and_leave_nothing_behind(tmp_path: Path) -> None:
    refused = run_skylab("init", str(tmp_path / "nope"), "--template", "nope")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: unknown template 'nope' (available: gpt-pretrain, tiny-bigram)"
    ]
    assert not (tmp_path / "nope").exists()
    exp = make_loop_experiment(tmp_path / "q")
    report = run_skylab("report", "--tag", "nosuchtag", "-C", str(exp))
    assert (
        report.returncode == 2
        and report.stderr.strip() == "error: no run tagged 'nosuchtag' (runs: none yet)"
    )


def test_nothing_to_prepare_is_said_plainly(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q")  # its prepare.py has no prepare()
    result = run_skylab("prepare", "-C", str(exp))
    assert result.returncode == 0 and "error" not in result.stdout + result.stderr
    assert "quadratic has nothing to prepare: its prepare.py defines no prepare()" in result.stdout


def test_the_plan_counts_in_words_and_a_run_without_limits_says_so(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0]")
    one = run_skylab("run", "--tag", "a", "--max-trials", "1", "-C", str(exp), check=True).stdout
    assert "at most 1 trial ·" in one and "stopped: reached --max-trials 1. 1 trial this run in " in one
    endless = run_skylab("run", "--tag", "b", "-C", str(exp), check=True).stdout  # the grid ends it
    assert "no budget or trial limit: runs until Ctrl-C" in endless
