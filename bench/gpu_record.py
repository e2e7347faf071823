"""One row of bench/gpu.md from a gpt-pretrain training log (bench/gpu.sh calls this).

Standalone on purpose: it runs on a GPU host that has the training's packages but not Skylab's.

    python bench/gpu_record.py LOG --name template [--budget 300] --table bench/gpu.md
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

HEADER = (
    "| date (UTC) | run | GPU | attention | budget s | steps | median tok/s | MFU % | peak VRAM MB "
    "| val_bpb | val_bpb raw bytes | data | note |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)
STEP = re.compile(r"^step (\d+) \|.*\| tok/s ([\d,]+) \|")
FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s+(\S.*?)\s*$")


def summary(log: str) -> dict[str, str]:
    """The key/value lines after the last `---` line of the log."""
    lines = log.splitlines()
    separators = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not separators:
        return {}
    found = (FIELD.match(line.strip()) for line in lines[separators[-1] + 1 :])
    return {m.group(1): m.group(2) for m in found if m}


def logged_median_tokens_per_second(log: str, skip_steps: int = 10) -> float | None:
    """Median tok/s of the logged step lines after the untimed warm-up steps (for logs whose summary
    has no tok_per_sec line, such as a run that was cut short)."""
    rates = [
        float(m.group(2).replace(",", ""))
        for m in map(STEP.match, log.splitlines())
        if m and int(m.group(1)) > skip_steps
    ]
    return statistics.median(rates) if rates else None


BUDGET = re.compile(r"budget:?\s+(\d+)\s*s", re.IGNORECASE)


def row(log: str, name: str, budget: str, label: str) -> str:
    """The table row of one run; `budget` "default" means the one the log states, if any."""
    fields = summary(log)
    if budget == "default":
        stated = BUDGET.search(log)
        budget = stated.group(1) if stated else "?"
    rate = fields.get("tok_per_sec") or logged_median_tokens_per_second(log)
    if rate is not None:
        rate = f"{float(rate):,.0f}"
    note = label or ("" if fields.get("val_bpb") else "no summary: the run failed (see its log)")
    cells = [
        datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        name,
        fields.get("gpu", "?"),
        fields.get("attention", "?"),
        budget,
        fields.get("num_steps", "?"),
        rate or "?",
        fields.get("mfu_percent", "?"),
        fields.get("peak_vram_mb", "?"),
        fields.get("val_bpb", "?"),
        fields.get("val_bpb_raw", "?"),
        fields.get("data", "?"),
        note,
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--name", default="template")
    parser.add_argument("--budget", default="default")
    parser.add_argument("--label", default="")
    parser.add_argument("--table", type=Path, default=Path(__file__).with_name("gpu.md"))
    args = parser.parse_args()
    if not args.log.is_file():
        print(f"gpu_record: {args.log}: no such log", file=sys.stderr)
        return 2
    line = row(args.log.read_text(errors="replace"), args.name, args.budget, args.label)
    if not args.table.is_file() or not args.table.read_text().strip():
        args.table.write_text("# gpt-pretrain on a GPU (bench/gpu.sh)\n\n" + HEADER)
    with args.table.open("a") as table:
        table.write(line)
    print(line, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
