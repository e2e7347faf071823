"""`skylab demo`: the whole product end to end on a machine with no GPU and no network but PyPI.

Prepares the demo corpus, makes an experiment from the gpt-pretrain template shrunk to CPU size
(the shrinking is done with the sweep's own constant editor and committed as the baseline), runs a
short sweep through the real loop and local runner, then shows the history and writes the report.
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
}
CPU_TIME_BUDGET = 60  # the cpu profile's budget (prepare.py), so budget planning matches reality
DEMO_SWEEP = """[sweep]
mode = "random"
file = "train.py"
seed = 0

[sweep.parameters]
MATRIX_LR = { low = 0.01, high = 0.08, log = true }
EMBEDDING_LR = { low = 0.2, high = 1.2, log = true }
WARMDOWN_RATIO = [0.3, 0.5, 0.7]
"""


def make_demo_experiment(directory: Path) -> None:
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
    text = re.sub(r"(?m)^time_budget_seconds = .*$", f"time_budget_seconds = {CPU_TIME_BUDGET}", text)
    text = re.sub(r"(?m)^max_trial_wall_time = .*$", 'max_trial_wall_time = "5m"', text)
    text = text[: text.index("[sweep]")] + DEMO_SWEEP
    config.write_text(text, encoding="utf-8")


def run_demo(directory: Path | None, trials: int, console: Console) -> Path:
    """Run the demo in `directory` (default: a new temporary one); return the report's path."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="skylab-demo-"))
    directory = directory.resolve()
    console.print(f"[bold]Skylab demo[/] in {escape(str(directory))}")
    fresh = not (directory / CONFIG_NAME).exists()
    if fresh:
        if directory.exists() and any(p.name != ".git" for p in directory.iterdir()):
            raise SkylabError(f"{directory} is not empty and not a demo experiment: give an empty directory")
        make_demo_experiment(directory)
    for action in init_experiment(directory):
        console.print(f"• {action}", markup=False)
    run_prepare(directory, ["demo"], 0, console)

    store = TrialStore.open(directory)
    config = load_config(directory)
    plan = SessionPlan(DEMO_TAG, "sweep", max_trials=trials)
    run_session(store, config, make_strategy("sweep", config), [LocalRunner()], plan, console)
    report = report_path(directory, DEMO_TAG)
    return report
