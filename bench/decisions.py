"""Benchmark: how good is the model a run ends with, for the compute it spent?

A synthetic experiment with known truth runs through the real loop (orchestrator, local runner,
store, judge). train.py prints a metric that is a baseline, minus the true effect of every
candidate change switched on, plus noise; each proposal switches one more candidate on, on top of
the best at its time, so effects add up and every proposal's true gain over the best is its own
effect. The bench knows each effect, so it scores what a researcher cares about: the true gain of
the final best, at a fixed compute budget (in measurements), and how far the best's reported value
is from its truth (the winner's curse), as well as false keeps (a no-effect change kept), harmful
keeps and keeps by effect size.

Mixes (`--mix`):
- `today`: NULLS changes with no effect and one each of EFFECTS (in σ), shuffled, all proposed.
- `long`: a stream of proposals, 5 % helpful (exponential, mean 2σ), 95 % slightly harmful
  (exponential, mean 0.5σ), proposed until `--compute` measurements are spent.
- `harmful`: the same stream with 50 % harmful (mean 0.5σ), 45 % no effect, 5 % helpful (mean 2σ).
- `simpler`: `today`'s nulls, half of them changes that only remove a line (no effect: equal but
  simpler, worth keeping with keep_simpler).

Noise (`--noise`): `gauss` (σ = SIGMA, drawn afresh per seed and commit), `heavy` (Student t with 3
degrees of freedom, scaled to σ), `seeded` (most of σ is the seed's own effect, the same on every
commit: what pairing cancels), `drift` (a slow wave over the run's measurements shifts the metric by
up to 1.5σ, multiplies the noise by 0.5–1.5 and the throughput train.py prints by 0.85–1.15: a
machine whose load changes). Throughput also jitters by 1 % from one measurement to the next.

    python bench/decisions.py [--mix long] [--noise gauss] [--replicates 20] [--compute 200]
        [--policies greedy,old,defaults] [--seed 0] [--jobs 2]

Every policy in a replicate sees the same proposals in the same order and the same noise for the
same (seed, commit): differences between policies are the rules', not luck's. The seed is printed.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from bench import synthetic_experiment  # noqa: E402
from skylab.experiment.config import load_config  # noqa: E402
from skylab.experiment.constants import set_constants  # noqa: E402
from skylab.loop import Orchestrator  # noqa: E402
from skylab.loop.interleave import PAIRED_MEASUREMENTS, number_list  # noqa: E402
from skylab.loop.progress import Reporter, RunState  # noqa: E402
from skylab.runner.local import LocalRunner  # noqa: E402
from skylab.store.gitstore import TrialStore  # noqa: E402
from skylab.store.notes import Decision  # noqa: E402
from skylab.strategy import Proposal, ProposalContext  # noqa: E402

SIGMA = 0.01
BASELINE = 3.0
POLICIES = {
    "greedy": "noise_samples = 1\nconfirm = 0\nsigmas = 0\nkeep_simpler = false",
    "old": (
        "filter_sigmas = 0\nearly_sigmas = inf\nfutility = 0\nsigmas = 2\nconfirm = 2\npaired = false\n"
        'interleave = "never"'
    ),
    "defaults": "",
    "unpaired": "paired = false",
    "never": 'interleave = "never"',
    "always": 'interleave = "always"',
    "confirm = 1": "confirm = 1",
}
TRAIN = """\
import math
import os
import random

SIGMA = {sigma!r}
REPLICATE = 0
NOISE = "gauss"
CLOCK = ""  # a file counting this run's measurements: the time the drift follows
EFFECTS = {{}}  # candidate -> its true effect in σ (positive: better; lower is better)
REMOVABLE = {{}}  # candidate -> its true effect when its line is removed
{switches}
{removable}

on = [k for k in sorted(EFFECTS) if globals()[f"C{{k}}"]]
on += [k for k in sorted(REMOVABLE) if f"R{{k}}" not in globals()]
seed = int(os.environ.get("SKYLAB_SEED", "0"))
draw = random.Random(f"{{REPLICATE}}/{{seed}}/{{on}}")
if NOISE == "heavy":
    noise = SIGMA * draw.gauss(0, 1) / math.sqrt(draw.gammavariate(1.5, 2) / 3) / math.sqrt(3)
