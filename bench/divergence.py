"""Benchmark: how much compute does stopping diverged measurements save, and does it ever stop a
late bloomer?

A synthetic train.py prints a progress line (`step N | loss x | train Ts/Bs`) every STEP seconds
for its time budget, then its metric. Each proposal is one of four kinds:
- normal: the loss falls as 3 + 7·e^(-6·share); the metric is the baseline's plus a small effect;
- nan: the loss prints nan from a random point of the budget (`--nan-at`: 5–30 %; a learning rate
  too high, an overflow), and the script trains on to the end and prints a meaningless metric, as a
  real one that does not check its loss would;
- exploding: the loss stays finite but climbs away from the normal curve (×(1 + 3·share));
- late bloomer: the loss lags the normal curve through the middle of the budget and ends below it
  (a higher learning rate with a longer warm-down): the best change of the lot.

The same proposals run through the real loop (greedy rule, one measurement each, local runner)
with `stop_diverged = true` and `= false`, and the bench prints the wall time of all trials, the
share saved, how the diverging trials ended, and whether every late bloomer ran to its end and
was kept.

    python bench/divergence.py [--proposals 20] [--diverging 0.2] [--late 0.2] [--budget 3]
        [--nan-at 0.05,0.3] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from bench import synthetic_experiment  # noqa: E402
from skylab.experiment.config import load_config  # noqa: E402
from skylab.experiment.constants import set_constants  # noqa: E402
from skylab.loop import Orchestrator  # noqa: E402
from skylab.loop.progress import Reporter, RunState  # noqa: E402
from skylab.runner.local import LocalRunner  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402
from skylab.store.notes import Decision, Scalar, Status  # noqa: E402
from skylab.strategy import Proposal, ProposalContext  # noqa: E402

STEP = 0.05  # seconds between progress lines
TRAIN = """\
import math
import os
import time

KIND = "normal"  # normal | nan | exploding | late
EFFECT = 0.0  # how much better the metric ends (normal), in units of the baseline's 0.01 noise
NAN_AT = 0.2  # a diverging run's loss is nan from this fraction of the budget on
STEP = {step!r}

budget = float(os.environ.get("SKYLAB_TIME_BUDGET", "3"))
steps = max(1, int(budget / STEP))
for step in range(1, steps + 1):
    share = step / steps
    loss = 3.0 + 7.0 * math.exp(-6 * share)
    if KIND == "late":
        loss += 0.6 * math.sin(math.pi * share) * (1 - share) - 0.05 * share
    if KIND == "exploding":
        loss *= 1 + 3 * share
    if KIND == "nan" and share >= NAN_AT:
        loss = float("nan")
    print(f"step {{step:05d}} | loss {{loss:.4f}} | train {{step * STEP:.1f}}s/{{budget:g}}s", flush=True)
    time.sleep(STEP)
value = 3.0 - 0.01 * EFFECT - (0.05 if KIND == "late" else 0.0)
print("---")
print(f"val_bpb:          {{value:.6f}}")
print(f"training_seconds: {{steps * STEP:.1f}}")
"""
DECISION = """\
noise_samples = 1
confirm = 0
sigmas = 0
keep_simpler = false
fresh_samples = 0
stop_diverged = {stop}"""


class Kinds:
    """Proposes each change once, in order, on top of the current best."""

    name = "scripted"

    def __init__(self, changes: list[dict[str, Scalar]]) -> None:
        self.changes = list(changes)

    def propose(self, context: ProposalContext) -> Proposal | None:
        if not self.changes:
            return None
        change = self.changes.pop(0)
        path = context.workdir / "train.py"
        path.write_text(set_constants(path.read_text(encoding="utf-8"), change, "train.py"))
        return Proposal(f"{change['KIND']} {len(self.changes)}", dict(change))


def run(directory: Path, changes: list[dict[str, Scalar]], budget: float, stop: bool) -> dict[str, float]:
    decision = DECISION.format(stop=str(stop).lower())
    synthetic_experiment(directory, "divergence-bench", TRAIN.format(step=STEP), budget, decision)
    store = TrialStore.open(directory)
    reporter = Reporter(Console(file=io.StringIO()), RunState("b", "scripted", "val_bpb", None))
    started = time.monotonic()
    Orchestrator(store, load_config(directory), Kinds(changes), LocalRunner(), "b", reporter).run()
    elapsed = time.monotonic() - started
    notes = [t.note for t in store.load().trials if t.note is not None]
    kinds = [str(n.params.get("KIND", "start")) for n in notes]
    return {
        "wall": sum(n.wall_seconds or 0.0 for n in notes),
        "elapsed": elapsed,
        "diverged": sum(
            n.status is Status.DIVERGED
            for k, n in zip(kinds, notes, strict=True)
            if k in ("nan", "exploding")
        ),
        "diverging": kinds.count("nan") + kinds.count("exploding"),
        "wrongly_stopped": sum(
            n.status is Status.DIVERGED for k, n in zip(kinds, notes, strict=True) if k in ("normal", "late")
        ),
        "late_finished": sum(
            n.status is Status.SUCCESS for k, n in zip(kinds, notes, strict=True) if k == "late"
        ),
        "late_kept": sum(
            n.decision is Decision.KEEP for k, n in zip(kinds, notes, strict=True) if k == "late"
        ),
        "late": kinds.count("late"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proposals", type=int, default=20)
    parser.add_argument("--diverging", type=float, default=0.2)
    parser.add_argument("--late", type=float, default=0.2)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of training per trial")
    parser.add_argument("--nan-at", default="0.05,0.3", help="the range a nan run's loss goes nan in")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn, and printed")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    low, high = (float(x) for x in args.nan_at.split(","))
    n_diverging, n_late = round(args.proposals * args.diverging), round(args.proposals * args.late)
    kinds = ["nan"] * (n_diverging // 2) + ["exploding"] * (n_diverging - n_diverging // 2)
    kinds += ["late"] * n_late
    kinds += ["normal"] * (args.proposals - len(kinds))
    rng.shuffle(kinds)
    changes: list[dict[str, Scalar]] = [
        {"KIND": kind, "EFFECT": round(rng.uniform(-1, 1), 3), "NAN_AT": round(rng.uniform(low, high), 3)}
        for kind in kinds
    ]
    results = {}
    with tempfile.TemporaryDirectory(prefix="skylab-divergence-") as scratch:
        for stop in (False, True):
            results[stop] = run(Path(scratch) / str(stop), changes, args.budget, stop)
    off, on = results[False], results[True]
    print(
        "| stop_diverged | trials' wall time | saved | diverging stopped | others stopped | "
        "late bloomers to the end | kept |"
    )
    print("|---|---|---|---|---|---|---|")
    for stop, row in ((False, off), (True, on)):
        saved = 1 - row["wall"] / off["wall"]
        print(
            f"| {str(stop).lower()} | {row['wall']:.1f} s | {100 * saved:.0f} % | "
            f"{row['diverged']:g}/{row['diverging']:g} | {row['wrongly_stopped']:g} | "
            f"{row['late_finished']:g}/{row['late']:g} | {row['late_kept']:g}/{row['late']:g} |"
        )
    print(
        f"{args.proposals} proposals ({n_diverging} diverging: half nan, half exploding; {n_late} late "
        f"bloomers), nan from {100 * low:g}–{100 * high:g} % of the {args.budget:g} s budget, seed {seed}"
    )


if __name__ == "__main__":
    main()
