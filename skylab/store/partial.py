"""Measurements of trials still being measured, kept until the trial's note is written.

A trial measured several times (seeded repeats, confirmations) has its note written once, when it is
judged. Until then each finished measurement is kept here, one JSON file per trial commit in
`.git/skylab/measuring` (local, never pushed), replaced atomically: a kill -9 between two
measurements loses none that finished, and the next run continues with the ones still missing.
The content is the loop's; the store only keeps it safe.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class PartialMeasurements:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, commit: str) -> Path:
        return self.folder / f"{commit}.json"

    def save(self, commit: str, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.folder, suffix=".tmp", delete=False) as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, self._path(commit))

    def load(self, commit: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self._path(commit).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # none, or cut short by a crash of an older Skylab: start the trial over
        return record if isinstance(record, dict) else None

    def commits(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json")) if self.folder.is_dir() else []

    def drop(self, commit: str) -> None:
        self._path(commit).unlink(missing_ok=True)
