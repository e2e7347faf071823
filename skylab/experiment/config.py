"""Typed, validated loading of `experiment.toml`.

Every problem is reported as one ConfigError naming the file, the dotted key and what is wrong, so a
researcher fixes it in one go instead of reading a traceback.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from skylab.errors import ConfigError, SkylabError
from skylab.experiment.objective import is_better
from skylab.experiment.tomlfile import Table, read_settings, read_toml, setting, type_name
from skylab.store.notes import OTHER_KEYS, RESERVED_KEYS, Scalar

CONFIG_NAME = "experiment.toml"
# A train.py's progress line: the templates' `step 00020 | loss 3.1416 | ... | train 12.3s/30s` and
# autoresearch's `step 00020 (6.7%) | loss: 3.141593 | ...`; the loss may read nan or inf, and the
# training seconds so far are read when the line has them. [execution] progress_pattern replaces it
# for other scripts (a named group `loss`, optionally `step` and `seconds`).
DEFAULT_PROGRESS_PATTERN = (
    r"(?i)\bstep[:\s]+(?P<step>\d+)\b.*?"
    r"\bloss[:=\s]+(?P<loss>[-+]?(?:nan|inf(?:inity)?|[\d.]+(?:e[-+]?\d+)?))"
    r"(?:.*?\btrain[:=\s]+(?P<seconds>\d+(?:\.\d+)?)\s*s\b)?"
)

T = TypeVar("T")

Direction = Literal["minimize", "maximize"]
SweepMode = Literal["grid", "random", "tpe"]

# A grid over an integer range larger than this is almost certainly a typo for a random/TPE search.
MAX_GRID_POINTS_PER_PARAMETER = 10_000


@dataclass(frozen=True)
class ParameterSpace:
    """Where one module-level constant may move: explicit values, or a numeric range."""

    name: str
    values: tuple[Scalar, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    num: int | None = None
    is_int: bool = False

    def grid_points(self) -> list[Scalar]:
        """Every value a grid search visits, in order. Ranges need `step`, `num`, or to be integers."""
        if self.values is not None:
            return list(self.values)
        assert self.low is not None and self.high is not None
        if self.num is not None:
            return _spaced(self.low, self.high, self.num, self.log, self.is_int)
        step = self.step if self.step is not None else (1 if self.is_int else None)
        if step is None:
            raise ValueError(f"{self.name}: a float range needs `step` or `num` for a grid")
        points: list[Scalar] = []
        k = 0
        while True:
            value = self.low + k * step
            if value > self.high + 1e-12 * abs(self.high):
                break
            points.append(round(value) if self.is_int else round(value, 12))
            k += 1
        return points


def _spaced(low: float, high: float, num: int, log: bool, is_int: bool) -> list[Scalar]:
    if num == 1:
        raw = [low]
    elif log:
        ratio = (high / low) ** (1 / (num - 1))
        raw = [low * ratio**i for i in range(num)]
    else:
        raw = [low + (high - low) * i / (num - 1) for i in range(num)]
    if is_int:
        return list(dict.fromkeys(round(v) for v in raw))
    return [float(f"{v:.12g}") for v in raw]


@dataclass(frozen=True)
class SweepConfig:
    mode: SweepMode
    file: str
    seed: int
    parameters: tuple[ParameterSpace, ...]


@dataclass(frozen=True)
class LLMConfig:
    """How the LLM strategy talks to its model ([llm] in experiment.toml; flags override)."""

    model: str = setting("claude-sonnet-5-5")
    max_tokens: int = setting(8192, "int", low=1)  # per model response
    temperature: float | None = setting(None, "number", low=0, high=1)  # sent only when set
    max_turns: int = setting(40, "int", low=1)  # model responses per proposal
    max_proposal_tokens: int = setting(600_000, "int", low=1)  # input + output tokens per proposal
    context_chars: int = setting(240_000, "int", low=1)  # the opening message's size, ~60,000 tokens
    retries: int = setting(4, "int", low=0)  # run-level retries of a proposal on 429/5xx/timeouts
    retry_backoff_seconds: float = setting(15.0, "number", low=0)
    agent: Literal["api", "claude-code"] = setting("api", choices=("api", "claude-code"))
    thinking_budget: int = setting(0, "int", low=0)  # extended thinking tokens per response; 0: off


@dataclass(frozen=True)
class SlurmConfig:
    """How the Slurm runner submits a trial ([slurm] in experiment.toml)."""

    partition: str | None = setting(None)
    account: str | None = setting(None)
    gpus_per_trial: int = setting(0, "int", low=0)  # --gpus; 0 asks for none (a CPU trial)
    cpus_per_trial: int | None = setting(None, "int", low=1)  # --cpus-per-task
    memory: str | None = setting(None)  # --mem, e.g. "64G"
    options: tuple[str, ...] = setting((), "strings")  # more sbatch options, as given: ["--qos=high"]
    poll_seconds: float = setting(2.0, "number", above=0)  # between squeue checks
    retries: int = setting(2, "int", low=0)  # resubmissions after NODE_FAIL, PREEMPTED, ...


MAX_MEASUREMENTS = 100  # of one trial: past that a trial costs a hundred budgets, never what was meant


@dataclass(frozen=True)
class DecisionConfig:
    """How much evidence a keep needs ([decision] in experiment.toml).

    A candidate is measured up to 1 + confirm times and may be decided after any of them (see
    `loop.stages`). `noise_samples = 1, confirm = 0, sigmas = 0` is the greedy rule: one
    measurement that beats the best by any margin is kept. `filter_sigmas = 0, early_sigmas = inf,
    futility = 0, sigmas = 2, paired = false, interleave = "never"` is the rule before the staged
    one."""

    noise_samples: int = setting(3, "int", low=1, high=MAX_MEASUREMENTS)  # of the run's starting point
    confirm: int = setting(2, "int", low=0, high=MAX_MEASUREMENTS)  # more of a screened-in candidate
    sigmas: float = setting(1.5, "number", low=0, high=100)  # se the mean clears at the last
    filter_sigmas: float = setting(1.0, "number", low=0, high=100)  # σ the first measurement must gain
    early_sigmas: float = setting(3.0, "number", low=0, infinite=True)  # se that keep before the last
    futility: float = setting(0.05, "number", low=0, high=1)  # stop below this chance of clearing the bar
    paired: bool = setting(True, "bool")  # compare same-seed values when that is the more precise
    # when the best is measured again beside a candidate (see loop.interleave): auto, always, never
    interleave: Literal["auto", "always", "never"] = setting("auto", choices=("auto", "always", "never"))
    throughput_tolerance: float = setting(0.10, "number", low=0, high=10)  # before a pair is uneven
    fresh_samples: int = setting(
        2, "int", low=0, high=MAX_MEASUREMENTS
    )  # of the best, on new seeds, at the end
    min_delta: float = setting(0.0, "number", low=0)  # the smallest improvement that ever counts
    keep_simpler: bool = setting(True, "bool")  # a change that removes code and is within noise is kept
    stop_diverged: bool = setting(True, "bool")  # stop a measurement once its training loss is non-finite

    @property
    def greedy(self) -> bool:
        return self.noise_samples == 1 and self.confirm == 0 and self.sigmas == 0 and not self.keep_simpler


@dataclass(frozen=True)
class DataConfig:
    """The data the experiment trains on ([data] in experiment.toml): `skylab prepare` prepares it
    and every trial gets it as SKYLAB_DATA (the sources, shell-quoted) and SKYLAB_DATA_SHARDS, so
    the experiment's prepare.py reads that data's own cache, never another experiment's."""

    source: tuple[str, ...] = setting(("climbmix",), "strings")  # climbmix, demo, or files
    shards: int = setting(10, "int", low=1)  # climbmix training shards

    def environment(self) -> dict[str, str]:
        return {DATA_VARIABLE: shlex.join(self.source), SHARDS_VARIABLE: str(self.shards)}

    def describe(self) -> str:
        return " ".join(self.source) + (f" ({self.shards} shards)" if self.source == ("climbmix",) else "")


