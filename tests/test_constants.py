from __future__ import annotations

from pathlib import Path

import pytest

from skylab.experiment.constants import (
    ConstantError,
    parse_assignment,
    read_constants,
    set_constant_texts,
    set_constants,
)
from tests.conftest import run_skylab
from tests.loop_experiment import make_loop_experiment

SOURCE = """\
\"\"\"Docstring: DEPTH = 3 here is not an assignment.\"\"\"
import math

DEPTH = 8  # transformer blocks
MATRIX_LR = 0.04
TOTAL_BATCH_SIZE = 2**19
BETAS = (0.8, 0.95)
NAME: str = "gpt"  # annotated
LR_FN = math.sqrt(2)
ünïcode_ok = "é"


def f():
    DEPTH = 1
    return DEPTH
"""


def test_reads_literal_constants_and_simple_arithmetic() -> None:
    constants = read_constants(SOURCE)
    assert constants == {
        "DEPTH": 8,
        "MATRIX_LR": 0.04,
        "TOTAL_BATCH_SIZE": 524288,
        "BETAS": (0.8, 0.95),
        "NAME": "gpt",
    }


def test_set_changes_only_the_values() -> None:
    out = set_constants(SOURCE, {"DEPTH": 10, "MATRIX_LR": 0.05, "NAME": "big", "TOTAL_BATCH_SIZE": 2**18})
    expected = (
        SOURCE.replace("DEPTH = 8  #", "DEPTH = 10  #")
        .replace("MATRIX_LR = 0.04", "MATRIX_LR = 0.05")
        .replace('NAME: str = "gpt"', 'NAME: str = "big"')
        .replace("TOTAL_BATCH_SIZE = 2**19", "TOTAL_BATCH_SIZE = 262144")
    )
    assert out == expected
    assert read_constants(out)["DEPTH"] == 10


def test_floats_stay_floats_and_exact() -> None:
    out = set_constants(SOURCE, {"MATRIX_LR": 2.0, "DEPTH": 0.1 + 0.2})
    assert read_constants(out)["MATRIX_LR"] == 2.0 and isinstance(read_constants(out)["MATRIX_LR"], float)
    assert read_constants(out)["DEPTH"] == 0.1 + 0.2


def test_missing_and_non_literal_constants_are_refused() -> None:
    with pytest.raises(ConstantError, match="no module-level constant WIDTH"):
        set_constants(SOURCE, {"WIDTH": 3}, "train.py")
    with pytest.raises(ConstantError, match=r"LR_FN = math.sqrt\(2\) is not a literal"):
        set_constants(SOURCE, {"LR_FN": 1.0}, "train.py")


def test_syntax_error_is_reported_with_the_line() -> None:
    with pytest.raises(ConstantError, match=r"train\.py:1: not valid Python"):
        read_constants("DEPTH = (\n", "train.py")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("DEPTH=10", ("DEPTH", "10")),
        ("LR = 3e-4 ", ("LR", "3e-4")),
        ("ATTENTION=sdpa", ("ATTENTION", "sdpa")),
    ],
)
def test_parse_assignment_keeps_the_text_as_typed(text: str, expected: tuple[str, str]) -> None:
    assert parse_assignment(text) == expected


def test_parse_assignment_rejects_garbage() -> None:
    with pytest.raises(ConstantError, match="is not NAME=VALUE"):
        parse_assignment("no equals sign")
    with pytest.raises(ConstantError, match="no value"):
        parse_assignment("X=")


TYPED = """\
LEARNING_RATE = 0.04
DEPTH = 8
USE_COMPILE = True
TOTAL_BATCH_SIZE = 2**19
ADAM_BETAS = (0.8, 0.95)
WINDOWS = [1, 2]
WINDOW_PATTERN = "SSSL"
QUOTED = 'single'
NOTHING = None
"""


def typed(**texts: str) -> dict[str, object]:
    out, _ = set_constant_texts(TYPED, texts, "train.py")
    return read_constants(out)


