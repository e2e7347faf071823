"""Odd and hostile input: every one gets one clear line and exit 2, never a traceback."""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skylab.errors import ConfigError, SkylabError
from skylab.experiment.config import load_config
from skylab.store.gitstore import TrialStore
from tests.conftest import git, run_skylab
from tests.factory import add_trial
from tests.test_config import VALID, write


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


# ----- experiment.toml ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("metric = \"val_bpb\"", 'metric = "log"'), "reserved for the trial note"),
        (("metric = \"val_bpb\"", 'metric = "ran_by"'), "reserved for the trial note"),
        (("metric = \"val_bpb\"", 'metric = "val bpb"'), "cannot be a summary key"),
        (("max_vram_gb = 80", "max_vram_gb = nan"), "must be a finite number"),
        (('max_trial_wall_time = "10m"', "max_trial_wall_time = nan"), "must be a finite number"),
        (('max_trial_wall_time = "10m"', "max_trial_wall_time = inf"), "must be a finite number"),
        (("time_budget_seconds = 300", "time_budget_seconds = nan"), "must be a finite number"),
        (("DEPTH = [4, 6, 8]", "DEPTH = [nan, 0]"), "finite numbers"),
        (("low = 0, high = 100, step = 50", "low = -1e308, high = 1e308, step = 1.0"), "grid points"),
        (('mode = "grid"', 'mode = "tpe"\nseed = -1'), "from 0 to 2^32 - 1"),
        (('mode = "grid"', 'mode = "tpe"\nseed = 4294967296'), "from 0 to 2^32 - 1"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_at_load(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in VALID
    with pytest.raises(ConfigError, match=message.replace("^", r"\^")):
        load_config(write(tmp_path, VALID.replace(old, new)))


def test_editable_paths_are_normalised(tmp_path: Path) -> None:
    text = VALID.replace('editable_files = ["train.py"]', 'editable_files = ["./train.py"]')
    config = load_config(write(tmp_path, text))
    assert config.editable_files == ("train.py",)
    assert config.sweep is not None and config.sweep.file == "train.py"


def test_an_editable_symlink_out_of_the_experiment_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("DEPTH = 8\n")
    experiment = tmp_path / "exp"
    experiment.mkdir()
    path = write(experiment, VALID.replace('editable_files = ["train.py"]', 'editable_files = ["link.py"]'))
    path.write_text(path.read_text().replace('mode = "grid"', 'mode = "grid"\nfile = "link.py"'))
    (experiment / "link.py").symlink_to(outside)
    with pytest.raises(ConfigError, match="resolves outside the experiment directory"):
        load_config(path)


def test_the_sweep_never_writes_through_a_symlink_swapped_in_later(experiment: Path, tmp_path: Path) -> None:
    from skylab.strategy import ProposalContext
    from skylab.strategy.sweep import SweepStrategy

    config = load_config(experiment / "experiment.toml")
    assert config.sweep is not None
    strategy = SweepStrategy(config)
    outside = tmp_path / "outside.py"
    outside.write_text((experiment / config.sweep.file).read_text())
    (experiment / config.sweep.file).unlink()
    (experiment / config.sweep.file).symlink_to(outside)
    before = outside.read_text()
    store = TrialStore.open(experiment)
    tip = store.start_point()
    context = ProposalContext(config, store.load(), "run", tip, None, experiment)
    with pytest.raises(SkylabError, match="resolves outside the experiment directory"):
        strategy.propose(context)
    assert outside.read_text() == before


TOML_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.integers(-5, 5), max_size=3),
)
KEYS = [
    ("search", "metric"),
    ("search", "direction"),
    ("search", "editable_files"),
    ("execution", "time_budget_seconds"),
    ("execution", "command"),
    ("constraints", "max_vram_gb"),
    ("constraints", "max_trial_wall_time"),
    ("sweep", "mode"),
    ("sweep", "seed"),
    ("sweep", "file"),
]


def toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return json.dumps(value)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@pytest.mark.slow
@given(key=st.sampled_from(KEYS), value=TOML_VALUES)
def test_any_value_for_any_key_loads_or_is_one_config_error(
    tmp_path: Path, key: tuple[str, str], value: object
) -> None:
    table, name = key
    lines = VALID.splitlines()
    header = lines.index(f"[{table}]")
    lines = [line for line in lines if not line.startswith(f"{name} =")] if table != "sweep" else [
        line for i, line in enumerate(lines) if not (i > header and line.startswith(f"{name} ="))
    ]  # fmt: skip
    lines.insert(lines.index(f"[{table}]") + 1, f"{name} = {toml_value(value)}")
    try:
        load_config(write(tmp_path, "\n".join(lines) + "\n"))
    except ConfigError as exc:
        assert "\n" not in str(exc)