DATA_VARIABLE = "SKYLAB_DATA"
SHARDS_VARIABLE = "SKYLAB_DATA_SHARDS"


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: what may be edited, how a trial runs, and how it is judged."""

    path: Path
    name: str
    editable_files: tuple[str, ...]
    frozen_files: tuple[str, ...]
    metric: str
    direction: Direction
    command: str
    time_budget_seconds: float
    max_vram_gb: float | None
    max_trial_wall_time: float
    description: str = ""
    progress_pattern: str = DEFAULT_PROGRESS_PATTERN  # a progress line: (?P<loss>...), maybe (?P<step>...)
    sweep: SweepConfig | None = None
    llm: LLMConfig = field(default_factory=LLMConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    data: DataConfig | None = None  # None: the experiment declares no data of its own

    @property
    def root(self) -> Path:
        return self.path.parent

    def is_better(self, candidate: float, incumbent: float | None) -> bool:
        """Whether `candidate` strictly beats `incumbent` in this experiment's direction."""
        return is_better(candidate, incumbent, self.direction)


def find_config(start: Path) -> Path:
    """The experiment.toml of the experiment that contains `start` (itself, or a parent)."""
    start = start.resolve()
    for directory in [start, *start.parents]:
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(CONFIG_NAME, "", f"no {CONFIG_NAME} in {start} or any parent directory")


