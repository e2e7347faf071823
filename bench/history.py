"""Benchmark: load the history of 10,000 trials (goal: <= 1 s for `skylab history --json`).

Builds a repository with N trials through the real store API (commit, trial ref, note, keep/revert),
then times the store's load and the whole `skylab history --json` command, best of several runs.

    python bench/history.py [--trials 10000] [--repeat 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skylab.experiment.scaffold import init_experiment  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402
from skylab.store.notes import Decision, Status, TrialNote, utc_now  # noqa: E402
from tests.factory import tree_with  # noqa: E402


def build(directory: Path, trials: int) -> None:
    init_experiment(directory, template="tiny-bigram")
    store = TrialStore.open(directory)
    rng = random.Random(0)
    best_commit, best_value = store.start_point(), None
    store.ensure_run_branch("bench", best_commit)
    started = time.perf_counter()
    for i in range(trials):
        status = Status.CRASH if rng.random() < 0.05 else Status.SUCCESS
        value = None if status is Status.CRASH else 3.5 - 0.3 * rng.random() * (i / trials)
        lr = round(10 ** rng.uniform(-3, 0), 6)
        tree = tree_with(store, best_commit, {"train.py": f"LEARNING_RATE = {lr}\n"})
        ref = store.create_trial("bench", tree, best_commit, f"LEARNING_RATE={lr}")
        commit = ref.commit
        keep = value is not None and (best_value is None or value < best_value)
        note = TrialNote(
            trial=ref.number,
            tag="bench",
            status=status,
            decision=Decision.KEEP if keep else Decision.REVERT,
            metric="val_bpb",
            value=value,
            peak_vram_mb=40000 + rng.random() * 5000,
            strategy="sweep",
            parent=best_commit,
            started_at=utc_now(),
            train_seconds=300.0,
            wall_seconds=325.0,
            description=f"LEARNING_RATE={lr}",
            params={"LEARNING_RATE": lr},
        )
        store.finish_trial(ref, note)
        if keep:
            best_commit, best_value = commit, value
        if (i + 1) % 1000 == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            print(f"  built {i + 1}/{trials} trials ({rate:.0f} trials/s)", flush=True)


@contextmanager
def bench_repository(trials: int, keep: Path | None) -> Iterator[Path]:
    """A repository of `trials` trials: built (or reused) in `keep`, else in a temporary folder."""
    directory = keep or Path(tempfile.mkdtemp(prefix="skylab-bench-")) / "repo"
    try:
        if not (directory / ".git").exists():
            print(f"building {trials} trials in {directory}")
            start = time.perf_counter()
            build(directory, trials)
            print(f"built in {time.perf_counter() - start:.1f} s")
        yield directory
    finally:
        if keep is None:
            shutil.rmtree(directory.parent, ignore_errors=True)


def bench_arguments(doc: str | None, *extra: tuple[str, int]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    for name, default in extra:
        parser.add_argument(name, type=int, default=default)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the repository here and keep it")
    return parser.parse_args()


def best_of(repeat: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    args = bench_arguments(__doc__, ("--repeat", 5))
    with bench_repository(args.trials, args.keep) as directory:
        store = TrialStore.open(directory)
        count = len(store.load().trials)
        load_s = best_of(args.repeat, lambda: TrialStore.open(directory).load())
        skylab = Path(sys.executable).parent / "skylab"
        command = [str(skylab), "history", "--json", "-C", str(directory)]
        cli_s = best_of(args.repeat, lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL))
        print(f"trials: {count}")
        print(f"store load:              {load_s * 1000:.0f} ms (best of {args.repeat})")
        print(f"skylab history --json:   {cli_s * 1000:.0f} ms (best of {args.repeat}, whole process)")
        print("goal: <= 1000 ms for 10,000 trials:", "met" if cli_s <= 1.0 else "NOT met")


if __name__ == "__main__":
    main()
