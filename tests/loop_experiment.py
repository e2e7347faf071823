"""A cheap experiment for the research loop: train.py is a quadratic of its constants, printed in
the same summary format as the real one, with knobs to sleep, crash, use 'VRAM' or leave a child."""

from __future__ import annotations

from pathlib import Path

from skylab.experiment.scaffold import init_experiment

TRAIN = """\
import math
import os
import subprocess
import sys
import time

X = 0
Y = 0
Z = 0  # no true effect: it only picks which 'noise' the measurements get
NOISE = None  # {Z: [noise for SKYLAB_SEED 0, 1, ...]}: deterministic noise, the same on every run
SLEEP_FROM_SEED = 99  # repeats of X > 0 with this SKYLAB_SEED or higher sleep SLEEP_REPEATS seconds
SLEEP_REPEATS = 0.0
SLEEP = 0.0
PER_BUDGET_SECOND = 0.0  # X costs this much per second of SKYLAB_TIME_BUDGET: a win that fades
DATA = ""  # report this as the data it trained on, whatever experiment.toml's [data] says
OVER_BUDGET = False  # report SLEEP as its training time even past SKYLAB_TIME_BUDGET (a cheat)
CRASH = False
VRAM_MB = 1000.0
SPAWN_CHILD = False
DAEMON_CHILD = False
CRASH_ABOVE = None
CRASH_FROM_SEED = 0  # CRASH_ABOVE crashes only measurements with this SKYLAB_SEED or higher
DIVERGE_ABOVE = None  # X above this: the loss prints nan at step 1, then training goes on AFTER_NAN s
AFTER_NAN = 0.0
EXIT_ON_NAN = False  # exit with status 1 right after printing the nan line, as the template does
CURVE_LINES = 0  # print this many progress lines with their training seconds instead of 3 plain ones
CURVE_ABOVE = None  # X above this trains along CURVE: "explode" (finite, far above) or "late"
CURVE = "explode"
CURVE_SLEEP = 0.0  # seconds between two of its lines
METRIC_TEXT = ""
HUGE_LINE = 0
CLOCK = ""  # a file: each measurement appends "X Y Z SKYLAB_SEED" to it, in the order they ran
MACHINE = None  # [(from, shift, speed), ...]: from the from-th measurement in CLOCK on, the machine
# moves the metric by shift and trains at speed (tok_per_sec 1000 · speed, printed when CLOCK is set)
CRASH_AT = ()  # the measurements in CLOCK's order that crash, whatever their code

seed = int(os.environ.get("SKYLAB_SEED", "0"))
noise = NOISE[Z][seed % len(NOISE[Z])] if NOISE else 0.0
shift, speed = 0.0, 1.0
if CLOCK:
    with open(CLOCK, "a+") as clock:
        clock.seek(0)
        index = len(clock.read().splitlines())
        clock.write(f"{X} {Y} {Z} {seed}\\n")
    for start, moved, rate in MACHINE or []:
        if index >= start:
            shift, speed = moved, rate
    if index in CRASH_AT:
        print("the machine failed this one", file=sys.stderr)
        sys.exit(1)
if seed >= SLEEP_FROM_SEED and X > 0 and not os.environ.get("SKIP_REPEAT_SLEEP"):
    time.sleep(SLEEP_REPEATS)
if SPAWN_CHILD:
    subprocess.Popen(["sleep", "301.25"])  # a process that must not outlive the trial
if DAEMON_CHILD:  # one that leaves the trial's process group too
    subprocess.Popen(["sleep", "302.75"], start_new_session=True)
diverges = DIVERGE_ABOVE is not None and X > DIVERGE_ABOVE
shape = CURVE if CURVE_ABOVE is not None and X > CURVE_ABOVE else "normal"
for step in range(1, CURVE_LINES + 1):
    share = step / CURVE_LINES
    loss = 3 + 7 * math.exp(-6 * share)
    if shape == "explode":
        loss *= 1 + 3 * share
    if shape == "late":
        loss += 0.6 * math.sin(math.pi * share) * (1 - share) - 0.05 * share
    budget_seconds = float(os.environ.get("SKYLAB_TIME_BUDGET") or 1)
    trained = f"train {share * budget_seconds:.2f}s/{budget_seconds:g}s"
    print(f"step {step:05d} | loss {loss:.4f} | {trained}", flush=True)
    time.sleep(CURVE_SLEEP if shape != "normal" else 0.0)
for step in range(3 if not CURVE_LINES else 0):
    loss = float("nan") if diverges and step == 1 else 10 - step
    print(f"step {step:05d} | loss {loss:.4f}", flush=True)
    if diverges and EXIT_ON_NAN and step == 1:
        sys.exit(1)
    time.sleep(SLEEP / 3 + (AFTER_NAN if diverges and step == 1 else 0.0))
if HUGE_LINE:
    print("x" * HUGE_LINE, flush=True)
if CRASH or (CRASH_ABOVE is not None and X > CRASH_ABOVE and seed >= CRASH_FROM_SEED):
    print("RuntimeError: CUDA out of memory", file=sys.stderr)
    sys.exit(1)
budget = float(os.environ.get("SKYLAB_TIME_BUDGET") or SLEEP)
fading = PER_BUDGET_SECOND * X * budget
print("---")
value = (X - 3) ** 2 + (Y + 1) ** 2 + 1 + noise + fading + shift
print(f"val_bpb:          {METRIC_TEXT or format(value, '.6f')}")
print(f"training_seconds: {SLEEP if OVER_BUDGET else min(SLEEP, budget):.1f}")
if DATA or os.environ.get("SKYLAB_DATA"):  # what it trained on: the declared data, unless overridden
    print(f"data:             {DATA or os.environ['SKYLAB_DATA']}")
print(f"peak_vram_mb:     {VRAM_MB:.1f}")
print("mfu_percent:      12.5")
print("steps:            3")
if CLOCK:
    print(f"tok_per_sec:      {1000 * speed:.0f}")
"""

