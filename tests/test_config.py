from __future__ import annotations

from pathlib import Path

import pytest

from skylab.errors import ConfigError
from skylab.experiment.config import load_config
from tests.conftest import run_skylab

VALID = """\
[experiment]
name = "demo"

[search]
editable_files = ["train.py"]
frozen_files = ["prepare.py"]
metric = "val_bpb"
direction = "minimize"

[execution]
command = "python train.py"
time_budget_seconds = 300

[constraints]
max_vram_gb = 80
max_trial_wall_time = "10m"

[sweep]
mode = "grid"
[sweep.parameters]
DEPTH = [4, 6, 8]
MATRIX_LR = { low = 0.01, high = 0.1, log = true, num = 3 }
WARMUP = { low = 0, high = 100, step = 50 }
"""


def write(directory: Path, text: str) -> Path:
    (directory / "train.py").write_text("DEPTH = 8\n")
    (directory / "prepare.py").write_text("")
    path = directory / "experiment.toml"
    path.write_text(text)
    return path


def test_valid_file_loads_typed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.name == "demo"
    assert config.editable_files == ("train.py",)
    assert config.direction == "minimize"
    assert config.max_vram_gb == 80.0
    assert config.max_trial_wall_time == 600.0
    assert config.root == tmp_path.resolve()
    assert config.sweep is not None and config.sweep.mode == "grid" and config.sweep.file == "train.py"
    depth, lr, warmup = config.sweep.parameters
    assert depth.grid_points() == [4, 6, 8]
    assert lr.grid_points() == pytest.approx([0.01, 0.031622776601683, 0.1])
    assert warmup.is_int and warmup.grid_points() == [0, 50, 100]
    assert config.is_better(0.9, 1.0) and not config.is_better(1.1, 1.0)


def test_defaults(tmp_path: Path) -> None:
    text = '[experiment]\nname="x"\n[search]\neditable_files=["train.py"]\n[execution]\ncommand="c"\n'
    config = load_config(write(tmp_path, text))
    assert (config.metric, config.direction, config.time_budget_seconds) == ("val_bpb", "minimize", 300.0)
    assert config.max_vram_gb is None and config.max_trial_wall_time == 660.0 and config.sweep is None


def test_maximize_direction_flips_comparison(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID.replace('"minimize"', '"maximize"')))
    assert config.is_better(1.1, 1.0) and not config.is_better(0.9, 1.0)


def test_the_shipped_template_is_valid() -> None:
    from skylab.experiment.resources import template_dir

    config = load_config(template_dir("tiny-bigram"))
    assert config.sweep is not None and {p.name for p in config.sweep.parameters} >= {"LEARNING_RATE"}


BAD_CASES = [
    # (change to VALID, key in the message, words of the problem)
    (lambda t: t.replace('[experiment]\nname = "demo"\n', ""), "experiment", "table is required but missing"),
    (
        lambda t: t.replace('name = "demo"', 'name = "demo"\ncolour = "blue"'),
        "experiment.colour",
        "unknown key",
    ),
    (lambda t: t + "\n[llama]\nx = 1\n", "llama", "unknown key"),
    (
        lambda t: t.replace("time_budget_seconds = 300", 'time_budget_seconds = "soon"'),
        "execution.time_budget_seconds",
        "is not a duration",
    ),
    (
        lambda t: t.replace('editable_files = ["train.py"]', 'editable_files = "train.py"'),
        "search.editable_files",
        "must be a list of strings, not a string",
    ),
    (
        lambda t: t.replace("max_vram_gb = 80", "max_vram_gb = true"),
        "constraints.max_vram_gb",
        "must be a number, not a boolean",
    ),
    (
        lambda t: t.replace("max_vram_gb = 80", "max_vram_gb = -1"),
        "constraints.max_vram_gb",
        "must be positive",
    ),
    (
        lambda t: t.replace('frozen_files = ["prepare.py"]', 'frozen_files = ["prepare.py", "train.py"]'),
        "search.frozen_files",
        "'train.py' is listed as both editable and frozen",
    ),
    (
        lambda t: t.replace('editable_files = ["train.py"]', 'editable_files = ["model.py"]'),
        "search.editable_files",
        "'model.py' does not exist",
    ),
    (
        lambda t: t.replace('editable_files = ["train.py"]', 'editable_files = ["../train.py"]'),
        "search.editable_files",
        "points outside the experiment directory",
    ),
    (
        lambda t: t.replace('editable_files = ["train.py"]', 'editable_files = ["/etc/passwd"]'),
        "search.editable_files",
        "must be a path relative",
    ),
    (
        lambda t: t.replace('direction = "minimize"', 'direction = "down"'),
        "search.direction",
        'must be "minimize" or "maximize", not "down"',
    ),
    (lambda t: t.replace('metric = "val_bpb"', 'metric = "status"'), "search.metric", "reserved"),
    (
        lambda t: t.replace('command = "python train.py"', 'command = ""'),
        "execution.command",
        "must not be empty",
    ),
    (lambda t: t.replace('mode = "grid"', 'mode = "bayes"'), "sweep.mode", 'not "bayes"'),
    (lambda t: t.replace("DEPTH = [4, 6, 8]", "DEPTH = []"), "sweep.parameters.DEPTH", "at least one value"),
    (
        lambda t: t.replace(", num = 3", ""),
        "sweep.parameters.MATRIX_LR",
        "needs `step` or `num` in grid mode",
    ),
    (
        lambda t: t.replace("low = 0.01, high = 0.1", "low = 0.1, high = 0.01"),
        "sweep.parameters.MATRIX_LR.high",
        "must be greater than low",
    ),
    (
        lambda t: t.replace("low = 0.01, high = 0.1, log = true", "low = 0, high = 0.1, log = true"),
        "sweep.parameters.MATRIX_LR.low",
        "must be positive for a log range",
    ),
    (
        lambda t: t.replace("num = 3", "num = 3, spacing = 2"),
        "sweep.parameters.MATRIX_LR.spacing",
        "unknown key",
    ),
    (
        lambda t: t.replace('max_trial_wall_time = "10m"', "max_trial_wall_time = 100"),
        "constraints.max_trial_wall_time",
        "must exceed execution.time_budget_seconds",
    ),
    (lambda t: t.replace('name = "demo"', 'name = "demo'), "", "invalid TOML"),
    (lambda t: t + "\n[data]\nsource = []\n", "data.source", "must name at least one source"),
    (lambda t: t + '\n[data]\nsource = "demo"\n', "data.source", "must be a list of strings"),
    (lambda t: t + '\n[data]\nsource = ["demo"]\nshards = 0\n', "data.shards", "must be at least 1"),
    (lambda t: t + '\n[data]\nsorce = ["demo"]\n', "data.sorce", "unknown key"),
]


