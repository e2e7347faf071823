from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from skylab.errors import SkylabError
from skylab.experiment.scaffold import init_experiment
from skylab.store.gitstore import TrialStore
from tests.conftest import git, run_skylab


def snapshot(directory: Path) -> dict[str, str]:
    """Every ref, config and hook: what a second init must leave untouched."""
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=directory)
    config = (directory / ".git" / "config").read_text()
    hooks = {
        p.name: p.read_text()
        for p in (directory / ".git" / "hooks").iterdir()
        if not p.name.endswith(".sample")
    }
    return {"refs": refs, "config": config, **hooks, "status": git("status", "--porcelain", cwd=directory)}


def test_init_empty_dir_copies_template_and_commits_baseline(tmp_path: Path) -> None:
    result = run_skylab("init", str(tmp_path / "exp"), check=True)
    exp = tmp_path / "exp"
    assert "baseline is" in result.stdout
    assert {p.name for p in exp.iterdir()} >= {"experiment.toml", "train.py", "prepare.py", "schedules.py"}
    assert git("log", "--format=%s", cwd=exp).strip() == "skylab: baseline of gpt-pretrain"
    assert git("status", "--porcelain", cwd=exp) == ""
    store = TrialStore.open(exp)
    assert store.baseline() == git("rev-parse", "HEAD", cwd=exp).strip()
    assert git("config", "--get-all", "notes.displayRef", cwd=exp).split() == ["refs/notes/skylab"]
    hook = exp / ".git" / "hooks" / "post-commit"
    assert os.access(hook, os.X_OK) and "skylab-hook" in hook.read_text()
    assert "/.skylab/" in (exp / ".git" / "info" / "exclude").read_text()


def test_init_twice_changes_nothing(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    init_experiment(exp, template="tiny-bigram")
    before = snapshot(exp)
    result = run_skylab("init", str(exp), check=True)
    assert "nothing to do" in result.stdout
    assert snapshot(exp) == before


def test_git_log_says_nothing_about_the_notes_ref_before_the_first_trial(tmp_path: Path) -> None:
    """With notes.displayRef set and no notes yet, git warned 'notes ref refs/notes/skylab is
    invalid' on every `git show` and `git log` until the first trial."""
    exp = tmp_path / "exp"
    init_experiment(exp, template="tiny-bigram")
    for command in (["show", "--stat"], ["log", "-1"]):
        shown = subprocess.run(["git", *command], cwd=exp, capture_output=True, text=True, check=True)
        assert shown.stderr == "" and "baseline" in shown.stdout
    assert TrialStore.open(exp).load().trials == []  # an empty notes commit: no trial


def test_init_existing_repo_keeps_history_and_chains_existing_hook(
    tmp_path: Path, copy_template: Path
) -> None:
    exp = copy_template
    git("init", "-q", "-b", "main", cwd=exp)
    git("add", ".", cwd=exp)
    git("commit", "-qm", "my own start", cwd=exp)
    marker = tmp_path / "user-hook-ran"
    hook = exp / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\necho ran >> {marker}\n")
    hook.chmod(0o755)
    head = git("rev-parse", "HEAD", cwd=exp).strip()

    actions = init_experiment(exp)
    assert any("kept the existing post-commit hook" in a for a in actions)
    assert TrialStore.open(exp).baseline() == head  # clean tree: the existing commit is the baseline
    assert git("rev-parse", "HEAD", cwd=exp).strip() == head
    assert (exp / ".git" / "hooks" / "post-commit.pre-skylab").read_text().startswith("#!/bin/sh\necho ran")

    # Off a Skylab branch: the user's hook still runs, Skylab stays quiet.
    (exp / "notes.txt").write_text("x")
    git("add", "notes.txt", cwd=exp)
    out = subprocess.run(["git", "commit", "-qm", "n"], cwd=exp, capture_output=True, text=True, check=True)
    assert marker.read_text() == "ran\n"
    assert "skylab" not in out.stderr
    # Again: still chained, not doubled.
    init_experiment(exp)
    (exp / "notes.txt").write_text("y")
    git("commit", "-qam", "n2", cwd=exp)
    assert marker.read_text() == "ran\nran\n"


def test_init_commits_uncommitted_experiment_as_baseline(copy_template: Path) -> None:
    exp = copy_template
    git("init", "-q", "-b", "main", cwd=exp)
    actions = init_experiment(exp)
    assert "committed the experiment as the baseline" in actions
    assert git("status", "--porcelain", cwd=exp) == ""


def test_init_refuses_a_non_empty_dir_without_experiment(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "random.txt").write_text("hi")
    result = run_skylab("init", str(target))
    assert result.returncode == 2
    assert "has files (random.txt) but no experiment.toml" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (target / ".git").exists()


def test_unknown_template(tmp_path: Path) -> None:
    with pytest.raises(SkylabError, match=r"unknown template 'nope' \(available: .*tiny-bigram"):
        init_experiment(tmp_path / "x", template="nope")


def test_hooks_path_config_is_respected(tmp_path: Path, copy_template: Path) -> None:
    exp = copy_template
    git("init", "-q", "-b", "main", cwd=exp)
    git("config", "core.hooksPath", ".githooks", cwd=exp)
    init_experiment(exp)
    assert (exp / ".githooks" / "post-commit").is_file()
