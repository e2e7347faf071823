"""Two teammates, two clones, one bare remote on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from skylab.store import refwrites, sync
from skylab.store.gitstore import TrialStore
from skylab.store.reffiles import RefFiles
from skylab.store.refs import BEST_REF, NOTES_REF, TrialRef
from skylab.store.repository import GitRepo
from skylab.store.sync import pull, push
from tests.conftest import git, run_skylab
from tests.factory import add_trial, rewrite_note


def with_trials(experiment: Path, count: int) -> TrialStore:
    """The store of `experiment` after `count` trials of run alice-1, each better than the last."""
    store = TrialStore.open(experiment)
    for n in range(count):
        add_trial(store, "alice-1", 2.0 - n / 100)
    return store


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


def test_two_clones_whose_bests_tie_agree_on_one_after_pulling(team: tuple[Path, Path, Path]) -> None:
    """Each kept its own when the values tied (neither beats the other), so two clones that had
    pulled from each other named different bests."""
    alice, bob, _ = team
    first = add_trial(TrialStore.open(alice), "alice-1", 1.0)
    add_trial(TrialStore.open(bob), "bob-1", 1.0)
    run_skylab("push", "-C", str(alice), check=True)
    run_skylab("pull", "-C", str(bob), check=True)
    run_skylab("push", "-C", str(bob), check=True)
    run_skylab("pull", "-C", str(alice), check=True)
    assert TrialStore.open(alice).best() == TrialStore.open(bob).best() == first.commit  # started first


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
    rewrite_note(a, ref.commit, note)
    run_skylab("push", "-C", str(alice), check=True)
    run_skylab("pull", "-C", str(bob), check=True)
    assert "- alice-1/1: warmdown beyond 0.6 hurts" in memory_section(TrialStore.open(bob).load(), "alice-1")


def test_a_push_of_many_trials_is_summarised_in_a_few_lines(team: tuple[Path, Path, Path]) -> None:
    alice, _, _ = team
    with_trials(alice, 25)
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


def test_a_first_pull_of_many_trials_adopts_them_packed_and_stages_none_as_refs(
    team: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, _ = team
    with_trials(alice, 8)
    run_skylab("push", "-C", str(alice), check=True)
    monkeypatch.setattr(refwrites, "LOOSE_REFS_TO_PACK", 5)  # 1,000 outside this test
    monkeypatch.setattr(sync, "EXPLICIT_REFS_UP_TO", 5)  # so the 8 are fetched by a glob
    b = TrialStore.open(bob)
    report = pull(b, "origin", lambda theirs, ours, history: False)
    assert report.trials_added == 8
    files = RefFiles(bob / ".git")
    assert files.loose_count("refs/skylab/trials/") == 0  # every listing of refs reads loose files
    assert git("for-each-ref", "refs/skylab-remotes/origin/skylab/trials/", cwd=bob) == ""
    assert git("for-each-ref", "refs/skylab-remotes/origin/incoming/", cwd=bob) == ""
    assert len(TrialStore.open(bob).load().trials) == 8


@pytest.fixture
def git_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The git commands the store runs (each still runs, against the real remote)."""
    calls: list[tuple[str, ...]] = []
    run = GitRepo.run

    def recording(self: GitRepo, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return run(self, *args, stdin=stdin)

    monkeypatch.setattr(GitRepo, "run", recording)
    return calls


def pushes_and_trial_fetches(calls: list[tuple[str, ...]]) -> tuple[int, int]:
    """How many pushes, and how many listings of the remote's trial refs."""
    return sum(c[0] == "push" for c in calls), sum(c[0] == "ls-remote" for c in calls)


def test_a_push_with_nothing_new_lists_no_trial_refs_and_pushes_nothing(
    team: tuple[Path, Path, Path], git_calls: list[tuple[str, ...]]
) -> None:
    alice, bob, remote = team
    a, b = with_trials(alice, 3), TrialStore.open(bob)
    never = lambda theirs, ours, history: False  # noqa: E731
    assert len(push(a, "origin", never).pushed) == 6  # 3 trial refs, notes, run branch, best
    assert pushes_and_trial_fetches(git_calls) == (1, 0)  # the remote as recorded by the set-up push
    assert len(git("for-each-ref", "refs/skylab/trials/", cwd=remote).splitlines()) == 3
    git_calls.clear()
    assert not push(a, "origin", never).pushed  # the push recorded what it sent: nothing to list
    assert pushes_and_trial_fetches(git_calls) == (0, 0)  # the steady state: a few shared refs

    add_trial(a, "alice-1", 1.5)  # a small push: the record moves to what it pushed
    assert len(push(a, "origin", never).pushed) == 4  # the trial ref, notes, run branch and best
    git_calls.clear()
    assert not push(a, "origin", never).pushed
    assert pushes_and_trial_fetches(git_calls) == (0, 0)
    remote_refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=remote)
    assert f"refs/skylab/trials/alice-1/4 {a.git.ref_target('refs/skylab/trials/alice-1/4')}" in remote_refs

    bobs = add_trial(b, "bob-1", 1.0)  # a teammate's push moves the notes: our push fetches it
    run_skylab("push", "-C", str(bob), check=True)
    git_calls.clear()
    report = push(a, "origin", never)
    assert report.trials_added == 1 and a.git.ref_target("refs/skylab/trials/bob-1/1") == bobs.commit
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


