"""Reading and writing the learning-curve notes (`refs/notes/skylab-curves`; format in curvenotes)."""

from __future__ import annotations

from skylab.store.curvenotes import Point, format_curves, parse_curves
from skylab.store.refs import CURVES_REF, TrialRef
from skylab.store.refwrites import RefWriter
from skylab.store.repository import GitRepo


class CurveStore:
    """The curves of trials, one note per trial commit, beside the trials' own notes."""

    def __init__(self, git: GitRepo, refs: RefWriter) -> None:
        self.git, self._refs = git, refs

    def of(self, commit: str) -> dict[int, list[Point]]:
        """The learning curves recorded for trial `commit`, by seed ({} when none were)."""
        blob = self.git.note_blob(commit, CURVES_REF)
        return parse_curves(blob.data.decode("utf-8", "replace")) if blob is not None else {}

    def save(self, trial: TrialRef, curves: dict[int, str]) -> None:
        """Record `trial`'s learning curves (seed -> encoded points), before its note is written:
        a trial whose note exists has its curves."""
        if any(curves.values()):
            with self.git.writing():
                self._refs.write_notes(
                    {trial.commit: format_curves(curves)}, f"skylab: curves of {trial.name}", ref=CURVES_REF
                )
