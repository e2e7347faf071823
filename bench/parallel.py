"""Benchmark: throughput of 4 workers against 1 (goal: >= 3.8x; 4x is the limit).

Both runs train the same number of trials of an experiment whose train.py sleeps a fixed time,
through the real `skylab run` (CLI, loop, store, local runners), on copies of one repository whose
starting point is already measured, so both time the steady state of a search, not its one-off
baseline (which the first trial of any new experiment measures alone).

    python bench/parallel.py [--trials 24] [--sleep 3.0] [--workers 4]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import SKYLAB, history_json  # noqa: E402
from tests.loop_experiment import make_loop_experiment  # noqa: E402


def timed_run(exp: Path, trials: int, workers: int) -> tuple[float, int]:
    """Seconds for `trials` trials with `workers` workers, and how many trials succeeded."""
    started = time.perf_counter()
    subprocess.run(
        [
            SKYLAB,
            "run",
            "--tag",
            "bench",
            "--workers",
            str(workers),
            "--max-trials",
            str(trials),
            "-C",
            str(exp),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    rows = history_json(exp)
    return elapsed, sum(r["status"] == "success" for r in rows) - 1  # less the baseline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--sleep", type=float, default=3.0, help="seconds each trial's command sleeps")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="skylab-parallel-"))
    try:
        space = "X = { low = 0.0, high = 6.0 }\nY = { low = -3.0, high = 3.0 }"
        seed = make_loop_experiment(workdir / "seed", mode="random", parameters=space, SLEEP=args.sleep)
        subprocess.run(
            [SKYLAB, "run", "--tag", "bench", "--max-trials", "1", "-C", str(seed)],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # the baseline, measured once for both
        results = {}
        for workers in (1, args.workers):
            copy = workdir / f"w{workers}"
            subprocess.run(["git", "clone", "-q", "--mirror", str(seed), str(copy / ".git")], check=True)
            subprocess.run(["git", "config", "--bool", "core.bare", "false"], cwd=copy, check=True)
            subprocess.run(["git", "checkout", "-q", "-f", "main"], cwd=copy, check=True)
            results[workers] = timed_run(copy, args.trials, workers)
            seconds, ok = results[workers]
            print(f"{workers} worker(s): {args.trials} trials in {seconds:.2f} s ({ok} succeeded)")
        one, many = results[1][0], results[args.workers][0]
        print(
            f"throughput: {one / many:.2f}x with {args.workers} workers (goal >= 3.8x, limit {args.workers}x)"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
