"""Diffs between two commits, kept between reports: `.git/skylab/diff-cache`.

A diff between two commits never changes, yet computing one for each of 100,000 trials took 37 s of
a report. Only the diffs of the report chunks built anew are asked for (see `report.details`), so
the file keeps what was asked for last and the DIFFS_KEPT_BEYOND most recent others: it stays
bounded however long the history, and a chunk built again soon after finds its diffs here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skylab.store.derived.catalog import DIFF_CACHE

DIFFS_KEPT_BEYOND = 5000  # diffs kept beyond those asked for now, the most recent first
DiffKey = tuple[str, str]  # (commit, the parent it is diffed against; "" for its first parent)


def cached_diffs(
    skylab_dir: Path,
    keys: list[DiffKey],
    compute: Callable[[str, str], str],
    kept_beyond: int = DIFFS_KEPT_BEYOND,
) -> list[str]:
    """The diff of each key: kept ones reused, the others computed (a commit that cannot be read,
    KeyError or ValueError from `compute`, gives ""), then the file rewritten when any was new."""
    if not keys:
        return []
    cached = DIFF_CACHE.load(skylab_dir)
    known: dict[DiffKey, str] = cached if isinstance(cached, dict) else {}
    found: dict[DiffKey, str] = {}
    new = 0
    for key in keys:
        diff = found.get(key, known.get(key))
        if diff is None:
            try:
                diff = compute(*key)
                new += 1
            except (KeyError, ValueError):
                diff = ""  # not kept: the commit may arrive later (a pull)
            else:
                found[key] = diff
        else:
            found[key] = diff
    if new:
        kept = dict(found)
        for key, diff in reversed(known.items()):
            if len(kept) >= len(found) + kept_beyond:
                break
            kept.setdefault(key, diff)
        DIFF_CACHE.save(skylab_dir, dict(reversed(list(kept.items()))))  # the most recent last
    return [found.get(key, "") for key in keys]