def load_config(path: Path | str) -> ExperimentConfig:
    """Read and validate an experiment file; raise ConfigError naming the first problem found."""
    path = Path(path)
    display = str(path)
    if path.is_dir():
        path = path / CONFIG_NAME
        display = str(path)
    raw = read_toml(path, display)
    return _parse(path.resolve(), display, raw)


def _parse(path: Path, display: str, raw: dict[str, Any]) -> ExperimentConfig:
    top = Table(display, "", raw)

    experiment = top.table("experiment", required=True)
    assert experiment is not None
    name = experiment.string("name")
    description = experiment.get("description", (str,), "a string", "")
    experiment.finish()

    search = top.table("search", required=True)
    assert search is not None
    editable = tuple(search.string_list("editable_files"))
    frozen = tuple(search.string_list("frozen_files", []))
    metric = search.string("metric", "val_bpb")
    direction = search.string("direction", "minimize")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", metric):
        raise search.error(
            "metric", f'"{metric}" cannot be a summary key: use letters, digits and _ (e.g. val_bpb)'
        )
    if metric in RESERVED_KEYS | OTHER_KEYS:
        raise search.error("metric", f'"{metric}" is reserved for the trial note; name the metric otherwise')
    if direction not in ("minimize", "maximize"):
        raise search.error("direction", f'must be "minimize" or "maximize", not "{direction}"')
    search.finish()
    if not editable:
        raise search.error("editable_files", "must name at least one file")
    editable = _check_files(path.parent, search, "editable_files", editable)
    frozen = _check_files(path.parent, search, "frozen_files", frozen)
    for file in editable:
        if file in frozen:
            raise search.error("frozen_files", f"'{file}' is listed as both editable and frozen")

    execution = top.table("execution", required=True)
    assert execution is not None
    command = execution.string("command")
    time_budget = execution.duration("time_budget_seconds", 300.0)
    progress = execution.string("progress_pattern", DEFAULT_PROGRESS_PATTERN)
    try:
        compiled = re.compile(progress)
    except re.error as exc:
        raise execution.error("progress_pattern", f"is not a regular expression: {exc}") from None
    if "loss" not in compiled.groupindex:
        raise execution.error("progress_pattern", "needs a named group (?P<loss>...) for the training loss")
    execution.finish()

    constraints = top.table("constraints")
    max_vram_gb = None
    max_wall = 2 * time_budget + 60
    if constraints is not None:
        max_vram_gb = constraints.positive("max_vram_gb", None)
        max_wall = constraints.duration("max_trial_wall_time", max_wall)
        constraints.finish()
        if max_wall <= time_budget:
            raise constraints.error(
                "max_trial_wall_time",
                f"must exceed execution.time_budget_seconds ({time_budget:g} s), not {max_wall:g} s",
            )

    sweep_table = top.table("sweep")
    sweep = _parse_sweep(sweep_table, editable) if sweep_table is not None else None
    llm_table = top.table("llm")
    llm = _read_table(llm_table, LLMConfig) if llm_table is not None else LLMConfig()
    if llm_table is not None and llm.thinking_budget and llm.thinking_budget >= llm.max_tokens:
        raise llm_table.error(
            "thinking_budget", f"must be below max_tokens ({llm.max_tokens}), not {llm.thinking_budget}"
        )
    slurm_table = top.table("slurm")
    slurm = _parse_slurm(slurm_table) if slurm_table is not None else SlurmConfig()
    decision_table = top.table("decision")
    decision = _read_table(decision_table, DecisionConfig) if decision_table is not None else DecisionConfig()
    data_table = top.table("data")
    data = None
    if data_table is not None:
        data = read_settings(data_table, DataConfig)
        if not data.source:
            raise data_table.error("source", "must name at least one source")
        data_table.finish()

    top.finish()
    return ExperimentConfig(
        path=path,
        name=name,
        description=description,
        editable_files=editable,
        frozen_files=frozen,
        metric=metric,
        direction=direction,
        command=command,
        time_budget_seconds=float(time_budget),
        max_vram_gb=None if max_vram_gb is None else float(max_vram_gb),
        max_trial_wall_time=float(max_wall),
        progress_pattern=progress,
        sweep=sweep,
        llm=llm,
        slurm=slurm,
        decision=decision,
        data=data,
    )


def _parse_slurm(table: Table) -> SlurmConfig:
    slurm = read_settings(table, SlurmConfig)
    for option in slurm.options:
        if not option.startswith("-"):
            raise table.error("options", f"'{option}' is not an sbatch option (write it as --name=value)")
        if option.split("=")[0] in ("--wrap", "--output", "--error", "--chdir", "--parsable", "--time"):
            raise table.error("options", f"'{option}' is set by Skylab itself")
    table.finish()
    return slurm


