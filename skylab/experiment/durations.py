"""Human durations ("90s", "30m", "8h", "1d", "1h30m", "1:30:00") for budgets and time limits."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 366 * 86400  # longer budgets and limits are typos (1e400, 99999d), refused
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str | float | int) -> float:
    """Seconds in `text`; a bare number is seconds. Raises ValueError with a usable message."""
    if isinstance(text, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30m'")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        cleaned = text.strip().lower().replace(" ", "")
        try:
            seconds = _clock(cleaned) if ":" in cleaned else float(cleaned)
        except ValueError:
            parts = _PART.findall(cleaned)
            if not parts or "".join(n + u for n, u in parts) != cleaned:
                raise ValueError(
                    f"{text!r} is not a duration (use e.g. 90s, 30m, 8h, 1d, 1h30m, 1:30:00)"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than a year")
    return seconds


def _clock(text: str) -> float:
    """Seconds in H:MM:SS or M:SS (minutes and seconds below 60, as a clock shows them)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:-1]) or not parts[-1]:
        raise ValueError(text)
    numbers = [float(p) for p in parts]  # ValueError for anything not a number
    if any(n >= 60 for n in numbers[1:]) or any(n < 0 for n in numbers):
        raise ValueError(text)
    seconds = 0.0
    for number in numbers:
        seconds = seconds * 60 + number
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: 45s, 12m30s, 8h05m."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