# ----- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", ["inf", "nan", "1e400", "-5m", "99999d"])
def test_impossible_budgets_are_one_line(experiment: Path, budget: str) -> None:
    line = one_line_error(run_skylab("run", "--budget", budget, "--max-trials", "1", "-C", str(experiment)))
    assert "--budget" in line


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("confirm = 1000000", "must be between 0 and 100, not 1000000"),
        ("noise_samples = 9223372036854775807", "must be between 1 and 100"),
        ("noise_samples = 0", "must be between 1 and 100"),
        ("sigmas = 1e9", "must be between 0 and 100"),
        ("sigmas = nan", "must be a finite number"),
        ("min_delta = inf", "must be a finite number"),
    ],
)
def test_every_decision_count_is_bounded(tmp_path: Path, line: str, message: str) -> None:
    """A million confirmations stalled the run building repeat jobs, whatever --budget said."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, f"{VALID}\n[decision]\n{line}\n"))


@pytest.mark.parametrize("scale", ["nan", "inf", "-1", "0", "1001"])
def test_a_scale_out_of_range_says_what_is_wrong(experiment: Path, scale: str) -> None:
    line = one_line_error(run_skylab("confirm", "--scale", scale, "-C", str(experiment)))
    assert f"must be a number from 0.01 to 1000 (times the time budget), not {float(scale)}" in line


@pytest.mark.parametrize(("option", "value"), [("--tag", "ab\n"), ("--tag", ""), ("--gpus", "")])
def test_empty_or_odd_tags_and_gpus_are_refused(experiment: Path, option: str, value: str) -> None:
    one_line_error(run_skylab("run", option, value, "--max-trials", "1", "-C", str(experiment)))


def test_unwritable_outputs_are_one_line(experiment: Path, tmp_path: Path) -> None:
    add_trial(TrialStore.open(experiment), "run", 1.0)
    line = one_line_error(run_skylab("history", "--export", "/nonexistent/x.tsv", "-C", str(experiment)))
    assert "/nonexistent/x.tsv" in line
    line = one_line_error(run_skylab("report", "-o", str(tmp_path), "-C", str(experiment)))  # a directory
    assert (
        line == f"error: {tmp_path} is a directory: give the report's file name (e.g. {tmp_path}/report.html)"
    )
    missing = tmp_path / "no" / "such" / "x.html"
    line = one_line_error(run_skylab("report", "-o", str(missing), "-C", str(experiment)))
    assert line == f"error: cannot write {missing}: no folder {missing.parent}"
    assert not (tmp_path / "no").exists()  # a typo makes no folders
    if os.path.isdir("/proc") and os.geteuid() == 0:
        one_line_error(run_skylab("report", "-o", "/proc/x.html", "-C", str(experiment)))


def test_a_teammates_huge_description_is_capped_where_shown_and_kept_whole(
    experiment: Path, tmp_path: Path
) -> None:
    """A 30 MB description took history over 10 minutes (rich wrapping it); 1-10 MB took seconds."""
    store = TrialStore.open(experiment)
    trial = add_trial(store, "run", 1.0)
    note = store.load().trials[0].note
    assert note is not None
    huge = "word " * 400_000 + "line\n" * 3000  # 2 MB on 3,000 lines
    text = note.format().replace(f"description: {note.description}\n", f"description: {json.dumps(huge)}\n")
    (tmp_path / "note.txt").write_text(text)
    git("notes", "--ref=skylab", "add", "-f", "-F", str(tmp_path / "note.txt"), trial.commit, cwd=experiment)
    shown = run_skylab("history", "-C", str(experiment), check=True).stdout
    assert "word word" in shown and "…" in shown and len(shown) < 5_000 and shown.count("\n") < 30
    (row,) = json.loads(run_skylab("history", "--json", "-C", str(experiment), check=True).stdout)
    assert row["description"] == huge  # the note keeps every character
    page = tmp_path / "report.html"
    run_skylab("report", "-o", str(page), "-C", str(experiment), check=True)
    assert page.stat().st_size < 1_000_000


def test_init_on_a_file_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "hostname"
    file.write_text("box\n")
    assert "is a file" in one_line_error(run_skylab("init", str(file)))


def test_history_of_an_unknown_run_is_an_error_not_the_global_best(experiment: Path) -> None:
    add_trial(TrialStore.open(experiment), "run", 1.0)
    assert "no run tagged 'nope'" in one_line_error(
        run_skylab("history", "--best", "--tag", "nope", "-C", str(experiment))
    )


def test_descriptions_are_text_not_markup_and_escapes_are_not_sent_raw(experiment: Path) -> None:
    store = TrialStore.open(experiment)
    add_trial(store, "run", 1.0, description="hand: SLEEP 0.9 [/] test [bold]x")
    add_trial(store, "run", 1.1, description="evil \x1b[2J\x1b]0;pwned\x07 title")
    result = run_skylab("history", "-C", str(experiment))
    assert result.returncode == 0, result.stderr
    assert "SLEEP 0.9 [/] test [bold]x" in result.stdout
    assert "\x1b" not in result.stdout and "\\x1b[2J" in result.stdout


def test_show_with_a_parent_that_is_not_a_commit_id(experiment: Path) -> None:
    store = TrialStore.open(experiment)
    trial = add_trial(store, "run", 1.0)
    note = git("notes", "--ref=skylab", "show", trial.commit, cwd=experiment)
    lines = [line if not line.startswith("parent:") else "parent: not-a-hex-id" for line in note.splitlines()]
    git("notes", "--ref=skylab", "add", "-f", "-m", "\n".join(lines), trial.commit, cwd=experiment)
    result = run_skylab("show", "run/1", "-C", str(experiment))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_a_note_that_does_not_parse_is_kept_byte_for_byte_and_shown_unreadable(experiment: Path) -> None:
    store = TrialStore.open(experiment)
    trial = add_trial(store, "run", 1.0)
    hand_edited = (
        git("notes", "--ref=skylab", "show", trial.commit, cwd=experiment) + "this line is not key-value\n"
    )
    git("notes", "--ref=skylab", "add", "-f", "-m", hand_edited, trial.commit, cwd=experiment)
    before = git("notes", "--ref=skylab", "show", trial.commit, cwd=experiment)
    fixed = store.repair("val_bpb", lambda x, y: y is None or x < y)
    assert not any("run/1" in line for line in fixed)
    assert git("notes", "--ref=skylab", "show", trial.commit, cwd=experiment) == before
    result = run_skylab("history", "-C", str(experiment))
    assert "unreadable" in result.stdout and "is unreadable" in result.stderr
    page = experiment.parent / "report.html"
    run_skylab("report", "-o", str(page), "-C", str(experiment), check=True)
    packed_rows = page.read_text().split('id="trial-rows">')[1].split("</script>")[0]  # the table's data
    assert "note unreadable: line" in gzip.decompress(base64.b64decode(packed_rows)).decode()


def test_an_unreachable_remote_says_why(experiment: Path, tmp_path: Path) -> None:
    git("remote", "add", "origin", str(tmp_path / "nowhere.git"), cwd=experiment)
    line = one_line_error(run_skylab("pull", "-C", str(experiment)))
    assert "does not appear to be a git repository" in line and "and the repository exists" not in line


ODD_VALUES = st.one_of(
    st.sampled_from(
        ["", " ", "nan", "inf", "-1", "0", "1e400", "ab\n", "[/]", "\x1b[2J", "../x", "/proc/x.html", "best",
         "run/1", "1", "99999999999999999999", "skylab/best", "é", "--json", "1s", "sweep", "remote", "0,0"]
    ),
    st.text(st.characters(exclude_characters="\x00"), max_size=8),  # argv can never hold NUL
)  # fmt: skip
COMMANDS: dict[str, list[str | None]] = {
    "history": ["--tag", "--export", "--best", "--json"],
    "show": ["--tag", None],
    "report": ["--tag", "-o"],
    "run": ["--budget", "--max-trials", "--tag", "--workers", "--gpus", "--strategy", "--runner"],
    "push": [None],
    "pull": [None],
    "import": [None, "--tag", "--metric"],
}
FLAGS = {"--best", "--json"}


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@pytest.mark.slow
@given(data=st.data())
def test_any_command_line_exits_0_or_2_with_one_line_and_no_traceback(
    experiment: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    from skylab.cli import main

    command = data.draw(st.sampled_from(sorted(COMMANDS)))
    argv = [command]
    for option in data.draw(st.lists(st.sampled_from(COMMANDS[command]), max_size=3)):
        if option in FLAGS:
            argv.append(option)
        elif option is None:
            argv.append(data.draw(ODD_VALUES))
        else:
            value = data.draw(ODD_VALUES)
            argv.append(f"{option}={value}" if value.startswith("-") else option)
            if not value.startswith("-"):
                argv.append(value)
    argv += ["-C", str(experiment)]
    if command == "run":
        argv += ["--budget", "1s"]  # never trains: the budget is shorter than a trial
    if command == "report" and "-o" not in argv:
        argv += ["-o", str(tmp_path / "report.html")]
    capfd.readouterr()
    here = os.getcwd()
    os.chdir(tmp_path)  # relative paths the fuzz invents (--export best) land in the test's directory
    try:
        with pytest.raises(SystemExit) as exited:
            main(argv)
    finally:
        os.chdir(here)
    err = capfd.readouterr().err
    assert "Traceback" not in err, (argv, err)
    assert exited.value.code in (0, 2), (argv, exited.value.code, err)
    if exited.value.code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (argv, err)


def test_an_undecodable_remote_toml_is_one_config_error(tmp_path: Path) -> None:
    from skylab.runner.remote_config import load_remote_config

    path = tmp_path / "remote.toml"
    path.write_bytes(b'[remote]\nhost = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_remote_config(path)


def test_paths_and_names_that_look_like_markup_are_printed_as_they_are(
    experiment: Path, tmp_path: Path
) -> None:
    (tmp_path / "[").mkdir()
    result = run_skylab(
        "history", "--export", f"{tmp_path}/[/]", "-C", str(experiment)
    )  # the file "]" in "["
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "[/]" in result.stderr and (tmp_path / "[" / "]").is_file()
