"""Benchmark: Skylab's overhead per trial (goal: <= 1 s; every second of it is GPU time not training).

Runs N trials of an experiment whose train.py sleeps a fixed time, through the real `skylab run`
(CLI, loop, store, local runner), and reports (wall time - time inside the trial commands) / N.
With `--history H`, the repository first holds H trials of an earlier run, written through the
store's API as bench/history.py writes them (`--keep DIR` builds it there once and reuses it), so
the overhead is measured where history is long.

    python bench/overhead.py [--trials 20] [--sleep 2.0] [--history 0] [--keep DIR]
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
from bench.history import add_history  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402
from tests.loop_experiment import make_loop_experiment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each trial's command sleeps")
    parser.add_argument("--history", type=int, default=0, help="trials of an earlier run already there")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the repository here and keep it")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="skylab-overhead-"))
    try:
        exp = args.keep or workdir / "exp"
        if not (exp / ".git").exists():
            space = "X = { low = 0.0, high = 6.0 }\nY = { low = -3.0, high = 3.0 }"
            make_loop_experiment(exp, mode="random", parameters=space, SLEEP=args.sleep)
            if args.history:
                print(f"writing {args.history} trials of history in {exp}", flush=True)
                train_py = (exp / "train.py").read_text()
                add_history(TrialStore.open(exp), args.history, tag="history", train_py=train_py)
        tag = f"overhead{int(time.time())}"  # a run of its own, however often the repository is reused
        started = time.perf_counter()
        subprocess.run(
            [SKYLAB, "run", "--tag", tag, "--max-trials", str(args.trials), "-C", str(exp)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        total = time.perf_counter() - started
        rows = [row for row in history_json(exp) if row["tag"] == tag]
        inside = sum(r["wall_seconds"] or 0.0 for r in rows)
        history = len(history_json(exp)) - len(rows)
        print(f"trials: {len(rows)} of {args.sleep:.1f} s sleep each, after {history} trials of history")
        print(f"wall time: {total:.2f} s, inside trial commands: {inside:.2f} s")
        print(f"overhead per trial: {(total - inside) / len(rows) * 1000:.0f} ms (goal <= 1000 ms)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