def test_a_push_after_a_sync_fetches_nothing_and_sends_only_what_moved(
    team: tuple[Path, Path, Path], git_calls: list[tuple[str, ...]]
) -> None:
    _, _, remote = team
    a = synced(team)  # the remote is now known to the push
    never = lambda theirs, ours, history: False  # noqa: E731
    new = add_trial(a, "alice-1", 1.5)
    git_calls.clear()
    report = push(a, "origin", never)
    moved = ["refs/heads/skylab/alice-1", NOTES_REF, BEST_REF, "refs/skylab/trials/alice-1/2"]
    assert report.pushed == moved and not report.rejected
    assert [c[0] for c in git_calls if c[0] in ("fetch", "push")] == ["push"]
    (push_call,) = [c for c in git_calls if c[0] == "push"]
    groups = ["refs/skylab/trials/*", "refs/heads/skylab/*", "refs/skylab/b*", "refs/notes/skylab*"]
    assert [arg for arg in push_call if ":" in arg and not arg.startswith("-")] == [
        f"{g}:{g}" for g in groups
    ]
    for ref in moved:
        assert git("rev-parse", ref, cwd=remote).strip() == a.git.ref_target(ref)
    assert a.git.ref_target(BEST_REF) == new.commit
    git_calls.clear()
    assert not push(a, "origin", never).pushed  # the record moved with the push
    assert pushes_and_trial_fetches(git_calls) == (0, 0)


def synced(team: tuple[Path, Path, Path]) -> TrialStore:
    """Alice's store after a trial and a push of hers."""
    a = TrialStore.open(team[0])
    add_trial(a, "alice-1", 2.0)
    push(a, "origin", lambda theirs, ours, history: False)
    return a


def synced_then_a_teammate_pushed(team: tuple[Path, Path, Path]) -> tuple[TrialStore, TrialRef]:
    """Alice's store after a trial and a push of hers, and the trial Bob pushed since (not pulled)."""
    a = synced(team)
    bobs = add_trial(TrialStore.open(team[1]), "bob-1", 1.9)
    run_skylab("push", "-C", str(team[1]), check=True)
    return a, bobs


def test_a_push_after_a_teammates_fetches_and_integrates_theirs_before_sending_ours(
    team: tuple[Path, Path, Path], git_calls: list[tuple[str, ...]]
) -> None:
    _, _, remote = team
    a, bobs = synced_then_a_teammate_pushed(team)
    never = lambda theirs, ours, history: False  # noqa: E731
    ours = add_trial(a, "alice-1", 1.8)
    git_calls.clear()
    report = push(a, "origin", never)
    assert report.trials_added == 1 and not report.rejected
    assert "refs/skylab/trials/alice-1/2" in report.pushed
    assert pushes_and_trial_fetches(git_calls) == (2, 1)  # refused as the remote's notes moved, then again
    notes = git("ls-tree", "-r", "--name-only", NOTES_REF, cwd=remote).split()
    assert {bobs.commit, ours.commit} <= {name.replace("/", "") for name in notes}
    assert git("rev-parse", "refs/skylab/trials/alice-1/2", cwd=remote).strip() == ours.commit


