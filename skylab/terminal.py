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


DISPLAY_CHARS = 500  # of one free-text field (a description, a reason) in a table or a line
DISPLAY_LINES = 4  # ...and this many of its lines


def cap_display(text: str, chars: int = DISPLAY_CHARS, lines: int = DISPLAY_LINES) -> str:
    """`text` cut to what a table cell shows: at most `chars` characters on at most `lines` lines,
    ending with "…" when cut. A teammate's note or a model's text can hold megabytes; laying them
    out (rich wraps every cell) took minutes, while the note keeps the whole text."""
    cut = text[:chars]
    if cut.count("\n") >= lines:
        cut = "\n".join(cut.split("\n", lines)[:lines])
    return cut if cut == text else cut.rstrip() + "…"


def byte_size(size: int) -> str:
    """A size in bytes as a person reads it: 512 B, 3.4 kB, 12.0 MB (powers of 1,000, as `du --si`)."""
    if size < 1000:
        return f"{size} B"
    scaled = float(size)
    for unit in ("kB", "MB", "GB"):
        scaled /= 1000
        if scaled < 1000 or unit == "GB":
            break
    return f"{scaled:.1f} {unit}"