CONFIG = """\
[experiment]
name = "quadratic"

[search]
editable_files = ["train.py"]
frozen_files = ["prepare.py"]
metric = "val_bpb"
direction = "{direction}"

[execution]
command = "python train.py"
time_budget_seconds = 1

[constraints]
max_vram_gb = 10
max_trial_wall_time = {wall}

[sweep]
mode = "{mode}"
seed = 7
[sweep.parameters]
{parameters}
"""

GRID = "X = [0, 1, 2, 3]\nY = [-1, 0]"
# One measurement per trial, kept when strictly better: most loop tests are about something else, and
# this experiment is deterministic anyway. Pass decision=None for Skylab's defaults (no table).
GREEDY = "noise_samples = 1\nconfirm = 0\nsigmas = 0\nkeep_simpler = false\nfresh_samples = 0"
# The rule before the staged one: every screened-in candidate measured three times, judged at 2σ·se,
# the best never measured beside it nor on fresh seeds.
OLD_RULE = (
    "filter_sigmas = 0\nearly_sigmas = inf\nfutility = 0\nsigmas = 2\nconfirm = 2\npaired = false\n"
    'fresh_samples = 0\ninterleave = "never"'
)


def make_loop_experiment(
    directory: Path,
    *,
    mode: str = "grid",
    direction: str = "minimize",
    wall: float = 30,
    parameters: str = GRID,
    decision: str | None = GREEDY,
    **constants: object,
) -> Path:
    directory.mkdir(parents=True)
    train = TRAIN
    for name, value in constants.items():
        train = train.replace(f"\n{name} = ", f"\n{name} = {value!r}  # was ", 1)
    (directory / "train.py").write_text(train)
    (directory / "prepare.py").write_text('"""Nothing to prepare: the data is the constants."""\n')
    (directory / "experiment.toml").write_text(
        CONFIG.format(mode=mode, direction=direction, wall=wall, parameters=parameters)
        + (f"\n[decision]\n{decision}\n" if decision is not None else "")
    )
    init_experiment(directory)
    return directory
