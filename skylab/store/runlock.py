"""One `skylab run` per repository at a time.

An flock on `.git/skylab/run.lock`, which also holds the holder's pid for the error message. The
kernel drops an flock when its process dies, so a lock left by a killed run is simply taken over.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from skylab.errors import SkylabError


class RunLocked(SkylabError):
    pass


class RunLock:
    def __init__(self, git_dir: Path) -> None:
        self.path = git_dir / "skylab" / "run.lock"
        self._handle: int | None = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return False
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        self._handle = handle
        return True

    def try_acquire_and_release(self) -> bool:
        """Whether the lock is free right now (nobody runs)."""
        if not self.try_acquire():
            return False
        self.release()
        return True

    def __enter__(self) -> RunLock:
        if not self.try_acquire():
            raise RunLocked(
                f"another skylab run (pid {self.holder()}) is active in this repository; "
                "wait for it, or stop it first"
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        if self._handle is not None:
            os.ftruncate(self._handle, 0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None
