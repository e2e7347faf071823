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
from skylab.store.collector import collector_paused  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402
from skylab.store.notes import Decision, Status, TrialNote, utc_now  # noqa: E402
from tests.factory import tree_with  # noqa: E402


def build(directory: Path, trials: int) -> None:
    init_experiment(directory, template="tiny-bigram")
    add_history(TrialStore.open(directory), trials)


def add_history(store: TrialStore, trials: int, tag: str = "bench", train_py: str = "") -> None:
    """`trials` sweep trials of run `tag`, written through the store's API as the loop writes them;
    each trial's train.py is `train_py` with a LEARNING_RATE line added."""
    rng = random.Random(0)
    best_commit, best_value = store.start_point(), None
    store.ensure_run_branch(tag, best_commit)
    maintenance = [0.0]  # seconds spent in the store's maintenance (git gc --auto, pack-refs)
    maintain = store.maintain

    def timed_maintain() -> None:
        begun = time.perf_counter()
        maintain()
        maintenance[0] += time.perf_counter() - begun

    store.maintain = timed_maintain  # type: ignore[method-assign,assignment]
    started = last = time.perf_counter()
    for i in range(trials):
        best_commit, best_value = add_trial(store, rng, i, trials, best_commit, best_value, tag, train_py)
        if (i + 1) % 1000 == 0:
            now = time.perf_counter()
            rate, recent = (i + 1) / (now - started), 1000 / (now - last)
            print(
                f"  built {i + 1}/{trials} trials ({rate:.0f} trials/s, the last 1000 at {recent:.0f}/s,"
                f" {maintenance[0]:.1f} s of it maintenance)",
                flush=True,
            )
            last, maintenance[0] = now, 0.0


def add_one(store: TrialStore) -> None:
    """One more trial on the run's tip, as the loop writes it (reverted: nothing beats -inf)."""
    tip = store.git.ref_target("refs/heads/skylab/bench") or store.start_point()
    add_trial(store, random.Random(), 1, 1, tip, float("-inf"))


def add_trial(
    store: TrialStore,
    rng: random.Random,
    i: int,
    trials: int,
    best_commit: str,
    best_value: float | None,
    tag: str = "bench",
    train_py: str = "",
) -> tuple[str, float | None]:
    """Commit, trial ref and note of one sweep trial; returns the best (commit, value) after it."""
    status = Status.CRASH if rng.random() < 0.05 else Status.SUCCESS
    value = None if status is Status.CRASH else 3.5 - 0.3 * rng.random() * (i / trials)
    lr = round(10 ** rng.uniform(-3, 0), 6)
    tree = tree_with(store, best_commit, {"train.py": f"{train_py}LEARNING_RATE = {lr}\n"})
    ref = store.create_trial(tag, tree, best_commit, f"LEARNING_RATE={lr}")
    commit = ref.commit
    keep = value is not None and (best_value is None or value < best_value)
    note = TrialNote(
        trial=ref.number,
        tag=tag,
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
    return (commit, value) if keep else (best_commit, best_value)


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

        # A load unpickles no note (see notechunks): what reading them all then costs, as the
        # report does (with the garbage collector paused, as it is there).
        def every_note() -> None:
            with collector_paused():
                [t.note for t in TrialStore.open(directory).load().trials]

        every_note_s = best_of(args.repeat, every_note)
        skylab = Path(sys.executable).parent / "skylab"
        command = [str(skylab), "history", "--json", "-C", str(directory)]
        cli_s = best_of(args.repeat, lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL))
        store.load()

        def next_trial_then_load() -> None:
            add_one(store)
            started = time.perf_counter()
            store.load()
            loads.append(time.perf_counter() - started)

        loads: list[float] = []
        for _ in range(args.repeat):
            next_trial_then_load()
        loop_s = min(loads)
        # The history cache is written every few hundred notes, so a new handle usually has some
        # trials to catch up on: load again now that there are `repeat` trials it has not seen.
        behind_s = best_of(args.repeat, lambda: TrialStore.open(directory).load())
        print(f"trials: {count}")
        print(f"store load:              {load_s * 1000:.0f} ms (best of {args.repeat}, a new handle)")
        print(f"the same, every note read:  {every_note_s * 1000:.0f} ms (best of {args.repeat})")
        print(f"{args.repeat} trials after the cache:  {behind_s * 1000:.0f} ms (a new handle, catching up)")
        print(f"next load after a trial: {loop_s * 1000:.0f} ms (best of {args.repeat}, the loop's handle)")
        print(f"skylab history --json:   {cli_s * 1000:.0f} ms (best of {args.repeat}, whole process)")
        print("goal: <= 1000 ms for 10,000 trials:", "met" if cli_s <= 1.0 else "NOT met")


if __name__ == "__main__":
    main()