def test_data_declared_reaches_trials_as_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID + '\n[data]\nsource = ["demo", "my corpus.txt"]\n'))
    assert config.data is not None and config.data.environment() == {
        "SKYLAB_DATA": "demo 'my corpus.txt'",
        "SKYLAB_DATA_SHARDS": "10",
    }
    assert load_config(write(tmp_path, VALID)).data is None


@pytest.mark.parametrize("change, key, problem", BAD_CASES)
def test_bad_input_names_file_key_and_problem(tmp_path: Path, change, key: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, change(VALID))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ")
    assert caught.value.key == key
    assert problem in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"experiment\.toml: file not found"):
        load_config(tmp_path / "experiment.toml")


@pytest.mark.parametrize("change, key, problem", BAD_CASES[:4] + BAD_CASES[7:12])
def test_cli_prints_one_line_and_exits_2(tmp_path: Path, change, key: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    write(tmp_path, change(VALID))
    result = run_skylab("init", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "experiment.toml" in lines[0] and key in lines[0] and problem in lines[0]
    assert not (tmp_path / ".git").exists()  # nothing half-done


def test_a_setting_is_one_line_with_its_checks_and_messages() -> None:
    """A key declared with `setting` is read, defaulted and bounded with the usual one-line messages."""
    from dataclasses import dataclass

    from skylab.experiment.tomlfile import Table, read_settings, setting

    @dataclass(frozen=True)
    class Example:
        name: str = setting()
        count: int = setting(3, "int", low=1)
        share: float = setting(0.5, "number", low=0, high=1)
        rate: float = setting(1.0, "number", above=0)
        mode: str = setting("a", choices=("a", "b", "c"))

    def problem(data: dict[str, object]) -> str:
        with pytest.raises(ConfigError) as caught:
            read_settings(Table("x.toml", "t", {"name": "n", **data}), Example)
        return str(caught.value)

    assert read_settings(Table("x.toml", "t", {"name": "n"}), Example) == Example("n", 3, 0.5, 1.0, "a")
    assert read_settings(Table("x.toml", "t", {"name": "n", "share": 1}), Example).share == 1.0
    assert problem({"count": 0}).endswith("t.count: must be at least 1, not 0")
    assert problem({"count": 1.5}).endswith("t.count: must be an integer, not a float")
    assert problem({"count": True}).endswith("t.count: must be an integer, not a boolean")
    assert problem({"share": 2}).endswith("t.share: must be between 0 and 1, not 2")
    assert problem({"rate": 0}).endswith("t.rate: must be positive, not 0")
    assert problem({"mode": "d"}).endswith('t.mode: must be "a", "b" or "c", not "d"')
    with pytest.raises(ConfigError, match=r"t\.name: is required but missing"):
        read_settings(Table("x.toml", "t", {}), Example)
