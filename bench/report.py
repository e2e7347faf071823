"""Benchmark: render the report of 10,000 trials (goal: <= 5 s) and measure the file.

python bench/report.py [--trials 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history import build  # noqa: E402
from skylab.config import load_config  # noqa: E402
from skylab.gitstore import TrialStore  # noqa: E402
from skylab.report import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the repository here and keep it")
    args = parser.parse_args()
    directory = args.keep or Path(tempfile.mkdtemp(prefix="skylab-bench-")) / "repo"
    try:
        if not (directory / ".git").exists():
            print(f"building {args.trials} trials in {directory}")
            build(directory, args.trials)
        store = TrialStore.open(directory)
        config = load_config(directory)
        output = directory / ".skylab" / "reports" / "bench.html"
        started = time.perf_counter()
        generate(store, config, output)
        seconds = time.perf_counter() - started
        print(f"trials: {len(store.load().trials)}")
        size_mb = output.stat().st_size / 1e6
        print(f"report rendered in {seconds:.2f} s (goal <= 5 s), {size_mb:.1f} MB: {output}")
    finally:
        if args.keep is None:
            shutil.rmtree(directory.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