elif NOISE == "seeded":
    noise = SIGMA * (0.8 * random.Random(f"{{REPLICATE}}/{{seed}}").gauss(0, 1) + 0.6 * draw.gauss(0, 1))
else:
    noise = SIGMA * draw.gauss(0, 1)
if NOISE == "drift":
    with open(CLOCK, "a+") as clock:
        clock.seek(0)
        t = len(clock.read())
        clock.write(".")
    wave = math.sin(2 * math.pi * t / 60)
    noise = noise * (1 + 0.5 * math.cos(2 * math.pi * t / 60)) + 1.5 * SIGMA * wave
    speed = 1 - 0.15 * wave  # the load that slows training is what makes the metric worse
else:
    speed = 1.0
speed *= 1 + 0.01 * random.Random(f"{{REPLICATE}}/{{seed}}/{{on}}/speed").gauss(0, 1)  # jitter
effect = sum(EFFECTS.get(k, 0.0) for k in on) + sum(REMOVABLE.get(k, 0.0) for k in on)
print("---")
print(f"val_bpb: {{{baseline} - SIGMA * effect + noise:.8f}}")
print(f"tok_per_sec: {{1000 * speed:.1f}}")
"""


@dataclass(frozen=True)
class Candidate:
    number: int
    effect: float  # in σ; positive is better
    removes_line: bool = False


def proposals(
    mix: str, nulls: int, effects: list[float], compute: int, rng: random.Random
) -> list[Candidate]:
    """The replicate's proposals in the order they are made (a stream long enough for any policy)."""
    if mix in ("today", "simpler"):
        sizes = [0.0] * nulls + effects
        rng.shuffle(sizes)
        removes = set(rng.sample(range(len(sizes)), k=nulls // 2)) if mix == "simpler" else set()
        removes = {i for i in removes if sizes[i] == 0.0}
        return [Candidate(i + 1, size, i in removes) for i, size in enumerate(sizes)]
    helpful, harmful = (0.05, 0.95) if mix == "long" else (0.05, 0.5)
    stream = []
    for i in range(compute):
        u = rng.random()
        if u < helpful:
            effect = rng.expovariate(1 / 2.0)
        elif u < helpful + harmful:
            effect = -rng.expovariate(1 / 0.5)
        else:
            effect = 0.0
        stream.append(Candidate(i + 1, round(effect, 6)))
    return stream


class Scripted:
    """Proposes each candidate once, in order, on top of the current best, until the run has spent
    `compute` measurements (None: until the candidates run out)."""

    name = "scripted"

    def __init__(self, candidates: list[Candidate], store: TrialStore, compute: int | None) -> None:
        self.candidates = list(candidates)
        self.store = store
        self.compute = compute

    def propose(self, context: ProposalContext) -> Proposal | None:
        if not self.candidates:
            return None
        if self.compute is not None and spent(self.store) >= self.compute:
            return None
        candidate = self.candidates.pop(0)
        path = context.workdir / "train.py"
        text = path.read_text(encoding="utf-8")
        k = candidate.number
        if candidate.removes_line:
            path.write_text(text.replace(f"R{k} = 0  # removable\n", ""))
            return Proposal(f"candidate {k}: remove a line", {})
        path.write_text(set_constants(text, {f"C{k}": 1}, "train.py"))
        return Proposal(f"candidate {k}", {f"C{k}": 1})


def spent(store: TrialStore) -> int:
    """Measurements the run trained: every trial's own, and the best's measured beside them."""
    return sum(
        max(1, len(t.note.measurements)) + len(number_list(t.note.other, PAIRED_MEASUREMENTS))
        for t in store.load().trials
        if t.note is not None
    )


@dataclass
class Outcome:
    kept: dict[int, bool]  # candidate -> kept
    measurements: int
    true_gain: float  # of the final best over the baseline, in σ
    bias: float  # the best's reported gain minus its true gain, in σ
    proposals: int


@dataclass(frozen=True)
class Replicate:
    directory: Path
    candidates: list[Candidate]
    replicate: int
    policy: str
    noise: str
    compute: int | None


def run_replicate(job: Replicate) -> Outcome:
    directory = job.directory
    plain = [c for c in job.candidates if not c.removes_line]
    removable = [c for c in job.candidates if c.removes_line]
    train = TRAIN.format(
        sigma=SIGMA,
        baseline=BASELINE,
        switches="\n".join(f"C{c.number} = 0" for c in plain),
        removable="\n".join(f"R{c.number} = 0  # removable" for c in removable),
    )
    train = set_constants(
        train, {"REPLICATE": job.replicate, "NOISE": job.noise, "CLOCK": str(directory / "clock")}, "train.py"
    )
    train = train.replace("EFFECTS = {}", f"EFFECTS = { {c.number: c.effect for c in plain}!r}")
    train = train.replace("REMOVABLE = {}", f"REMOVABLE = { {c.number: c.effect for c in removable}!r}")
    synthetic_experiment(directory, "decisions-bench", train, 1, POLICIES[job.policy])
    store = TrialStore.open(directory)
    config = load_config(directory)
    reporter = Reporter(Console(file=io.StringIO()), RunState("b", "scripted", "val_bpb", None))
    strategy = Scripted(job.candidates, store, job.compute)
    Orchestrator(store, config, strategy, LocalRunner(), "b", reporter).run()
    history = store.load()
    effects = {c.number: c.effect for c in job.candidates}
    kept: dict[int, bool] = {}
    for trial in history.trials:
        note = trial.note
        assert note is not None
        if note.description.startswith("candidate "):
            kept[int(note.description.split()[1].rstrip(":"))] = note.decision is Decision.KEEP
    chain = history.kept_chain(store.best())
    truth = 0.0
    for trial in chain:
        note = trial.note
        if note is not None and note.description.startswith("candidate "):
            truth += effects[int(note.description.split()[1].rstrip(":"))]
    best_note = chain[-1].note if chain else None
    reported = 0.0 if best_note is None or best_note.value is None else (BASELINE - best_note.value) / SIGMA
    return Outcome(kept, spent(store), truth, reported - truth, len(kept))


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(
        self, effects: list[dict[int, Candidate]], test: Callable[[Candidate], bool]
    ) -> tuple[int, int]:
        """(kept, proposed) over the replicates' candidates that pass `test`."""
        kept = proposed = 0
        for replicate, outcome in enumerate(self.outcomes):
            for k, was_kept in outcome.kept.items():
                if test(effects[replicate][k]):
                    proposed += 1
                    kept += was_kept
        return kept, proposed


def in_bin(candidate: Candidate, low: float, high: float) -> bool:
    """Whether a helpful effect is in [low, high) (exactly `low` when the two are equal)."""
    effect = candidate.effect
    return effect == low if low == high else effect > 0 and low <= effect < high


def wilson(k: int, n: int) -> str:
    """k/n as a percentage with its 95 % Wilson interval."""
    if n == 0:
        return "–"
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{k}/{n} ({100 * p:.1f} %, {100 * max(0, centre - half):.1f}–{100 * min(1, centre + half):.1f})"


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "–"
    return f"{statistics.fmean(values):.2f} ±{statistics.stdev(values) / math.sqrt(len(values)):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mix", choices=("today", "long", "harmful", "simpler"), default="today")
    parser.add_argument("--noise", choices=("gauss", "heavy", "seeded", "drift"), default="gauss")
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--compute", type=int, default=200, help="measurements per run (long mixes)")
    parser.add_argument("--nulls", type=int, default=15)
    parser.add_argument("--effects", default="1,2,3,4,5", help="true effects, in σ (today's mix)")
    parser.add_argument(
        "--policies",
        default="greedy,old,defaults",
        help=f"of {', '.join(POLICIES)}, or settings over the defaults: 'sigmas=1.25;confirm=1'",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: drawn, and printed")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    for policy in policies:  # "sigmas=1.25;filter_sigmas=0.75": the defaults with these settings
        if "=" in policy:
            POLICIES[policy] = "\n".join(part.replace("=", " = ") for part in policy.split(";"))
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        parser.error(f"unknown policy {unknown[0]!r} (policies: {', '.join(POLICIES)})")
    sizes = [float(x) for x in args.effects.split(",") if x]
    streamed = args.mix in ("long", "harmful")
    compute = args.compute if streamed else None
    started = time.monotonic()
    streams = [
        proposals(args.mix, args.nulls, sizes, args.compute, random.Random(f"{seed}/{r}"))
        for r in range(args.replicates)
    ]
    effects = [{c.number: c for c in stream} for stream in streams]
    totals = {name: Tally() for name in policies}
    with tempfile.TemporaryDirectory(prefix="skylab-decisions-") as scratch:
        jobs = [
            Replicate(
                Path(scratch) / f"{p}-{r}".replace(" ", ""),
                streams[r],
                seed * 1000 + r,
                p,
                args.noise,
                compute,
            )
            for r in range(args.replicates)
            for p in policies
        ]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for done, (job, outcome) in enumerate(zip(jobs, pool.map(run_replicate, jobs), strict=True), 1):
                totals[job.policy].outcomes.append(outcome)
                if done % len(policies) == 0:
                    elapsed = time.monotonic() - started
                    print(
                        f"replicate {done // len(policies)}/{args.replicates} ({elapsed:.0f} s)",
                        file=sys.stderr,
                    )
    print_table(args, sizes, policies, totals, effects, seed, time.monotonic() - started)


def print_table(
    args: argparse.Namespace,
    sizes: list[float],
    policies: list[str],
    totals: dict[str, Tally],
    effects: list[dict[int, Candidate]],
    seed: int,
    seconds: float,
) -> None:
    reference = totals[policies[0]].outcomes  # every policy ran the same replicates, in order
    greedy = statistics.fmean(o.measurements for o in reference)
    if args.mix in ("today", "simpler"):
        by_size = [f"kept {s:g}σ" for s in sizes]
    else:
        by_size = ["kept <1σ", "kept 1–3σ", "kept ≥3σ"]
    header = [
        "policy",
        "false keeps",
        "harmful keeps",
        *(["simpler kept"] if args.mix == "simpler" else []),
        *by_size,
        "proposals",
        "measurements",
        f"vs {policies[0]}",
    ]
    header += ["true gain (σ)", f"gain − {policies[0]}'s (σ, paired)", "bias (σ)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in policies:
        tally = totals[name]
        if args.mix in ("today", "simpler"):
            bins = [(s, s) for s in sizes]  # exactly this size
        else:
            bins = [(0.0, 1.0), (1.0, 3.0), (3.0, math.inf)]
        kept = [tally.count(effects, partial(in_bin, low=low, high=high)) for low, high in bins]
        measurements = statistics.fmean(o.measurements for o in tally.outcomes)
        cells = [
            f"`{name}`",
            wilson(*tally.count(effects, lambda c: c.effect == 0 and not c.removes_line)),
            wilson(*tally.count(effects, lambda c: c.effect < 0)),
            *([wilson(*tally.count(effects, lambda c: c.removes_line))] if args.mix == "simpler" else []),
            *[f"{k}/{n}" for k, n in kept],
            f"{statistics.fmean(o.proposals for o in tally.outcomes):.1f}",
            f"{measurements:.1f}",
            f"{measurements / greedy:.2f}×",
            mean_se([o.true_gain for o in tally.outcomes]),
            mean_se(
                [o.true_gain - first.true_gain for o, first in zip(tally.outcomes, reference, strict=True)]
            ),
            mean_se([o.bias for o in tally.outcomes]),
        ]
        print("| " + " | ".join(cells) + " |")
    budget = f", {args.compute} measurements per run" if args.mix in ("long", "harmful") else ""
    print(
        f"mix {args.mix}, noise {args.noise}, {args.replicates} replicates{budget}, σ = {SIGMA}, "
        f"seed {seed}: {seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
