"""Text from notes and from the command line, made safe to print on a terminal."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def plural(count: int, noun: str) -> str:
    """`1 trial`, `2 trials`, `0 trials`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """`text` with control characters shown escaped (`\\x1b`, `\\n`), never sent raw: a note or an
    argument cannot move the cursor, retitle the window, or break a one-line message in two."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
