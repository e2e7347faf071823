"""Reading a file Skylab wrote itself under `.git/skylab`, without trusting that it still is one.

Anyone with the repository can put a symlink to /dev/zero, a FIFO or a huge file where a derived
file belongs: read naively, that is a MemoryError, a killed process or a hang. Here the file is
opened without following a symlink and without blocking on a FIFO, and read only when it is a
regular file within a size bound; anything else reads as absent (so its owner rebuilds it) and is
said once per process, on stderr.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

MAX_DERIVED_BYTES = 1 << 30  # far above any derived file at 100,000 trials
_said: set[str] = set()


def read_regular_file(path: Path, limit: int = MAX_DERIVED_BYTES) -> bytes | None:
    """The bytes of `path` when it is a regular file of at most `limit` bytes; None when it is
    missing, unreadable, or anything else (then a warning, once)."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _say_once(path, "is a symbolic link")
        return None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            _say_once(path, f"is not a regular file ({_kind(info.st_mode)})")
            return None
        if info.st_size > limit:
            _say_once(path, f"is larger than {limit:,} bytes")
            return None
        chunks = []
        size = 0
        while chunk := os.read(handle, 1 << 20):
            size += len(chunk)
            if size > limit:  # it grew while read
                _say_once(path, f"is larger than {limit:,} bytes")
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(handle)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def _say_once(path: Path, problem: str) -> None:
    key = str(path)
    if key in _said:
        return
    _said.add(key)
    sys.stderr.write(f"warning: {path} {problem}: ignored (Skylab rebuilds what it derives)\n")
