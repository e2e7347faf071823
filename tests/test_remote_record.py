"""The record of a remote's trial refs, and the comparison of ours with it by lines of text."""

from __future__ import annotations

from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from skylab.store.derived.remoterecord import RemoteRecord, load_record, save_record, unrecorded_trials
from skylab.store.reffiles import parse_packed_refs
from skylab.store.refs import TRIALS_PREFIX

names = st.sampled_from([f"t{tag}/{n}" for tag in range(3) for n in range(1, 5)])
commits = st.sampled_from([f"{digit}" * 40 for digit in "abc"])
refs = st.dictionaries(names, commits, max_size=12)


def packed_text(packed: dict[str, str], peeled: bool) -> str:
    """A sorted `packed-refs` section as git writes it (with a peeled line after each, when asked)."""
    lines = []
    for name in sorted(packed):
        lines.append(f"{packed[name]} {TRIALS_PREFIX}{name}")
        lines += [f"^{'d' * 40}"] if peeled else []
    return "\n".join(lines)


@given(packed=refs, loose=refs, remote=refs, peeled=st.booleans())
@example(packed={"t0/1": "a" * 40}, loose={"t0/1": "b" * 40}, remote={"t0/1": "b" * 40}, peeled=False)
@example(packed={"t0/1": "a" * 40}, loose={"t0/1": "a" * 40}, remote={}, peeled=True)
def test_the_refs_a_record_lacks_are_those_whose_commit_the_remote_does_not_hold(
    packed: dict[str, str], loose: dict[str, str], remote: dict[str, str], peeled: bool
) -> None:
    section = packed_text(packed, peeled)
    ours = {
        **parse_packed_refs("# pack-refs with: peeled fully-peeled sorted \n" + section, TRIALS_PREFIX),
        **loose,
    }
    expected = {TRIALS_PREFIX + name: commit for name, commit in ours.items() if remote.get(name) != commit}
    record = RemoteRecord.listed({}, remote)
    assert unrecorded_trials(section, loose, record.trial_line_set()) == expected


def test_a_record_holds_what_a_push_added_and_survives_a_round_trip(tmp_path: Path) -> None:
    record = RemoteRecord.listed({"notes/skylab": "a" * 40}, {"t/1": "b" * 40})
    later = record.after_push({"notes/skylab": "c" * 40}, {f"{TRIALS_PREFIX}t/2": "d" * 40})
    save_record(tmp_path, "refs/skylab-remotes/origin/", later)
    loaded = load_record(tmp_path, "refs/skylab-remotes/origin/")
    assert loaded == later and loaded.shared == {"notes/skylab": "c" * 40}
    assert unrecorded_trials(
        "", {"t/1": "b" * 40, "t/2": "d" * 40, "t/3": "e" * 40}, loaded.trial_line_set()
    ) == {f"{TRIALS_PREFIX}t/3": "e" * 40}
    (tmp_path / "remotes" / "origin").write_bytes(b"not a record")
    assert load_record(tmp_path, "refs/skylab-remotes/origin/") is None