def _check_files(root: Path, table: Table, key: str, files: tuple[str, ...]) -> tuple[str, ...]:
    """The files as normal relative paths (`./train.py` is `train.py`), each an existing file that
    resolves inside the experiment directory, symlinks followed."""
    seen: list[str] = []
    for file in files:
        pure = PurePosixPath(file)
        if pure.is_absolute() or file.startswith("\\") or (len(file) > 1 and file[1] == ":"):
            raise table.error(key, f"'{file}' must be a path relative to the experiment directory")
        if ".." in pure.parts:
            raise table.error(key, f"'{file}' points outside the experiment directory")
        name = str(pure)
        if name == ".":
            raise table.error(key, "'.' is not a file")
        if name in seen:
            raise table.error(key, f"'{file}' is listed twice")
        seen.append(name)
        if outside_experiment(root, name):
            raise table.error(key, f"'{file}' resolves outside the experiment directory (a symlink?)")
        if not (root / name).is_file():
            raise table.error(key, f"'{file}' does not exist in {root}")
    return tuple(seen)


def outside_experiment(root: Path, name: str) -> bool:
    """Whether `root / name` resolves, through symlinks too, to a place outside `root`."""
    base, resolved = root.resolve(), (root / name).resolve()
    return resolved != base and base not in resolved.parents


def experiment_file(root: Path, name: str) -> Path:
    """`root / name` for writing: refused when it resolves outside `root`, as a symlink swapped in
    after the config was loaded would."""
    if outside_experiment(root, name):
        raise SkylabError(f"'{name}' resolves outside the experiment directory {root}: not writing it")
    return root / name


def _parse_sweep(table: Table, editable: tuple[str, ...]) -> SweepConfig:
    mode = table.string("mode", "random")
    if mode not in ("grid", "random", "tpe"):
        raise table.error("mode", f'must be "grid", "random" or "tpe", not "{mode}"')
    default_file = next((f for f in editable if f.endswith(".py")), editable[0])
    file = table.string("file", default_file)
    if file not in editable:
        raise table.error("file", f"'{file}' is not one of search.editable_files")
    seed = table.get("seed", (int,), "an integer", 0)
    if not 0 <= seed < 2**32:
        raise table.error("seed", f"must be from 0 to 2^32 - 1 (a sampler seed), not {seed}")
    params_table = table.table("parameters", required=True)
    assert params_table is not None
    table.finish()
    parameters = tuple(_parse_parameter(params_table, name, mode) for name in params_table.data)
    params_table.used.update(params_table.data)
    if not parameters:
        raise params_table.error("", "must define at least one parameter")
    return SweepConfig(mode=mode, file=file, seed=seed, parameters=parameters)


def _parse_parameter(params: Table, name: str, mode: str) -> ParameterSpace:
    if not name.isidentifier():
        raise params.error(name, "is not a Python identifier, so it cannot name a constant")
    spec = params.data[name]
    if isinstance(spec, list):
        if not spec:
            raise params.error(name, "needs at least one value")
        for value in spec:
            if not isinstance(value, int | float | str | bool):
                raise params.error(
                    name, f"values must be numbers, strings or booleans, not {type_name(value)}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise params.error(name, f"values must be finite numbers, not {value}")
        return ParameterSpace(name=name, values=tuple(spec))
    rng = Table(params.file, params.key(name), spec)
    low = rng.get("low", (int, float), "a number")
    high = rng.get("high", (int, float), "a number")
    log = rng.get("log", (bool,), "a boolean", False)
    step = rng.get("step", (int, float), "a number", None)
    num = rng.get("num", (int,), "an integer", None)
    rng.finish()
    if not low < high:
        raise rng.error("high", f"must be greater than low ({low}), not {high}")
    if log and low <= 0:
        raise rng.error("low", f"must be positive for a log range, not {low}")
    if step is not None and step <= 0:
        raise rng.error("step", f"must be positive, not {step}")
    if step is not None and log:
        raise rng.error("step", "cannot be combined with log = true (use num)")
    if step is not None and num is not None:
        raise rng.error("num", "cannot be combined with step")
    if num is not None and num < 1:
        raise rng.error("num", f"must be at least 1, not {num}")
    is_int = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
    space = ParameterSpace(name=name, low=low, high=high, log=log, step=step, num=num, is_int=is_int)
    if mode == "grid":
        if not is_int and step is None and num is None:
            raise rng.error("", "a float range needs `step` or `num` in grid mode")
        span = (high - low) / (step or 1)
        count = num if num is not None else int(span) + 1 if math.isfinite(span) else math.inf
        if count > MAX_GRID_POINTS_PER_PARAMETER:
            raise rng.error("", f"has {count:.3g} grid points; use step/num or another mode")
    return space


def _read_table(table: Table, cls: type[T]) -> T:
    """A table whose every key is a `setting` of `cls`."""
    settings = read_settings(table, cls)
    table.finish()
    return settings
