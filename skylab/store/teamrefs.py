"""A teammate's refs and notes as `sync` brings them in and sends ours out: their trial refs
adopted, the remote's refs staged and forgotten, their notes merged note by note. Writes through
`refwrites` under the store's lock, in one transaction each, all or none."""

from __future__ import annotations

from skylab.store.notemerge import notes_to_take
from skylab.store.refs import NOTES_REF, STAGING_PREFIX, TRIALS_PREFIX
from skylab.store.refwrites import RefWriter
from skylab.store.repository import GitRepo


class TeamRefs:
    """The refs and notes one repository shares with its remotes."""

    def __init__(self, git: GitRepo, refs: RefWriter) -> None:
        self.git = git
        self.refs = refs

    def adopt_trial_refs(self, refs: dict[str, str]) -> None:
        """Create the trial refs `tag/n` -> commit (a teammate's) in one transaction, all or none;
        never moves an existing one (StoreError then). One `git update-ref` for the lot: a first
        pull of 100,000 trials adopted them one libgit2 write at a time, over a minute."""
        with self.git.writing():
            self.refs.create_refs(
                {TRIALS_PREFIX + name: commit for name, commit in refs.items()}, "skylab: pull"
            )

    def track_remote_refs(self, refs: dict[str, str]) -> None:
        """Point refs under the staging namespace (a remote's refs as we last saw them) at the
        given commits, in one transaction; as git moves its remote-tracking refs after a push."""
        assert all(name.startswith(STAGING_PREFIX) for name in refs)
        with self.git.writing():
            self.refs.update_refs(refs, "skylab: push")

    def forget_remote_refs(self, folder: str) -> None:
        """Delete every ref under `folder` of the staging namespace, in one transaction."""
        assert folder.startswith(STAGING_PREFIX) and folder.endswith("/")
        self.drop_staged_refs([folder + rest for rest, _ in self.git.refs_under(folder)])

    def drop_staged_refs(self, names: list[str]) -> None:
        """Delete these refs of the staging namespace, in one transaction."""
        assert all(name.startswith(STAGING_PREFIX) for name in names)
        with self.git.writing():
            self.refs.delete_refs(names, "skylab: sync")

    def merge_notes(self, other: str | None, ref: str = NOTES_REF) -> tuple[int, list[str]]:
        """Bring in the notes of another notes commit (a teammate's) on `ref` (the trials' notes,
        or their curves); return (added, conflicts).

        Note by note, never by fast-forward: a note we have is never removed or replaced by the
        teammate's version, even when their notes history descends from ours (they may have
        deleted or edited it), except that a trial's own finished note replaces an `interrupted`
        note of the same trial. Other differences keep the local note and are reported as
        conflicts. The result is a merge commit with both histories as parents, so a later push
        fast-forwards the remote.
        """
        with self.git.writing():
            local = self.git.ref_target(ref)
            if other is None or other == local:
                return 0, []
            if local is not None and self.git.descends_from(local, other):
                return 0, []
            theirs = self.git.read_notes(other)
            if local is None:
                self.refs.set_ref(ref, other, "skylab: notes from the remote")
                return len(theirs), []
            take, conflicts = notes_to_take(self.git.read_notes(local), theirs)
            self.refs.write_notes(dict(take), f"skylab: merge {len(take)} notes", other, ref)
            return len(take), conflicts

    def pack_loose_refs(self) -> None:
        """Pack refs when a pull left many loose (see `RefWriter.pack_loose_refs`)."""
        with self.git.writing():
            self.refs.pack_loose_refs()
