"""Benchmark: how often does the loop keep noise, and how often does it miss a real effect?

A synthetic experiment with known truth: train.py prints a metric that is a baseline, minus the true
effect of every candidate change switched on, plus Gaussian noise of σ = SIGMA drawn from the seed
(SKYLAB_SEED), the replicate and the set of changes (so two different commits never share a draw, the
way machine load makes one run differ from the next). Each replicate proposes NULLS changes with no
effect and one change of each size in EFFECTS (in σ), in a shuffled order, through the real loop
(orchestrator, local runner, store, judge), once with the greedy settings and once with each other
setting given. Effects add up, so every candidate's true gain over the best at its time is its own
effect: a kept no-effect change is a false keep, a reverted real effect a miss.

    python bench/decisions.py [--replicates 10] [--nulls 15] [--effects 1,2,3,4,5]

Prints one table: false keeps (of the no-effect changes), keeps per effect size, and the measurements
spent per replicate, relative to greedy.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from skylab.experiment.config import load_config  # noqa: E402
from skylab.experiment.constants import set_constants  # noqa: E402
from skylab.experiment.scaffold import init_experiment  # noqa: E402
from skylab.loop import Orchestrator  # noqa: E402
from skylab.loop.progress import Reporter, RunState  # noqa: E402
from skylab.runner.local import LocalRunner  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402
from skylab.store.notes import Decision  # noqa: E402
from skylab.strategy import Proposal, ProposalContext  # noqa: E402

SIGMA = 0.01
SETTINGS = {
    "greedy": "noise_samples = 1\nconfirm = 0\nsigmas = 0\nkeep_simpler = false",
    "defaults": "noise_samples = 3\nconfirm = 2\nsigmas = 2",
    "confirm = 1": "noise_samples = 3\nconfirm = 1\nsigmas = 2",
}
TRAIN = """\
import os
import random

SIGMA = {sigma!r}
REPLICATE = 0
EFFECTS = {{}}  # candidate -> its true effect in σ (lower is better)
{switches}

on = tuple(k for k in sorted(EFFECTS) if globals()[f"C{{k}}"])
seed = int(os.environ.get("SKYLAB_SEED", "0"))
noise = random.Random(f"{{REPLICATE}}/{{seed}}/{{on}}").gauss(0.0, SIGMA)
value = 3.0 - SIGMA * sum(EFFECTS[k] for k in on) + noise
print("---")
print(f"val_bpb: {{value:.8f}}")
"""
CONFIG = """\
[experiment]
name = "decisions-bench"

[search]
editable_files = ["train.py"]
frozen_files = ["prepare.py"]
metric = "val_bpb"

[execution]
command = "python train.py"
time_budget_seconds = 1

[decision]
{decision}
"""


class Candidates:
    """Proposes each candidate change once, in a fixed order, on top of the current best."""

    name = "scripted"

    def __init__(self, order: list[int]) -> None:
        self.order = list(order)

    def propose(self, context: ProposalContext) -> Proposal | None:
        if not self.order:
            return None
        k = self.order.pop(0)
        path = context.workdir / "train.py"
        path.write_text(set_constants(path.read_text(encoding="utf-8"), {f"C{k}": 1}, "train.py"))
        return Proposal(f"candidate {k}", {f"C{k}": 1})


@dataclass
class Tally:
    false_keeps: int = 0
    nulls: int = 0
    spent: int = 0
    kept_by_size: dict[float, int] = field(default_factory=dict)


@dataclass
class Outcome:
    kept: dict[int, bool]  # candidate -> kept
    measurements: int


def run_replicate(
    directory: Path, effects: dict[int, float], order: list[int], replicate: int, decision: str
) -> Outcome:
    directory.mkdir(parents=True)
    switches = "\n".join(f"C{k} = 0" for k in sorted(effects))
    train = TRAIN.format(sigma=SIGMA, switches=switches)
    train = set_constants(train, {"REPLICATE": replicate}, "train.py")
    train = train.replace("EFFECTS = {}", f"EFFECTS = {effects!r}")
    (directory / "train.py").write_text(train)
    (directory / "prepare.py").write_text('"""Nothing to prepare."""\n')
    (directory / "experiment.toml").write_text(CONFIG.format(decision=decision))
    init_experiment(directory)
    store = TrialStore.open(directory)
    config = load_config(directory)
    reporter = Reporter(Console(file=io.StringIO()), RunState("b", "scripted", "val_bpb", None))
    Orchestrator(store, config, Candidates(order), LocalRunner(), "b", reporter).run()
    kept: dict[int, bool] = {}
    spent = 0
    for trial in store.load().trials:
        note = trial.note
        assert note is not None
        spent += max(1, len(note.measurements))
        if note.description.startswith("candidate "):
            kept[int(note.description.split()[1])] = note.decision is Decision.KEEP
    return Outcome(kept, spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--nulls", type=int, default=15)
    parser.add_argument("--effects", default="1,2,3,4,5", help="true effects, in σ")
    args = parser.parse_args()
    sizes = [float(x) for x in args.effects.split(",") if x]
    effects = dict.fromkeys(range(1, args.nulls + 1), 0.0)
    effects.update({args.nulls + 1 + i: size for i, size in enumerate(sizes)})
    totals = {name: Tally(kept_by_size=dict.fromkeys(sizes, 0)) for name in SETTINGS}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="skylab-decisions-") as scratch:
        for replicate in range(args.replicates):
            order = list(effects)
            random.Random(replicate).shuffle(order)
            for name, decision in SETTINGS.items():
                out = run_replicate(
                    Path(scratch) / f"{name}-{replicate}", effects, order, replicate, decision
                )
                tally = totals[name]
                tally.spent += out.measurements
                for k, was_kept in out.kept.items():
                    if effects[k] == 0:
                        tally.nulls += 1
                        tally.false_keeps += was_kept
                    else:
                        tally.kept_by_size[effects[k]] += was_kept
            elapsed = time.monotonic() - started
            print(f"replicate {replicate + 1}/{args.replicates} done ({elapsed:.0f} s)", file=sys.stderr)
    greedy = totals["greedy"].spent
    header = ["settings", "false keeps", *[f"kept {s:g}σ" for s in sizes], "measurements / replicate"]
    print("| " + " | ".join([*header, "vs greedy"]) + " |")
    print("|" + "---|" * (len(header) + 1))
    for name, tally in totals.items():
        cells = [
            f"`{name}`",
            f"{tally.false_keeps}/{tally.nulls} ({100 * tally.false_keeps / max(1, tally.nulls):.1f} %)",
            *[f"{tally.kept_by_size[s]}/{args.replicates}" for s in sizes],
            f"{tally.spent / args.replicates:.1f}",
            f"{tally.spent / greedy:.2f}×",
        ]
        print("| " + " | ".join(cells) + " |")
    effects_text = f"{args.nulls} no-effect changes and one each of {args.effects} σ"
    print(f"{args.replicates} replicates, σ = {SIGMA}, {effects_text}: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
