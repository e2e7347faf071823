"""Benchmark: the cost of one ref write with N refs packed, by each way git can write it.

Why `store/refwrites.py` keeps two ways to write a ref: its own files-backend writer for one ref,
and `git update-ref --stdin` for many at once (or another ref backend). This prints what one write
costs each way, and through libgit2, in a repository holding N packed trial refs.

    python bench/refwrites.py [--refs 100000] [--writes 200]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pygit2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skylab.store.refwrites import RefWriter  # noqa: E402
from skylab.store.repository import GitRepo  # noqa: E402


def packed_repository(directory: Path, refs: int) -> str:
    """A repository with one commit and `refs` packed trial refs at it; the commit's id."""
    subprocess.run(["git", "init", "-q", str(directory)], check=True)
    subprocess.run(["git", "-C", str(directory), "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(
        ["git", "-C", str(directory), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    names = sorted(f"refs/skylab/trials/r{n // 1000}/{n}" for n in range(refs))
    lines = ["# pack-refs with: peeled fully-peeled sorted ", *(f"{head} {name}" for name in names)]
    (directory / ".git" / "packed-refs").write_text("\n".join(lines) + "\n")
    return head


def per_write_ms(write: object, count: int) -> float:
    assert callable(write)
    started = time.perf_counter()
    for n in range(count):
        write(n)
    return (time.perf_counter() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--refs", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary) / "repo"
        head = packed_repository(directory, args.refs)
        repo = pygit2.Repository(str(directory))
        writer = RefWriter(GitRepo(repo))
        oid = pygit2.Oid(hex=head)
        ways = {
            "Skylab's files-backend writer": lambda n: writer.set_ref(
                f"refs/skylab/trials/a/{n}", head, "bench"
            ),
            "git update-ref (a process each)": lambda n: writer.transaction(
                f"update refs/skylab/trials/b/{n}\0{head}\0\0", "bench"
            ),
            "libgit2 (pygit2)": lambda n: repo.create_reference_direct(
                f"refs/skylab/trials/c/{n}", oid, True, message="bench"
            ),
        }
        print(f"one ref write with {args.refs:,} packed refs (mean of {args.writes}):")
        for name, write in ways.items():
            print(f"  {name:34} {per_write_ms(write, args.writes):7.2f} ms")


if __name__ == "__main__":
    main()
