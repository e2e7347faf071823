from __future__ import annotations

import pytest

from skylab.experiment.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90s", 90),
        ("30m", 1800),
        ("8h", 28800),
        ("1d", 86400),
        ("1h30m", 5400),
        ("2.5h", 9000),
        ("45", 45),
        (12, 12),
        ("90m", 5400),
        ("1:30:00", 5400),
        ("0:30:15", 1815),
        ("5:30", 330),
    ],
)
def test_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "soon", "5 parsecs", "-3m", "0", "1h-2m", "m30", "1:75", "1:2:3:4", "1:", ":30", "0:00:00"]
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format() -> None:
    assert [format_duration(s) for s in (5, 750, 29100, 90000)] == ["5s", "12m30s", "8h05m", "1d01h"]
