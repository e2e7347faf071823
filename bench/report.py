"""Benchmark: render the report of 10,000 trials (goal: <= 5 s), measure the file, and time how
long headless Chromium takes to open it (load to drawn; goal: <= 3 s).

python bench/report.py [--trials 10000] [--keep DIR]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history import bench_arguments, bench_repository  # noqa: E402
from skylab.experiment.config import load_config  # noqa: E402
from skylab.report.html import generate  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402
from tests.browser import chromium, open_report  # noqa: E402


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
        print(f"opened in Chromium in {open_seconds(output):.2f} s (goal <= 3 s, load to drawn)")


def open_seconds(report: Path) -> float:
    """Seconds from asking headless Chromium to load `report` until its script has drawn it."""
    with tempfile.TemporaryDirectory() as profile, chromium(Path(profile)) as driver:
        driver.get("about:blank")  # type: ignore[attr-defined]
        started = time.perf_counter()
        open_report(driver, report, timeout=120)
        return time.perf_counter() - started


if __name__ == "__main__":
    main()
