from __future__ import annotations

import pytest

from skylab.experiment.constants import ConstantError, parse_assignment, read_constants, set_constants

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
        .replace('NAME: str = "gpt"', "NAME: str = 'big'")
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
        ("DEPTH=10", ("DEPTH", 10)),
        ("LR=3e-4", ("LR", 3e-4)),
        ("NAME='x'", ("NAME", "x")),
        ("ATTENTION=sdpa", ("ATTENTION", "sdpa")),
        ("FLAG=True", ("FLAG", True)),
    ],
)
def test_parse_assignment(text: str, expected: tuple[str, object]) -> None:
    assert parse_assignment(text) == expected


def test_parse_assignment_rejects_garbage() -> None:
    with pytest.raises(ConstantError):
        parse_assignment("no equals sign")
    with pytest.raises(ConstantError, match="only numbers, strings and booleans"):
        parse_assignment("X=[1, 2]")
