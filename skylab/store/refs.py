"""The ref namespace Skylab writes in a repository, and the rules for the names in it.

    refs/skylab/trials/<tag>/<n>   each trial commit, kept or reverted, so gc never loses one
    refs/heads/skylab/<tag>        the run branch: the chain of kept trials of that run
    refs/skylab/best               the best trial of all runs, per the metric's direction
    refs/skylab/baseline           the commit `skylab init` made the starting point
    refs/notes/skylab              one note per trial commit, in a 2-hex-character fan-out tree
    refs/notes/skylab-curves       the learning curves of a trial's measurements (see curvenotes)
    refs/skylab-remotes/<remote>/  a remote's shared refs as last fetched or pushed (its trial refs
                                   are recorded in .git/skylab/remotes/: see `sync`)

Every ref name Skylab uses is made here; only the store writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pygit2

from skylab.errors import StoreError

NOTES_REF = "refs/notes/skylab"
CURVES_REF = "refs/notes/skylab-curves"  # pushed with NOTES_REF: sync's patterns name "skylab*"
BEST_REF = "refs/skylab/best"
BASELINE_REF = "refs/skylab/baseline"
TRIALS_PREFIX = "refs/skylab/trials/"
BRANCH_PREFIX = "refs/heads/skylab/"
STAGING_PREFIX = "refs/skylab-remotes/"
# The folders (under the git dir) whose ref lock files only a Skylab writer creates.
SKYLAB_REF_FOLDERS = ("refs/skylab", "refs/notes", "refs/heads/skylab")

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_tag(tag: str) -> str:
    """A run tag is one ref path component: letters, digits, '.', '_' and '-'."""
    if not _TAG.fullmatch(tag) or ".." in tag or tag.endswith(".lock") or tag.endswith("."):
        raise StoreError(
            f"{tag!r} is not a valid run tag: use letters, digits, '.', '_' and '-' (at most 64)"
        )
    return tag


def run_branch(tag: str) -> str:
    return BRANCH_PREFIX + check_tag(tag)


def trial_ref(tag: str, number: int) -> str:
    return f"{TRIALS_PREFIX}{check_tag(tag)}/{number}"


@dataclass(frozen=True)
class TrialRef:
    """A started trial: its commit is safe from gc from this moment on."""

    tag: str
    number: int
    commit: str

    @property
    def name(self) -> str:
        return f"{self.tag}/{self.number}"


_SPECIAL_REF = re.compile(r"[A-Z_]*HEAD")  # HEAD, FETCH_HEAD, ORIG_HEAD, MERGE_HEAD, ...


def branch_name_problem(name: str) -> str:
    """What is wrong with `name` as the name of a branch a researcher asks for ("" when nothing):
    git's own rules (`git check-ref-format --branch`), and no name that git would then read as
    something else (HEAD, @, FETCH_HEAD, refs/...) or that is a run branch's (skylab/<tag>)."""
    if name.startswith("-"):
        return "starts with '-'"
    if _SPECIAL_REF.fullmatch(name):
        return "is the name of a ref git keeps itself: every use of it would be ambiguous"
    if name == "@" or "@{" in name:
        return "reads as a revision (@ is HEAD), not a branch"
    if name.startswith("refs/"):
        return f"would be refs/heads/{name}: give the branch's own name ({name.rsplit('/', 1)[-1]!r}, ...)"
    if name.startswith("skylab/"):
        return "is in skylab/, where Skylab's run branches live: choose another name"
    if not pygit2.reference_is_valid_name(f"refs/heads/{name}"):
        return "is not a valid branch name"
    return ""
