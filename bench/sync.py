"""Benchmark: share N trials with a teammate through a bare remote, and time each step (goals: a
first push <= 60 s with a one-screen summary, an incremental push <= 2 s).

    python bench/sync.py [--trials 10000] [--keep DIR]

Builds (or reuses) the repository of bench/history.py, then in a temporary folder: pushes its main
branch and `skylab push`es its trials to a fresh bare remote, pushes twice more with nothing new,
three times more with one new trial each (before and after the remote's `git gc`), times
git's own push of one trial for scale, clones that remote as a teammate who `skylab pull`s
everything and pulls again with nothing new, and pushes one trial of the teammate's before one
more of ours (which then fetches and integrates the teammate's first). Each `skylab` command is
timed as a whole process; the lines it printed are counted.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history import add_one, add_trial, bench_arguments, bench_repository  # noqa: E402
from skylab.store.derived.remoterecord import record_path  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402
from skylab.store.refs import NOTES_REF, trial_ref  # noqa: E402
from skylab.store.sync import staging_prefix  # noqa: E402

SKYLAB = Path(sys.executable).parent / "skylab"


# As an installed skylab runs: with its bytecode compiled once and kept (here outside the checkout),
# where an environment that sets PYTHONDONTWRITEBYTECODE compiles every module on every command
# (0.14 s of each).
INSTALLED = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
INSTALLED["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "skylab-bench-pycache")


def timed(*command: str) -> tuple[float, int]:
    """Seconds the command took, and the lines it printed; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=INSTALLED)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return seconds, len((done.stdout + done.stderr).splitlines())


def main() -> None:
    args = bench_arguments(__doc__)
    with bench_repository(args.trials, args.keep) as directory, tempfile.TemporaryDirectory() as scratch:
        remote, mate = Path(scratch) / "remote.git", Path(scratch) / "mate"
        subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
        subprocess.run(
            ["git", "-C", str(directory), "push", "-q", str(remote), "HEAD:refs/heads/main"], check=True
        )
        subprocess.run(["git", "-C", str(remote), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
        timed(sys.executable, "-m", "compileall", "-q", str(ROOT / "skylab"))  # outside the timings
        pushes = ("first push to a bare remote", "push again, nothing new", "push, nothing new")
        for name in pushes:
            seconds, lines = timed(str(SKYLAB), "push", str(remote), "-C", str(directory))
            print(f"{name + ':':40} {seconds:6.1f} s, {lines} lines")
        one_new = []
        for _ in range(3):
            add_one(TrialStore.open(directory))
            one_new.append(timed(str(SKYLAB), "push", str(remote), "-C", str(directory))[0])
        print(f"{'push of one new trial (3 times):':40} " + ", ".join(f"{s:.2f}" for s in one_new) + " s")
        # A first push leaves one loose ref file per trial in a bare remote, which every later push
        # lists; the remote's own `git gc` (or a hosting service) packs them.
        subprocess.run(["git", "-C", str(remote), "gc", "--quiet"], check=True)
        one_new = []
        for _ in range(3):
            add_one(TrialStore.open(directory))
            one_new.append(timed(str(SKYLAB), "push", str(remote), "-C", str(directory))[0])
        print(f"{'the same after the remote git gc:':40} " + ", ".join(f"{s:.2f}" for s in one_new) + " s")
        store = TrialStore.open(directory)
        add_one(store)  # what git alone takes to push it, for scale
        newest = max(ref.number for ref in store.trial_refs() if ref.tag == "bench")
        push = ["push", "-q", "--atomic", str(remote), trial_ref("bench", newest), NOTES_REF]
        started = time.perf_counter()
        subprocess.run(["git", "-C", str(directory), *push], check=True)
        print(f"{'  git push of that alone:':40} {time.perf_counter() - started:6.1f} s")
        subprocess.run(["git", "clone", "-q", str(remote), str(mate)], check=True)
        for name in ("a teammate's first pull", "pull, nothing new"):
            seconds, lines = timed(str(SKYLAB), "pull", "origin", "-C", str(mate))
            print(f"{name + ':':40} {seconds:6.1f} s, {lines} lines")
        mates = TrialStore.open(mate)  # under a tag of this run's: a kept repository keeps its trials
        add_trial(mates, random.Random(0), 1, 1, mates.start_point(), None, f"mate-{os.getpid()}")
        timed(str(SKYLAB), "push", "origin", "-C", str(mate))
        add_one(TrialStore.open(directory))
        seconds, lines = timed(str(SKYLAB), "push", str(remote), "-C", str(directory))
        print(f"{'push of one after a teammate pushed:':40} {seconds:6.1f} s, {lines} lines")
        forget_staged(directory, remote)


def forget_staged(directory: Path, remote: Path) -> None:
    """Delete what the pushes staged and recorded of the temporary remote (named by its URL, so
    each run stages anew): a kept repository would otherwise carry them into every later run."""
    store = TrialStore.open(directory)
    staging = staging_prefix(store, str(remote))
    store.team.forget_remote_refs(staging)
    record_path(store.git.skylab_dir, staging).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
