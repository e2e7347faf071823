"""The summary block a training script prints last, and the only thing a runner reads from it:

---
val_bpb:          0.997900
training_seconds: 300.1
peak_vram_mb:     45060.2
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s+(\S.*?)\s*$")


_INTEGER = re.compile(r"[+-]?\d+")


def parse_summary(output: str) -> dict[str, int | float | str]:
    """The key/value lines after the last `---` line; whole numbers as ints (`num_steps: 77` stays
    77, not 77.0), other numbers as floats. Empty if there is none."""
    lines = output.splitlines()
    separators = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not separators:
        return {}
    summary: dict[str, int | float | str] = {}
    for line in lines[separators[-1] + 1 :]:
        match = _LINE.match(line.strip())
        if not match:
            continue
        key, raw = match.groups()
        if _INTEGER.fullmatch(raw):
            summary[key] = int(raw)
            continue
        try:
            summary[key] = float(raw)
        except ValueError:
            summary[key] = raw
    return summary