@pytest.mark.parametrize(
    "name, raw, why",
    [
        ("LEARNING_RATE", "abc", r"LEARNING_RATE is a float \(0.04\); 'abc' is not a Python literal"),
        ("LEARNING_RATE", "1e-3x", "is not a Python literal"),
        ("LEARNING_RATE", "True", "is a bool"),
        ("DEPTH", "8.5", r"DEPTH is an int \(8\); '8.5' is a float"),
        ("DEPTH", "abc", "quote it"),
        ("USE_COMPILE", "1", "is an int"),
        ("USE_COMPILE", "yes", "is not a Python literal"),
        ("ADAM_BETAS", "[0.9, 0.99]", "ADAM_BETAS is a tuple .*is a list"),
        ("ADAM_BETAS", "0.9", "is a float"),
        ("WINDOW_PATTERN", "123", r"WINDOW_PATTERN is a string \(\"SSSL\"\); '123' is an int"),
    ],
)
def test_a_value_of_another_type_is_refused_in_one_line(name: str, raw: str, why: str) -> None:
    with pytest.raises(ConstantError, match=why) as refused:
        set_constant_texts(TYPED, {name: raw}, "train.py")
    assert "\n" not in str(refused.value)


def test_a_refused_value_among_good_ones_writes_nothing() -> None:
    with pytest.raises(ConstantError):
        set_constant_texts(TYPED, {"DEPTH": "10", "LEARNING_RATE": "abc"}, "train.py")


def test_values_keep_their_type() -> None:
    values = typed(USE_COMPILE="false", LEARNING_RATE="1", DEPTH="2**4", WINDOW_PATTERN="SSLL")
    assert values["USE_COMPILE"] is False
    assert values["LEARNING_RATE"] == 1.0 and isinstance(values["LEARNING_RATE"], float)
    assert values["DEPTH"] == 16
    assert values["WINDOW_PATTERN"] == "SSLL"
    assert typed(USE_COMPILE="TRUE")["USE_COMPILE"] is True
    assert typed(NOTHING="3")["NOTHING"] == 3
    assert typed(NOTHING="cuda")["NOTHING"] == "cuda"
    assert typed(LEARNING_RATE="'abc'")["LEARNING_RATE"] == "abc"  # quoted: a string, explicitly
    assert typed(WINDOW_PATTERN='"123"')["WINDOW_PATTERN"] == "123"


def test_expressions_tuples_and_lists_can_be_set() -> None:
    out, written = set_constant_texts(
        TYPED, {"TOTAL_BATCH_SIZE": "2**14", "ADAM_BETAS": "(0.9, 0.99)", "WINDOWS": "[4]"}, "train.py"
    )
    assert written == {"TOTAL_BATCH_SIZE": "2**14", "ADAM_BETAS": "(0.9, 0.99)", "WINDOWS": "[4]"}
    assert "TOTAL_BATCH_SIZE = 2**14\n" in out and "ADAM_BETAS = (0.9, 0.99)\n" in out
    assert read_constants(out)["WINDOWS"] == [4]


def test_number_formatting_and_quote_style_are_kept() -> None:
    out, _ = set_constant_texts(
        TYPED,
        {"LEARNING_RATE": "1e15", "WINDOW_PATTERN": "L", "QUOTED": 'say "hi"', "DEPTH": "0x10"},
        "train.py",
    )
    assert "LEARNING_RATE = 1e15\n" in out
    assert 'WINDOW_PATTERN = "L"\n' in out
    assert "QUOTED = 'say \"hi\"'\n" in out
    assert "DEPTH = 0x10\n" in out
    assert set_constants(TYPED, {"WINDOW_PATTERN": "it's"}).count('WINDOW_PATTERN = "it\'s"') == 1


def test_the_command_refuses_a_retyped_constant_and_sets_an_expression(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "exp")
    before = (exp / "train.py").read_text()
    refused = run_skylab("constants", "X=abc", "Y=1", cwd=exp)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "X is an int (0); 'abc'" in refused.stderr
    assert "Traceback" not in refused.stderr and (exp / "train.py").read_text() == before
    done = run_skylab("constants", "X=2**3", "CURVE=late", cwd=exp, check=True)
    assert done.stdout.splitlines() == ["train.py: X = 2**3", 'train.py: CURVE = "late"']
    listed = run_skylab("constants", cwd=exp, check=True).stdout
    assert "X = 8" in listed and "CURVE = 'late'" in listed
