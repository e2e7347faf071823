"""Benchmarks; helpers shared by the scripts below."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SKYLAB = str(Path(sys.executable).parent / "skylab")


def history_json(experiment: Path) -> list[dict[str, Any]]:
    """`skylab history --json` of an experiment, as a user's script would read it."""
    out = subprocess.run(
        [SKYLAB, "history", "--json", "-C", str(experiment)], check=True, capture_output=True, text=True
    ).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows
