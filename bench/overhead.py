"""Benchmark: Skylab's overhead per trial (goal: <= 1 s; every second of it is GPU time not training).

Runs N trials of an experiment whose train.py sleeps a fixed time, through the real `skylab run`
(CLI, loop, store, local runner), and reports (wall time - time inside the trial commands) / N.

    python bench/overhead.py [--trials 20] [--sleep 2.0]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each trial's command sleeps")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="skylab-overhead-"))
    try:
        space = "X = { low = 0.0, high = 6.0 }\nY = { low = -3.0, high = 3.0 }"
        exp = make_loop_experiment(workdir / "exp", mode="random", parameters=space, SLEEP=args.sleep)
        started = time.perf_counter()
        subprocess.run(
            [SKYLAB, "run", "--tag", "bench", "--max-trials", str(args.trials), "-C", str(exp)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        total = time.perf_counter() - started
        rows = history_json(exp)
        inside = sum(r["wall_seconds"] or 0.0 for r in rows)
        print(f"trials: {len(rows)} of {args.sleep:.1f} s sleep each")
        print(f"wall time: {total:.2f} s, inside trial commands: {inside:.2f} s")
        print(f"overhead per trial: {(total - inside) / len(rows) * 1000:.0f} ms (goal <= 1000 ms)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
