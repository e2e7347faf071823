"""autoresearch's `results.tsv`, read the way real files are written: a header naming the columns
(any order, extra columns welcome), tab-separated rows, CRLF or LF line ends, blank and `#` comment
lines, long descriptions. Pure: text in, rows out, or one ImportFormatError naming the line.

The documented format has five columns: commit, val_bpb, memory_gb, status (keep, discard, crash)
and description. A crash row's metric is a 0.000000 placeholder, never a value, and so is a
0.000000 with 0.0 GB of memory in a row of any status (runs log aborted trials as `discard
0.000000 0.0`). Forks write their own status words: each is read through a status map (the
documented defaults below, and the researcher's own) into keep, discard or crash; a word neither
knows is a discard, and said once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from skylab.errors import SkylabError
from skylab.store.notes import is_note_key

KNOWN_STATUSES = ("keep", "discard", "crash")
DEFAULT_STATUS_MAP = {  # the words autoresearch forks write, and what each means here
    **dict.fromkeys(("keep", "kept", "baseline", "best", "improved"), "keep"),
    **dict.fromkeys(
        ("discard", "discarded", "revert", "reverted", "tentative", "repair", "support"), "discard"
    ),
    **dict.fromkeys(("crash", "crashed", "error", "failed", "fail", "timeout", "oom"), "crash"),
}
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
    status: str  # as written: keep, discard, crash, or a fork's own word
    value: float | None  # None for a crash, or a 0.000000 placeholder
    memory_gb: float | None
    description: str
    extra: dict[str, int | float | str] = field(default_factory=dict)  # every other column, by name
    outcome: str = ""  # what the status means here (see DEFAULT_STATUS_MAP): keep, discard or crash


def status_map(pairs: list[str]) -> dict[str, str]:
    """`WORD=keep|discard|crash` pairs (a flag's) over the defaults; ImportFormatError for others."""
    mapping = dict(DEFAULT_STATUS_MAP)
    for pair in pairs:
        word, _, meaning = pair.partition("=")
        word, meaning = word.strip().lower(), meaning.strip().lower()
        if not word or meaning not in KNOWN_STATUSES:
            raise ImportFormatError(f"--status {pair!r}: expected WORD=keep, WORD=discard or WORD=crash")
        mapping[word] = meaning
    return mapping


def parse_results(
    text: str,
    metric: str = "val_bpb",
    statuses: dict[str, str] | None = None,
    skip_bad_rows: bool = False,
) -> tuple[list[ResultRow], list[str]]:
    """The rows of a results.tsv, in file order, and warning lines: one per status word that
    `statuses` (default: DEFAULT_STATUS_MAP) does not map, with its lines, and one per row skipped.
    Raises ImportFormatError for a file that cannot be trusted: no header, a column missing, or
    (unless `skip_bad_rows`) a row with the wrong number of fields, a metric that is not a number,
    a hash that is not one."""
    mapping = DEFAULT_STATUS_MAP if statuses is None else statuses
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
        try:
            if len(fields) != len(header):
                raise ImportFormatError(
                    f"line {number}: {len(fields)} fields, but the header has {len(header)}"
                )
            cells = dict(zip(header, (f.strip() for f in fields), strict=True))
            rows.append(_row(number, cells, metric.lower(), mapping))
        except ImportFormatError as exc:
            if not skip_bad_rows:
                raise ImportFormatError(f"{exc} (--skip-bad-rows leaves such rows out)") from None
            warnings.append(f"skipped {exc}")
    if header is None:
        raise ImportFormatError("no header line (commit, val_bpb, memory_gb, status, description)")
    return rows, [*_unknown_words(rows, mapping), *warnings]


def _unknown_words(rows: list[ResultRow], mapping: dict[str, str]) -> list[str]:
    """One line per status word `mapping` does not know, with the lines it is on."""
    lines: dict[str, list[int]] = {}
    for row in rows:
        if row.status.lower() not in mapping:
            lines.setdefault(row.status, []).append(row.line)
    return [
        f"unknown status {word!r} on {'line' if len(at) == 1 else 'lines'} {_line_list(at)}: "
        f"imported as a discard (map it with --status {word.lower()}=keep|discard|crash)"
        for word, at in lines.items()
    ]


def _line_list(lines: list[int], shown: int = 8) -> str:
    text = ", ".join(str(line) for line in lines[:shown])
    return text + (f" and {len(lines) - shown} more" if len(lines) > shown else "")


def _row(number: int, cells: dict[str, str], metric: str, mapping: dict[str, str]) -> ResultRow:
    commit = cells["commit"]
    if not _HASH.fullmatch(commit):
        raise ImportFormatError(f"line {number}: commit {commit!r} is not a git hash")
    outcome = mapping.get(cells["status"].lower(), "discard")
    value = _number(cells[metric], number, metric)
    memory = _number(cells.get("memory_gb", ""), number, "memory_gb")
    placeholder = value == 0 and memory == 0  # an aborted trial's 0.000000 with 0.0 GB, any status
    if outcome == "crash" or placeholder or (value is not None and not math.isfinite(value)):
        value = None  # the 0.000000 placeholder of a crash; a diverged run's nan is no value either
    elif value is None:
        raise ImportFormatError(f"line {number}: no {metric} in a {cells['status']} row")
    skip = {"commit", "status", metric, "memory_gb", "description"}
    extra = {name: _scalar(value_text) for name, value_text in cells.items() if name not in skip}
    description = cells.get("description", "")
    return ResultRow(number, commit, cells["status"], value, memory, description, extra, outcome)


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
