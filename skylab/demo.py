"""`skylab demo`: the whole product end to end on a machine with no GPU and no network but PyPI.

Prepares the demo corpus, makes an experiment from the gpt-pretrain template shrunk to CPU size
(the shrinking is done with the sweep's own constant editor and committed as the baseline), runs a
short sweep through the real loop and local runner, then shows the history and writes the report.

The baseline leaves one clearly mistuned constant (MATRIX_LR, 8x too low) and the sweep tries its
fix, then a small change on top: with the default decision settings the newcomer sees the starting
point measured three times, the fix kept (early, after two measurements, when its gain is clear),
the small change judged against the noise (screened out at once, or stopped once it can no longer
clear the bar, or measured in full), and the best measured again on fresh seeds, each with its
reason.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from skylab.errors import SkylabError
from skylab.experiment.config import CONFIG_NAME, load_config
from skylab.experiment.constants import set_constants
from skylab.experiment.layout import report_path
from skylab.experiment.resources import template_dir
from skylab.experiment.scaffold import init_experiment
from skylab.runner.local import LocalRunner
from skylab.runner.preparation import run_prepare
from skylab.session import SessionPlan, run_session
from skylab.store.gitstore import TrialStore
from skylab.strategy import make_strategy

DEMO_TAG = "demo"
CPU_CONSTANTS: dict[str, int | float | str | bool] = {
    "DEPTH": 4,
    "ASPECT_RATIO": 32,
    "HEAD_DIM": 64,
    "DEVICE_BATCH_SIZE": 16,
    "TOTAL_BATCH_SIZE": 4096,
    "MATRIX_LR": 0.005,  # mistuned on purpose (the template's is 0.04): the improvement to find
}
DEMO_TIME_BUDGET = 30  # seconds of training per measurement: train.py gets it as SKYLAB_TIME_BUDGET
DEMO_SWEEP = """[sweep]
mode = "grid"
file = "train.py"
seed = 0

[sweep.parameters]  # the fix of the mistuned constant, then a small change on top of it
MATRIX_LR = [0.04]
WARMDOWN_RATIO = [0.5, 0.4]
"""


def make_demo_experiment(directory: Path, time_budget: float = DEMO_TIME_BUDGET) -> None:
    """The gpt-pretrain template at CPU size, with a sweep that suits it; not yet a repository."""
    shutil.copytree(
        template_dir("gpt-pretrain"),
        directory,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    train = directory / "train.py"
    train.write_text(
        set_constants(train.read_text(encoding="utf-8"), CPU_CONSTANTS, "train.py"), encoding="utf-8"
    )
    config = directory / CONFIG_NAME
    text = config.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^time_budget_seconds = .*$", f"time_budget_seconds = {time_budget:g}", text)
    text = re.sub(r"(?m)^max_trial_wall_time = .*$", 'max_trial_wall_time = "5m"', text)
    text = re.sub(r'(?m)^source = \["climbmix"\]$', 'source = ["demo"]', text)
    text = text[: text.index("[sweep]")] + DEMO_SWEEP
    config.write_text(text, encoding="utf-8")


def run_demo(
    directory: Path | None, trials: int, console: Console, time_budget: float = DEMO_TIME_BUDGET
) -> tuple[TrialStore, Path]:
    """Run the demo in `directory` (default: a new temporary one); return its store and the
    report's path."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="skylab-demo-"))
    directory = directory.resolve()
    console.print(f"[bold]Skylab demo[/] in {escape(str(directory))}")
    fresh = not (directory / CONFIG_NAME).exists()
    if fresh:
        if directory.exists() and any(p.name != ".git" for p in directory.iterdir()):
            raise SkylabError(f"{directory} is not empty and not a demo experiment: give an empty directory")
        make_demo_experiment(directory, time_budget)
    for action in init_experiment(directory):
        console.print(f"• {action}", markup=False)
    run_prepare(directory, None, None, console)  # [data] source = ["demo"]

    store = TrialStore.open(directory)
    config = load_config(directory)
    plan = SessionPlan(DEMO_TAG, "sweep", max_trials=trials)
    run_session(store, config, make_strategy("sweep", config), [LocalRunner()], plan, console)
    return store, report_path(directory, DEMO_TAG)
