"""The summary block a training script prints last, and the only thing a runner reads from it:

---
val_bpb:          0.997900
training_seconds: 300.1
peak_vram_mb:     45060.2
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s+(\S.*?)\s*$")


def parse_summary(output: str) -> dict[str, float | str]:
    """The key/value lines after the last `---` line; numbers as floats. Empty if there is none."""
    lines = output.splitlines()
    separators = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not separators:
        return {}
    summary: dict[str, float | str] = {}
    for line in lines[separators[-1] + 1 :]:
        match = _LINE.match(line.strip())
        if not match:
            continue
        key, raw = match.groups()
        try:
            summary[key] = float(raw)
        except ValueError:
            summary[key] = raw
    return summary