def test_a_push_never_overwrites_a_best_the_remote_took_after_our_fetch(
    team: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, remote = team
    b = TrialStore.open(bob)
    bobs_first = add_trial(b, "bob-1", 1.30)
    add_trial(b, "bob-1", 1.25)
    run_skylab("push", "-C", str(bob), check=True)
    a = TrialStore.open(alice)
    add_trial(a, "alice-1", 1.2)
    run = GitRepo.run
    fetched: list[str] = []

    def teammate_moves_the_best_first(
        self: GitRepo, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        fetched.extend(args[:1] if args[0] == "fetch" else [])
        if args[0] == "push" and fetched:  # between our fetch and our push: a race no fetch can close
            git("push", "-q", "-f", "origin", f"{bobs_first.commit}:{BEST_REF}", cwd=bob)
            monkeypatch.setattr(GitRepo, "run", run)
        return run(self, *args, stdin=stdin)

    monkeypatch.setattr(GitRepo, "run", teammate_moves_the_best_first)
    report = push(a, "origin", lambda theirs, ours, history: False)  # ours (1.2) stays our best
    assert report.rejected == [f"{BEST_REF} ({sync.MOVED_WHILE_PUSHING})"] and not report.pushed
    assert git("rev-parse", BEST_REF, cwd=remote).strip() == bobs_first.commit  # not overwritten unseen
    assert "alice-1" not in git("for-each-ref", "--format=%(refname)", cwd=remote)  # atomic: nothing


class Killed(BaseException):
    """Stands for a kill -9 at a chosen point: nothing after it runs."""


def test_a_sync_killed_between_fetching_and_listing_lists_again_the_next_time(
    team: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, bobs = synced_then_a_teammate_pushed(team)
    never = lambda theirs, ours, history: False  # noqa: E731
    run = GitRepo.run

    def killed_when_listing(
        self: GitRepo, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        if args[0] == "ls-remote" or (args[0] == "fetch" and any("trials" in arg for arg in args)):
            raise Killed  # after the remote's notes were fetched into staging
        return run(self, *args, stdin=stdin)

    monkeypatch.setattr(GitRepo, "run", killed_when_listing)
    with pytest.raises(Killed):
        push(a, "origin", never)
    monkeypatch.setattr(GitRepo, "run", run)
    report = push(a, "origin", never)
    assert report.trials_added == 1 and a.git.ref_target("refs/skylab/trials/bob-1/1") == bobs.commit


def test_a_damaged_record_of_the_remote_is_listed_again(
    team: tuple[Path, Path, Path], git_calls: list[tuple[str, ...]]
) -> None:
    alice, _, remote = team
    a = synced(team)
    never = lambda theirs, ours, history: False  # noqa: E731
    record = alice / ".git" / "skylab" / "remotes" / "origin"
    data = bytearray(record.read_bytes())
    data[-3] ^= 0xFF
    record.write_bytes(bytes(data))
    add_trial(a, "alice-1", 1.9)
    git_calls.clear()
    report = push(a, "origin", never)
    assert pushes_and_trial_fetches(git_calls) == (1, 1)
    assert (
        "refs/skylab/trials/alice-1/2" in report.pushed
        and "refs/skylab/trials/alice-1/1" not in report.pushed
    )
    assert len(git("for-each-ref", "refs/skylab/trials/", cwd=remote).splitlines()) == 2


@pytest.mark.parametrize("folder", ["skylab/trials", "incoming"])
def test_trial_refs_staged_by_an_earlier_version_or_a_killed_pull_are_dropped_by_the_next_pull(
    team: tuple[Path, Path, Path], folder: str
) -> None:
    alice, bob, _ = team
    first = add_trial(TrialStore.open(alice), "alice-1", 2.0)
    run_skylab("push", "-C", str(alice), check=True)
    staged = f"refs/skylab-remotes/origin/{folder}/"
    git("fetch", "-q", "origin", f"+refs/skylab/trials/*:{staged}*", cwd=bob)
    assert git("for-each-ref", "--format=%(refname)", staged, cwd=bob)
    run_skylab("pull", "-C", str(bob), check=True)
    assert git("for-each-ref", "--format=%(refname)", staged, cwd=bob) == ""
    assert TrialStore.open(bob).git.ref_target("refs/skylab/trials/alice-1/1") == first.commit


def test_a_push_of_many_new_trial_refs_says_the_remote_should_pack_them(
    team: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, _, _ = team
    a = with_trials(alice, 3)
    monkeypatch.setattr(sync, "LOOSE_ON_THE_REMOTE", 2)  # 5,000 outside this test
    never = lambda theirs, ours, history: False  # noqa: E731
    assert "run `git gc` there once" in push(a, "origin", never).lines()[-1]
    add_trial(a, "alice-1", 1.5)
    assert not any("git gc" in line for line in push(a, "origin", never).lines())


def test_a_remote_ref_that_is_no_trial_ref_is_left_out_and_its_commit_not_fetched(
    team: tuple[Path, Path, Path],
) -> None:
    alice, bob, _ = team
    git("commit", "-q", "--allow-empty", "-m", "not a trial", cwd=bob)
    stray = git("rev-parse", "HEAD", cwd=bob).strip()
    git("push", "-q", "origin", f"{stray}:refs/skylab/trials/no-number", cwd=bob)
    report = pull(TrialStore.open(alice), "origin", lambda theirs, ours, history: False)
    assert report.left_out == ["trial ref no-number: not a trial ref name (tag/number)"]
    assert not TrialStore.open(alice).git.has_object(stray)
