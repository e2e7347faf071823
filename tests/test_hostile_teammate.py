"""A careless or hostile teammate: two clones and a bare remote. Nothing they push destroys ours."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pygit2
import pytest

from skylab.store.gitstore import TrialStore
from skylab.store.notes import Status
from skylab.store.refs import NOTES_REF, TrialRef
from tests.conftest import git, run_skylab
from tests.factory import add_trial


def fetch_everything(clone: Path) -> None:
    git("fetch", "-q", "origin", "+refs/skylab/*:refs/skylab/*", "+refs/notes/*:refs/notes/*", cwd=clone)


def note_text(clone: Path, commit: str) -> str:
    return git("notes", "--ref=skylab", "show", commit, cwd=clone)


def test_a_teammate_who_deletes_and_edits_our_notes_changes_nothing_of_ours(
    team: tuple[Path, Path, Path],
) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    trials = [add_trial(a, "alice", v) for v in (1.5, 1.4, 1.3)]
    run_skylab("push", "-C", str(alice), check=True)
    before = {t.commit: note_text(alice, t.commit) for t in trials}

    fetch_everything(bob)
    git("notes", "--ref=skylab", "remove", trials[1].commit, cwd=bob)
    edited = re.sub(r"(?m)^val_bpb: .*$", "val_bpb: 0.5", before[trials[2].commit])
    git("notes", "--ref=skylab", "add", "-f", "-m", edited, trials[2].commit, cwd=bob)
    git("push", "-q", "origin", NOTES_REF, cwd=bob)  # a fast-forward of the remote's notes

    result = run_skylab("pull", "-C", str(alice))
    assert result.returncode == 1  # a conflict to look at
    assert f"note conflict on {trials[2].commit[:10]}: kept the local note" in result.stdout
    assert "-" not in result.stdout.split(" new notes")[0]  # no negative counts
    assert {t.commit: note_text(alice, t.commit) for t in trials} == before
    history = TrialStore.open(alice).load()
    assert [t.value for t in history.trials] == [1.5, 1.4, 1.3]
    # Pushing again puts our notes back on the remote: its notes history now descends from ours.
    run_skylab("push", "-C", str(alice), check=True)
    fetch_everything(bob)
    assert note_text(bob, trials[1].commit) == before[trials[1].commit]


def alice_pushes_while_a_trial_trains(alice: Path) -> TrialRef:
    """alice/1 finished, alice/2 started (a ref, no note yet), and both pushed."""
    a = TrialStore.open(alice)
    add_trial(a, "alice", 1.5)
    tree = a.git.repo[a.start_point()].peel(pygit2.Commit).tree_id
    running = a.create_trial("alice", tree, a.start_point(), "training")
    run_skylab("push", "-C", str(alice), check=True)
    return running


@pytest.mark.slow
def test_a_teammates_repair_never_records_our_running_trial_as_interrupted(
    team: tuple[Path, Path, Path],
) -> None:
    alice, bob, _ = team
    running = alice_pushes_while_a_trial_trains(alice)

    run_skylab("pull", "-C", str(bob), check=True)
    b = TrialStore.open(bob)
    add_trial(b, "bob", 1.45)
    assert not any("alice/2" in line for line in b.repair("val_bpb", lambda x, y: y is None or x < y))
    assert b.load().by_commit()[running.commit].note is None  # not ours to call interrupted
    run_skylab("push", "-C", str(bob), check=True)


@pytest.mark.slow
def test_a_finished_note_beats_an_interrupted_one_written_by_someone_elses_repair(
    team: tuple[Path, Path, Path],
) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    running = alice_pushes_while_a_trial_trains(alice)

    run_skylab("pull", "-C", str(bob), check=True)
    b = TrialStore.open(bob)
    b.record_interrupted(b.load().by_commit()[running.commit], "val_bpb", "an older Skylab's repair")

    from skylab.store.notes import Decision, TrialNote

    finished = TrialNote(
        trial=2, tag="alice", status=Status.SUCCESS, decision=Decision.KEEP, metric="val_bpb", value=1.2
    )
    a.finish_trial(TrialRef("alice", 2, running.commit), finished)
    run_skylab("push", "-C", str(alice), check=True)
    run_skylab("push", "-C", str(bob), check=True)  # Bob integrates Alice's finished note first
    run_skylab("pull", "-C", str(alice), check=True)
    for clone in (alice, bob):
        trial = TrialStore.open(clone).load().by_commit()[running.commit]
        assert trial.status is Status.SUCCESS and trial.value == 1.2, clone


def test_a_second_trial_ref_on_our_commit_is_left_out(team: tuple[Path, Path, Path]) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    ours = [add_trial(a, "alice", v) for v in (1.5, 1.4, 1.3, 1.35, 1.2)]
    run_skylab("push", "-C", str(alice), check=True)
    fetch_everything(bob)
    git("update-ref", "refs/skylab/trials/bob/7", ours[4].commit, cwd=bob)
    git("push", "-q", "origin", "refs/skylab/trials/bob/7", cwd=bob)

    result = run_skylab("pull", "-C", str(alice))
    assert result.returncode == 1
    assert "left out: trial ref bob/7: points at the commit of trial alice/5" in result.stdout
    assert a.git.ref_target("refs/skylab/trials/bob/7") is None
    before = note_text(alice, ours[4].commit)
    a.repair("val_bpb", lambda x, y: y is None or x < y)
    assert note_text(alice, ours[4].commit) == before

    # Bob's own clone holds both refs: his history shows alice/5 and calls bob/7 stray.
    b = TrialStore.open(bob)
    history = b.load()
    assert [t.name for t in history.trials if t.commit == ours[4].commit] == ["alice/5"]
    assert "refs/skylab/trials/bob/7" in history.stray_refs
    b.repair("val_bpb", lambda x, y: y is None or x < y)
    assert note_text(bob, ours[4].commit) == before


@pytest.mark.slow
@pytest.mark.parametrize("fake_value", ["0", "-1"])
def test_a_teammates_best_must_be_a_finite_success(team: tuple[Path, Path, Path], fake_value: str) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    best = add_trial(a, "alice", 1.3)
    run_skylab("push", "-C", str(alice), check=True)
    run_skylab("pull", "-C", str(bob), check=True)
    b = TrialStore.open(bob)
    crash = add_trial(b, "bob", float(fake_value), status=Status.CRASH, keep=False)
    git("update-ref", "refs/skylab/best", crash.commit, cwd=bob)
    run_skylab("push", "-C", str(bob), check=True)

    result = run_skylab("pull", "-C", str(alice))
    assert a.best() == best.commit
    assert "left out: the remote's best" in result.stdout


@pytest.mark.slow
def test_a_trial_ref_at_a_tree_and_a_note_on_a_missing_commit_block_nothing(
    team: tuple[Path, Path, Path],
) -> None:
    alice, bob, _ = team
    a = TrialStore.open(alice)
    add_trial(a, "alice", 1.3)
    run_skylab("push", "-C", str(alice), check=True)
    fetch_everything(bob)
    tree = git("rev-parse", "HEAD^{tree}", cwd=bob).strip()
    git("update-ref", "refs/skylab/trials/bob/1", tree, cwd=bob)
    # A note on a commit that exists only in Bob's clone, with a value better than anything.
    (bob / "x.txt").write_text("x\n")
    git("add", "x.txt", cwd=bob)
    git("commit", "-q", "-m", "local only", cwd=bob)
    hidden = git("rev-parse", "HEAD", cwd=bob).strip()
    note = (
        note_text(alice, a.best() or "").replace("trial: 1\n", "trial: 9\n").replace("tag: alice", "tag: bob")
    )
    note = re.sub(r"(?m)^val_bpb: .*$", "val_bpb: 0.1", note)
    git("notes", "--ref=skylab", "add", "-m", note, hidden, cwd=bob)
    git("push", "-q", "origin", NOTES_REF, "refs/skylab/trials/bob/1", cwd=bob)

    result = run_skylab("pull", "-C", str(alice))
    assert "left out: trial ref bob/1: points at" in result.stdout and "not a commit" in result.stdout
    assert "Traceback" not in result.stderr
    history = run_skylab("history", "-C", str(alice))
    assert history.returncode == 0 and "Traceback" not in history.stderr
    assert "not in this repository" in history.stderr
    shown = run_skylab("show", "alice/1", "-C", str(alice))
    assert shown.returncode == 0, shown.stderr
    fixed = a.repair("val_bpb", lambda x, y: y is None or x < y)
    assert a.best() != hidden and not any("bob" in line for line in fixed)


def test_two_clones_with_the_same_email_get_different_default_tags(team: tuple[Path, Path, Path]) -> None:
    from skylab.session import default_tag

    alice, bob, _ = team  # both clones use the fixture's test@example.com
    tags = {default_tag(TrialStore.open(alice)), default_tag(TrialStore.open(bob))}
    assert len(tags) == 2 and all(re.fullmatch(r"[a-z]{3}\d\d-[\w.-]+-[0-9a-f]{4}", t) for t in tags)
    assert default_tag(TrialStore.open(alice)) == default_tag(TrialStore.open(alice))  # stable: a run resumes


@pytest.mark.slow
def test_a_rejected_push_pushes_nothing(team: tuple[Path, Path, Path], tmp_path: Path) -> None:
    alice, bob, _ = team
    add_trial(TrialStore.open(alice), "shared", 1.4)
    run_skylab("push", "-C", str(alice), check=True)
    remote_notes = git("rev-parse", NOTES_REF, cwd=tmp_path / "remote.git").strip()
    # Bob never pulled: his shared/1 is another commit, which the remote must reject...
    theirs = add_trial(TrialStore.open(bob), "shared", 1.3)
    git("fetch", "-q", "origin", "+refs/notes/*:refs/skylab-remotes/origin/notes/*", cwd=bob)
    result = subprocess.run(
        ["git", "push", "--atomic", "origin", "refs/skylab/trials/shared/1", NOTES_REF],
        cwd=bob,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    # ...and `skylab push`, which pulls first, reports the collision and pushes nothing at all.
    pushed = run_skylab("push", "-C", str(bob))
    assert pushed.returncode == 1 and "trial ref collision: shared/1" in pushed.stdout
    after = git("rev-parse", NOTES_REF, cwd=tmp_path / "remote.git").strip()
    assert after == remote_notes  # Bob's note of his shared/1 did not reach the remote without its ref
    assert theirs.commit not in git("ls-tree", "-r", "--name-only", NOTES_REF, cwd=tmp_path / "remote.git")


@pytest.mark.parametrize("kind", ["tree", "blob", "commit of a plain tree"])
def test_a_remote_notes_ref_that_is_not_a_notes_commit_is_refused_and_leaves_fsck_clean(
    team: tuple[Path, Path, Path], kind: str
) -> None:
    alice, bob, remote = team
    add_trial(TrialStore.open(alice), "alice", 1.5)
    run_skylab("push", "-C", str(alice), check=True)
    if kind == "tree":
        target = git("rev-parse", "HEAD^{tree}", cwd=alice).strip()
    elif kind == "blob":
        target = git("rev-parse", "HEAD:experiment.toml", cwd=alice).strip()
    else:
        target = git("rev-parse", "HEAD", cwd=alice).strip()  # a commit, but of train.py and friends
    git("update-ref", NOTES_REF, target, cwd=remote)
    result = run_skylab("pull", "-C", str(bob))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: origin's refs/notes/skylab is not a notes commit: nothing was pulled")
    assert subprocess.run(["git", "fsck", "--no-dangling"], cwd=bob, capture_output=True).returncode == 0
    assert git("for-each-ref", "refs/skylab-remotes/origin/notes/", cwd=bob) == ""
    git("update-ref", NOTES_REF, git("rev-parse", NOTES_REF, cwd=alice).strip(), cwd=remote)
    run_skylab("pull", "-C", str(bob), check=True)  # the remote fixed: the pull goes through
    assert len(TrialStore.open(bob).load().trials) == 1
