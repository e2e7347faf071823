"""Where Skylab keeps its own files in an experiment: `.skylab/`, never committed (git ignores it).

The bottom of the import graph: every module that needs one of these paths asks here.

    .skylab/logs/<tag>/<n>.log            each trial's full output (hand commits: hand-<commit>.log)
    .skylab/reports/<tag or all>.html     the HTML report
    .skylab/worktrees/<tag>[+<worker>]    the work trees trials run in
    .skylab/worktrees/.<name>.pgid        the process group training in a work tree (kill -9 recovery)
"""

from __future__ import annotations

from pathlib import Path

WORK_DIR = ".skylab"


def work_dir(root: Path) -> Path:
    return root / WORK_DIR


def log_dir(root: Path, tag: str) -> Path:
    return work_dir(root) / "logs" / tag


def report_path(root: Path, tag: str | None) -> Path:
    return work_dir(root) / "reports" / f"{tag or 'all'}.html"


def worktrees_dir(root: Path) -> Path:
    return work_dir(root) / "worktrees"


def group_file(workdir: Path) -> Path:
    """Where a local runner records the process group training in `workdir` (for kill -9 recovery)."""
    return workdir.parent / f".{workdir.name}.pgid"
