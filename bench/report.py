"""Benchmark: render the report of 10,000 trials (goal: <= 5 s) and measure the file.

python bench/report.py [--trials 10000] [--keep DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history import bench_arguments, bench_repository  # noqa: E402
from skylab.experiment.config import load_config  # noqa: E402
from skylab.report.html import generate  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402


def main() -> None:
    args = bench_arguments(__doc__)
    with bench_repository(args.trials, args.keep) as directory:
        store = TrialStore.open(directory)
        config = load_config(directory)
        output = directory / ".skylab" / "reports" / "bench.html"
        started = time.perf_counter()
        generate(store, config, output)
        seconds = time.perf_counter() - started
        print(f"trials: {len(store.load().trials)}")
        size_mb = output.stat().st_size / 1e6
        print(f"report rendered in {seconds:.2f} s (goal <= 5 s), {size_mb:.1f} MB: {output}")


if __name__ == "__main__":
    main()
