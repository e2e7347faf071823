"""autoresearch's `results.tsv`, read the way real files are written: a header naming the columns
(any order, extra columns welcome), tab-separated rows, CRLF or LF line ends, blank and `#` comment
lines, long descriptions. Pure: text in, rows out, or one ImportFormatError naming the line.

The documented format has five columns: commit, val_bpb, memory_gb, status (keep, discard, crash)
and description. A crash row's metric is a 0.000000 placeholder, never a value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from skylab.errors import SkylabError
from skylab.store.notes import is_note_key

KNOWN_STATUSES = ("keep", "discard", "crash")
REQUIRED = ("commit", "status")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_HASH = re.compile(r"[0-9a-fA-F]{4,64}")


class ImportFormatError(SkylabError):
    """A results.tsv that cannot be read: which line, and what is wrong with it."""


@dataclass(frozen=True)
class ResultRow:
    line: int  # where it is in the file, 1-based
    commit: str  # the hash as written (short or full)
    status: str  # as written: keep, discard, crash, or a word this version does not know
    value: float | None  # None for a crash
    memory_gb: float | None
    description: str
    extra: dict[str, int | float | str] = field(default_factory=dict)  # every other column, by name


def parse_results(text: str, metric: str = "val_bpb") -> tuple[list[ResultRow], list[str]]:
    """The rows of a results.tsv, in file order, and one warning line per unknown status word.
    Raises ImportFormatError for a file that cannot be trusted: no header, a column missing, a row
    with the wrong number of fields, a metric that is not a number, a hash that is not one."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    header: list[str] | None = None
    rows: list[ResultRow] = []
    warnings: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = raw.split("\t")
        if header is None:
            header = [name.strip().lower() for name in fields]
            missing = [name for name in (*REQUIRED, metric.lower()) if name not in header]
            if missing:
                raise ImportFormatError(
                    f"line {number}: the header has no {', '.join(missing)} column "
                    f"(columns: {', '.join(header)})"
                )
            if len(set(header)) != len(header):
                raise ImportFormatError(f"line {number}: the header names a column twice")
            for name in header:
                if not name or not is_note_key(f"summary.{name}"):
                    raise ImportFormatError(
                        f"line {number}: column {name!r} cannot be a note key "
                        "(no ': ', control characters or padding; rename it)"
                    )
            continue
        if len(fields) != len(header):
            raise ImportFormatError(f"line {number}: {len(fields)} fields, but the header has {len(header)}")
        cells = dict(zip(header, (f.strip() for f in fields), strict=True))
        rows.append(_row(number, cells, metric.lower(), warnings))
    if header is None:
        raise ImportFormatError("no header line (commit, val_bpb, memory_gb, status, description)")
    return rows, warnings


def _row(number: int, cells: dict[str, str], metric: str, warnings: list[str]) -> ResultRow:
    commit = cells["commit"]
    if not _HASH.fullmatch(commit):
        raise ImportFormatError(f"line {number}: commit {commit!r} is not a git hash")
    status = cells["status"].lower()
    if status not in KNOWN_STATUSES:
        warnings.append(f"line {number}: unknown status {cells['status']!r}: kept as given, never as a keep")
    value = _number(cells[metric], number, metric)
    if status == "crash" or (value is not None and not math.isfinite(value)):
        value = None  # the 0.000000 placeholder of a crash; a diverged run's nan is no value either
    elif value is None:
        raise ImportFormatError(f"line {number}: no {metric} in a {cells['status']} row")
    memory = _number(cells.get("memory_gb", ""), number, "memory_gb")
    skip = {"commit", "status", metric, "memory_gb", "description"}
    extra = {name: _scalar(value_text) for name, value_text in cells.items() if name not in skip}
    return ResultRow(number, commit, cells["status"], value, memory, cells.get("description", ""), extra)


def _number(text: str, line: int, column: str) -> float | None:
    if not text:
        return None
    if not _NUMBER.fullmatch(text) and text.lower() not in ("nan", "inf", "-inf"):
        raise ImportFormatError(f"line {line}: {column} {text!r} is not a number")
    return float(text)


def _scalar(text: str) -> int | float | str:
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    return text
