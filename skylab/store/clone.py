"""What one clone keeps about itself in `.git/skylab` (never pushed): its id and the runs it has run.

The id is part of this clone's default run tags, so two teammates' runs started the same day never
share a tag. The list of own runs limits crash repair to this clone's trials: a teammate's
unfinished trial may still be training elsewhere.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

CLONE_ID_FILE = "clone-id"
OWN_RUNS_FILE = "own-runs"


class CloneFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def clone_id(self) -> str:
        """Four hex digits naming this clone, made once; two processes asking first agree."""
        path = self.folder / CLONE_ID_FILE
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.folder, delete=False) as handle:
                handle.write(os.urandom(2).hex() + "\n")
            try:
                os.link(handle.name, path)  # never replaces an id another process made meanwhile
            except FileExistsError:
                pass
            finally:
                os.unlink(handle.name)
        text = path.read_text(encoding="utf-8").strip()
        return text if re.fullmatch(r"[0-9a-f]{4}", text) else "0000"

    def own_tags(self) -> set[str]:
        """The run tags this clone has trained trials of."""
        path = self.folder / OWN_RUNS_FILE
        return set(path.read_text(encoding="utf-8").split()) if path.is_file() else set()

    def remember_own_tag(self, tag: str) -> None:
        if tag not in self.own_tags():
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / OWN_RUNS_FILE, "a", encoding="utf-8") as handle:
                handle.write(tag + "\n")
