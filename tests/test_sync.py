"""Two teammates, two clones, one bare remote on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from skylab.store import repository, sync
from skylab.store.gitstore import TrialStore
from skylab.store.reffiles import RefFiles
from skylab.store.sync import pull, push
from tests.conftest import git, run_skylab
from tests.factory import add_trial


def test_push_then_pull_shares_trials_notes_and_best(team: tuple[Path, Path, Path]) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    add_trial(a, "alice-1", 1.5)
    best = add_trial(a, "alice-1", 1.2)
    report = run_skylab("push", "-C", str(alice), check=True).stdout
    assert "refs/notes/skylab" in report

    run_skylab("pull", "-C", str(bob), check=True)
    b = TrialStore.open(bob)
    history = b.load()
    assert [t.name for t in history.trials] == ["alice-1/1", "alice-1/2"]
    assert b.best() == best.commit
    assert git("rev-parse", "skylab/alice-1", cwd=bob).strip() == best.commit
    assert "val_bpb: 1.2" in git("log", "-1", "skylab/alice-1", cwd=bob)


def test_notes_from_both_sides_are_merged_not_overwritten(
    team: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    alice, bob, remote = team
    a, b = TrialStore.open(alice), TrialStore.open(bob)
    add_trial(a, "alice-1", 1.4)
    run_skylab("push", "-C", str(alice), check=True)
    # Bob has not pulled: his notes history diverges from the remote's.
    bobs = add_trial(b, "bob-1", 1.1)
    run_skylab("push", "-C", str(bob), check=True)
    run_skylab("pull", "-C", str(alice), check=True)

    for side in (alice, bob):
        names = sorted(t.name for t in TrialStore.open(side).load().trials)
        assert names == ["alice-1/1", "bob-1/1"], side
    assert TrialStore.open(alice).best() == bobs.commit  # 1.1 beats 1.4
    # The remote holds both notes too, under one notes ref with both histories merged.
    listing = git("ls-tree", "-r", "--name-only", "refs/notes/skylab", cwd=remote).split()
    assert len(listing) == 2
    parents = git("log", "-1", "--format=%P", "refs/notes/skylab", cwd=remote).split()
    assert len(parents) == 2


def test_pull_keeps_the_better_local_best(team: tuple[Path, Path, Path]) -> None:
    alice, bob, _ = team
    add_trial(TrialStore.open(alice), "alice-1", 1.4)
    run_skylab("push", "-C", str(alice), check=True)
    mine = add_trial(TrialStore.open(bob), "bob-1", 1.0)
    run_skylab("pull", "-C", str(bob), check=True)
    assert TrialStore.open(bob).best() == mine.commit


def test_colliding_trial_refs_are_reported(team: tuple[Path, Path, Path]) -> None:
    alice, bob, _ = team
    add_trial(TrialStore.open(alice), "shared", 1.4)
    run_skylab("push", "-C", str(alice), check=True)
    add_trial(TrialStore.open(bob), "shared", 1.3)
    result = run_skylab("pull", "-C", str(bob))
    assert result.returncode == 1
    assert "trial ref collision: shared/1" in result.stdout
    assert "use distinct run tags" in result.stdout


def test_push_to_unknown_remote_is_a_clear_error(experiment: Path) -> None:
    result = run_skylab("push", "nowhere", "-C", str(experiment))
    assert result.returncode == 2
    assert result.stderr.startswith("error: git fetch failed")
    assert "Traceback" not in result.stderr


def test_pushed_trials_survive_gc_on_the_remote(team: tuple[Path, Path, Path]) -> None:
    alice, _, remote = team
    reverted = add_trial(TrialStore.open(alice), "alice-1", 9.9, keep=False)
    run_skylab("push", "-C", str(alice), check=True)
    subprocess.run(["git", "gc", "--prune=now", "-q"], cwd=remote, check=True)
    assert git("cat-file", "-t", reverted.commit, cwd=remote).strip() == "commit"


def test_pull_adopts_a_teammates_best_only_beyond_noise(team: tuple[Path, Path, Path]) -> None:
    """The shared best moves by the same rule as a keep: mean against mean, σ from the repeats."""
    alice, bob, _ = team
    add_trial(TrialStore.open(alice), "alice-1", 1.20, measurements=[1.18, 1.20, 1.22])
    run_skylab("push", "-C", str(alice), check=True)
    mine = add_trial(TrialStore.open(bob), "bob-1", 1.21, measurements=[1.19, 1.21, 1.23])
    run_skylab("pull", "-C", str(bob), check=True)
    assert TrialStore.open(bob).best() == mine.commit  # 0.01 better, with σ = 0.02: within noise

    clearly = add_trial(TrialStore.open(alice), "alice-1", 1.10, measurements=[1.09, 1.10, 1.11])
    run_skylab("push", "-C", str(alice), check=True)
    report = run_skylab("pull", "-C", str(bob), check=True).stdout
    assert TrialStore.open(bob).best() == clearly.commit and "best is now alice-1/2" in report


def test_the_llm_research_memory_travels_with_the_notes(team: tuple[Path, Path, Path]) -> None:
    from skylab.strategy.research import memory_section

    alice, bob, _ = team
    a = TrialStore.open(alice)
    ref = add_trial(a, "alice-1", 1.4)
    note = a.note_for(ref.commit)
    assert note is not None
    note.other["lesson"] = "warmdown beyond 0.6 hurts"
    a._write_notes({ref.commit: note.format()}, "test: a lesson")
    run_skylab("push", "-C", str(alice), check=True)
    run_skylab("pull", "-C", str(bob), check=True)
    assert "- alice-1/1: warmdown beyond 0.6 hurts" in memory_section(TrialStore.open(bob).load(), "alice-1")


def test_a_push_of_many_trials_is_summarised_in_a_few_lines(team: tuple[Path, Path, Path]) -> None:
    alice, _, _ = team
    a = TrialStore.open(alice)
    for n in range(25):
        add_trial(a, "alice-1", 2.0 - n / 100)
    lines = run_skylab("push", "-C", str(alice), check=True).stdout.splitlines()
    assert len(lines) <= 4, lines
    (pushed,) = [line for line in lines if line.startswith("• pushed ")]
    assert pushed.startswith("• pushed 25 trial refs, ") and "refs/notes/skylab" in pushed
    assert "refs/skylab/trials/" not in pushed
    again = run_skylab("push", "-C", str(alice), check=True).stdout  # nothing new: nothing pushed
    assert "pushed" not in again


def test_long_lists_of_problems_are_counted_after_ten() -> None:
    from skylab.store.sync import SyncReport

    report = SyncReport(note_conflicts=[f"{n:040d}" for n in range(25)])
    lines = report.lines()
    assert len(lines) == 12 and lines[-1] == "… and 15 more like it"


def test_a_pull_packs_the_refs_it_staged_once_many_lie_loose(
    team: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    for n in range(8):
        add_trial(a, "alice-1", 2.0 - n / 100)
    run_skylab("push", "-C", str(alice), check=True)
    monkeypatch.setattr(repository, "LOOSE_REFS_TO_PACK", 5)  # 1,000 outside this test
    b = TrialStore.open(bob)
    report = pull(b, "origin", lambda theirs, ours, history: False)
    assert report.trials_added == 8
    files = RefFiles(bob / ".git")
    assert files.loose_count("refs/skylab-remotes/") == 0  # every listing of refs reads loose files
    staged = files.under("refs/skylab-remotes/origin/skylab/trials/")
    assert staged is not None and len(staged.merged()) == 8
    assert len(TrialStore.open(bob).load().trials) == 8


@pytest.fixture
def git_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The git commands the store runs (each still runs, against the real remote)."""
    calls: list[tuple[str, ...]] = []
    run = TrialStore.git

    def recording(self: TrialStore, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return run(self, *args, stdin=stdin)

    monkeypatch.setattr(TrialStore, "git", recording)
    return calls


def pushes_and_trial_fetches(calls: list[tuple[str, ...]]) -> tuple[int, int]:
    trial_fetches = [c for c in calls if c[0] == "fetch" and any("trials" in a for a in c)]
    return sum(c[0] == "push" for c in calls), len(trial_fetches)


def test_a_push_with_nothing_new_lists_no_trial_refs_and_pushes_nothing(
    team: tuple[Path, Path, Path], git_calls: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, remote = team
    a, b = TrialStore.open(alice), TrialStore.open(bob)
    never = lambda theirs, ours, history: False  # noqa: E731
    for n in range(3):
        add_trial(a, "alice-1", 2.0 - n / 100)
    monkeypatch.setattr(sync, "TRACK_AFTER_PUSH", 2)  # a "first push" too big to track: 1,000 outside
    assert push(a, "origin", never).pushed
    assert pushes_and_trial_fetches(git_calls) == (1, 1)  # nothing staged yet: every trial ref fetched
    git_calls.clear()
    assert not push(a, "origin", never).pushed  # stages the remote's trial refs (untracked)...
    assert pushes_and_trial_fetches(git_calls) == (0, 1)  # ...and needs no push: all are there
    git_calls.clear()
    assert not push(a, "origin", never).pushed
    assert pushes_and_trial_fetches(git_calls) == (0, 0)  # the steady state: a few shared refs

    add_trial(a, "alice-1", 1.5)  # a small push: the staged copies move to what it pushed
    assert len(push(a, "origin", never).pushed) == 4  # the trial ref, notes, run branch and best
    git_calls.clear()
    assert not push(a, "origin", never).pushed
    assert pushes_and_trial_fetches(git_calls) == (0, 0)
    remote_refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=remote)
    assert f"refs/skylab/trials/alice-1/4 {a.ref_target('refs/skylab/trials/alice-1/4')}" in remote_refs

    bobs = add_trial(b, "bob-1", 1.0)  # a teammate's push moves the notes: our push fetches it
    run_skylab("push", "-C", str(bob), check=True)
    git_calls.clear()
    report = push(a, "origin", never)
    assert report.trials_added == 1 and a.ref_target("refs/skylab/trials/bob-1/1") == bobs.commit
    assert pushes_and_trial_fetches(git_calls) == (1, 1)  # and pushes the merged notes back


def test_a_pull_fetches_every_trial_ref_even_when_nothing_else_moved(
    team: tuple[Path, Path, Path], git_calls: list[tuple[str, ...]]
) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    first = add_trial(a, "alice-1", 2.0)
    run_skylab("push", "-C", str(alice), check=True)
    run_skylab("pull", "-C", str(bob), check=True)
    git("push", "-q", "origin", f"{first.commit}:refs/skylab/trials/alice-1/9", cwd=alice)  # by hand
    report = pull(TrialStore.open(bob), "origin", lambda theirs, ours, history: False)
    assert pushes_and_trial_fetches(git_calls) == (0, 1)
    assert report.left_out == ["trial ref alice-1/9: points at the commit of trial alice-1/1"]
