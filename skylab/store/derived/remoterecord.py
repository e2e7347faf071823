"""What a remote held when this clone last looked: its shared refs and its trial refs.

A remote's shared refs (notes, best, baseline, run branches) are staged as refs under
`refs/skylab-remotes/<key>/`, where `git fetch` moves them. Its trial refs, 100,000 in a lab's
month, are not: staged as refs they doubled the refs that every git command in the clone reads (a
push lists each of them, 0.2 s of its 1.3 s at 100,000 trials). They are kept in this record,
`.git/skylab/remotes/<key>`, beside the staged shared refs they were listed with. A sync lists the
remote's trial refs again whenever those no longer match the staged ones (the remote moved, or a
sync was killed between the two steps) and whenever the record is missing or damaged: it is
derived from the remote, never the source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from skylab.store.derived.catalog import REMOTE_RECORDS
from skylab.store.reffiles import OBJECT_ID
from skylab.store.refs import STAGING_PREFIX, TRIALS_PREFIX


@dataclass(frozen=True)
class RemoteRecord:
    """Invariant: `trial_lines` holds a line `<commit> refs/skylab/trials/<tag>/<n>` for each trial
    ref the remote held, as `packed-refs` writes it, so a push compares ours with it as lines of
    text (no parse of 100,000 refs), and a push adds what it sent by adding lines. A ref pushed
    again at another commit leaves its old line: harmless, as lines are only looked up."""

    shared: dict[str, str]  # the staged shared refs it goes with, under our names (full) -> commit
    trial_lines: str

    @classmethod
    def listed(cls, shared: dict[str, str], trials: dict[str, str]) -> RemoteRecord:
        """The record of a listing: the remote's trial refs, tag/n -> commit."""
        return cls(shared, "".join(trial_line(rest, commit) + "\n" for rest, commit in trials.items()))

    def after_push(self, shared: dict[str, str], trials: dict[str, str]) -> RemoteRecord:
        """This record once a push sent `shared` refs and `trials` (full ref names -> commit)."""
        added = "".join(f"{commit} {name}\n" for name, commit in trials.items())
        return RemoteRecord({**self.shared, **shared}, self.trial_lines + added)

    def trial_line_set(self) -> set[str]:
        return set(self.trial_lines.splitlines())


def record_path(skylab_dir: Path, staging: str) -> Path:
    """Where the record of the remote staged under `staging` (`refs/skylab-remotes/<key>/`) lies."""
    return REMOTE_RECORDS.path(skylab_dir, _key(staging))


def _key(staging: str) -> str:
    return staging.removeprefix(STAGING_PREFIX).strip("/")


def load_record(skylab_dir: Path, staging: str) -> RemoteRecord | None:
    """The record of the remote staged under `staging`; None when it is missing, damaged or of
    another schema."""
    value = REMOTE_RECORDS.load(skylab_dir, _key(staging))
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], dict)
        and isinstance(value[1], str)
    ):
        return RemoteRecord(value[0], value[1])
    return None


def save_record(skylab_dir: Path, staging: str, record: RemoteRecord) -> None:
    """Write the record atomically; a failure to write only costs the next sync a listing."""
    REMOTE_RECORDS.save(skylab_dir, (record.shared, record.trial_lines), _key(staging))


def unrecorded_trials(section: str, loose: Mapping[str, str], recorded: set[str]) -> dict[str, str]:
    """Our trial refs whose line `recorded` lacks: full name -> commit, given the packed ones as
    `packed-refs` lines under refs/skylab/trials/ (`section`, peeled lines and all) and the loose
    ones (tag/n -> commit), a loose ref overriding a packed line of its name."""
    differing = {}
    for line in [line for line in section.splitlines() if line not in recorded]:
        commit, _, name = line.partition(" ")
        if (
            OBJECT_ID.fullmatch(commit)
            and name.startswith(TRIALS_PREFIX)
            and name[len(TRIALS_PREFIX) :] not in loose
        ):
            differing[name] = commit
    for rest, commit in loose.items():
        if trial_line(rest, commit) not in recorded:
            differing[TRIALS_PREFIX + rest] = commit
    return differing


def trial_line(rest: str, commit: str) -> str:
    """The `packed-refs` line of the trial ref `tag/n` (`rest`) at `commit`, as the record holds it."""
    return f"{commit} {TRIALS_PREFIX}{rest}"
