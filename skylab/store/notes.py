"""The trial note: `key: value` lines that read well in `git log --notes=skylab` and parse back exactly.

A value that would not survive as a bare line (empty, padded with spaces, a newline or any other
non-printable character, or a leading quote) is written as a JSON string; everything else is written
as it is. Numbers are written with repr, so they parse back to the same float. Keys this version does
not know are kept, so a note written by a newer Skylab survives a round trip through an older one.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from enum import Enum

FORMAT_VERSION = 1
HEADER = "skylab-note"

Scalar = int | float | str | bool


class Status(str, Enum):
    SUCCESS = "success"
    CRASH = "crash"  # non-zero exit, no metric printed, or code that does not parse
    TIMEOUT = "timeout"  # killed at the experiment's max_trial_wall_time
    INTERRUPTED = "interrupted"  # Skylab stopped (Ctrl-C, kill) before the result was recorded
    CONSTRAINT = "constraint"  # trained, but broke a constraint (max_vram_gb): reverted
    DIVERGED = "diverged"  # stopped early: its training loss went non-finite (see loop.curves)
    NOOP = "noop"  # the proposal changed nothing: recorded, never trained
    DUPLICATE = "duplicate"  # the same change as an earlier trial: recorded, never trained
    INFRA = "infra"  # the machine failed, not the code (a lost connection): reverted, not a crash
    DISCARDED = "discarded"  # the strategy gave the proposal up (the model never finished): never trained


# The statuses of a trial that was run and failed: what a strategy learns from and avoids.
FAILED = (Status.CRASH, Status.TIMEOUT, Status.CONSTRAINT, Status.DIVERGED)


class Decision(str, Enum):
    KEEP = "keep"
    REVERT = "revert"


# Keys with a fixed meaning; a metric may not be named after one of them.
RESERVED_KEYS = frozenset(
    {
        HEADER,
        "trial",
        "tag",
        "status",
        "decision",
        "metric",
        "peak_vram_mb",
        "strategy",
        "parent",
        "started_at",
        "train_seconds",
        "wall_seconds",
        "description",
        "reason",
        "log_tail",
        "measurements",
        "seeds",
        "sem",
        "sigma",
        "verdict",
    }
)


# Keys Skylab writes among a note's other lines (who ran it, its log, how it was judged).
OTHER_KEYS = frozenset(
    {
        "ran_by",
        "worker",
        "log",
        "judged_against",
        "overtook",
        "tokens_in",
        "tokens_out",
        "tokens_cached",
        "merged_from",
        "ablates",
        "ablation_of",
        "prunes",
        "confirms",
        "confirmation_of",
        "scale",
        "loss_curve",
    }
)


LOG_TAIL_LINES = 20  # a failed trial's note keeps at most this many of its last output lines...
LOG_LINE_CHARS = 300  # ...each cut to this many characters...
LOG_TAIL_CHARS = 4096  # ...and this many in all: the full log stays in .skylab/logs
TEXT_CHARS = 2000  # description and reason are cut to this many characters


def cap_log_tail(lines: list[str]) -> str:
    """The log tail a note holds: the last LOG_TAIL_LINES lines, each cut to LOG_LINE_CHARS, the
    oldest dropped until the whole fits LOG_TAIL_CHARS. A trial that prints megabytes on one line
    still gets a note of a few KB."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-LOG_TAIL_LINES:]):
        cut = line if len(line) <= LOG_LINE_CHARS else line[: LOG_LINE_CHARS - 1] + "…"
        if size + len(cut) + 1 > LOG_TAIL_CHARS:
            break
        kept.append(cut)
        size += len(cut) + 1
    return "\n".join(reversed(kept))


def budget_scale(other: dict[str, str]) -> float:
    """How many times the experiment's time budget a trial trained for, from its note's other lines
    (`scale`, written by a confirmation; 1 otherwise): values at another scale are not comparable
    with the rest."""
    try:
        scale = float(other.get("scale", "1"))
    except ValueError:
        return 1.0
    return scale if math.isfinite(scale) and scale > 0 else 1.0


def _cut(text: str, limit: int = TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class NoteFormatError(ValueError):
    """A note that is not a Skylab trial note (hand-edited, truncated, or from another tool)."""


@dataclass
class TrialNote:
    trial: int
    tag: str
    status: Status
    decision: Decision
    metric: str
    value: float | None = None
    peak_vram_mb: float | None = None
    strategy: str = ""
    parent: str = ""
    started_at: str = ""
    train_seconds: float | None = None
    wall_seconds: float | None = None
    description: str = ""
    reason: str = ""  # why a trial did not succeed, in one line
    log_tail: str = ""  # the last lines of a failed trial's output
    measurements: list[float] = field(default_factory=list)  # every successful one, in seed order
    seeds: list[int] = field(default_factory=list)  # SKYLAB_SEED of each measurement
    sem: float | None = None  # standard error of the mean (`value`), from the run's σ
    sigma: float | None = None  # the run's pooled σ of one measurement when it was judged
    verdict: str = ""  # how keep/revert was decided, in one line
    params: dict[str, Scalar] = field(default_factory=dict)
    summary: dict[str, Scalar] = field(default_factory=dict)
    other: dict[str, str] = field(default_factory=dict)

    @classmethod
    def begun(
        cls, tag: str, trial: int, metric: str, parent: str, started_at: str, description: str
    ) -> TrialNote:
        """The note of a trial that has started: a success, reverted until the judge says otherwise."""
        return cls(
            trial,
            tag,
            Status.SUCCESS,
            Decision.REVERT,
            metric,
            parent=parent,
            started_at=started_at,
            description=description,
        )

    def __reduce__(self) -> tuple[type[TrialNote], tuple[object, ...]]:
        """Pickled as its fields, in order (the history cache holds every note): loading 100,000
        notes takes a third of the time it does from the default pickle, a dict of attributes
        rebuilt for each note."""
        return (TrialNote, tuple([getattr(self, name) for name in NOTE_FIELDS]))

    def samples(self) -> list[float]:
        """Every measurement of the trial: the recorded ones, else its one value (older notes)."""
        if self.measurements:
            return list(self.measurements)
        return [] if self.value is None else [self.value]

    @property
    def budget_scale(self) -> float:
        return budget_scale(self.other)

    def format(self) -> str:
        """The note's text, one `key: value` per line, ending with a newline."""
        lines = [
            (HEADER, str(FORMAT_VERSION)),
            ("trial", str(self.trial)),
            ("tag", _encode_text(self.tag)),
            ("status", self.status.value),
            ("decision", self.decision.value),
            ("metric", _encode_text(self.metric)),
        ]
        optional: list[tuple[str, str | float | None]] = [
            (self.metric, self.value),
            ("peak_vram_mb", self.peak_vram_mb),
            ("strategy", self.strategy),
            ("parent", self.parent),
            ("started_at", self.started_at),
            ("train_seconds", self.train_seconds),
            ("wall_seconds", self.wall_seconds),
            ("sem", self.sem),
            ("sigma", self.sigma),
        ]
        for key, value in optional:
            if isinstance(value, float | int):
                lines.append((key, _encode_float(float(value))))
            elif value:
                lines.append((key, _encode_text(value)))
        if self.measurements:
            lines.append(("measurements", json.dumps([float(v) for v in self.measurements])))
            lines.append(("seeds", json.dumps(self.seeds)))
        lines.append(("description", _encode_text(_cut(self.description))))
        if self.verdict:
            lines.append(("verdict", _encode_text(_cut(self.verdict))))
        log_tail = (
            self.log_tail if len(self.log_tail) <= LOG_TAIL_CHARS else cap_log_tail(self.log_tail.split("\n"))
        )
        lines += [
            (k, _encode_text(v)) for k, v in (("reason", _cut(self.reason)), ("log_tail", log_tail)) if v
        ]
        lines += [(f"param.{k}", _encode_scalar(v)) for k, v in self.params.items()]
        lines += [(f"summary.{k}", _encode_scalar(v)) for k, v in self.summary.items()]
        lines += list(self.other.items())
        for key, _ in lines:
            _check_key(key)
        return "".join(f"{key}: {value}\n" for key, value in lines)

    @classmethod
    def parse(cls, text: str) -> TrialNote:
        """Read a note written by `format`; raise NoteFormatError when it is not one."""
        fields: dict[str, str] = {}
        # split("\n"), not splitlines(): the latter also breaks on characters a bare value may hold.
        for line in text.split("\n"):
            if not line.strip():
                continue
            key, sep, value = line.partition(": ")
            if not sep:
                if line.endswith(":"):
                    key, value = line[:-1], ""
                else:
                    raise NoteFormatError(f"line {line[:60]!r} is not 'key: value'")
            fields[key] = value
        if HEADER not in fields:
            raise NoteFormatError(f"no '{HEADER}' line: not a Skylab note")
        try:
            metric = _decode_text(_required(fields, "metric"))
            note = cls(
                trial=int(_required(fields, "trial")),
                tag=sys.intern(_decode_text(_required(fields, "tag"))),
                status=Status(_required(fields, "status")),
                decision=Decision(_required(fields, "decision")),
                metric=sys.intern(metric),
                value=_optional_float(fields.get(metric)),
                peak_vram_mb=_optional_float(fields.get("peak_vram_mb")),
                strategy=sys.intern(_decode_text(fields.get("strategy", ""))),
                parent=_decode_text(fields.get("parent", "")),
                started_at=_decode_text(fields.get("started_at", "")),
                train_seconds=_optional_float(fields.get("train_seconds")),
                wall_seconds=_optional_float(fields.get("wall_seconds")),
                description=_decode_text(fields.get("description", "")),
                reason=_decode_text(fields.get("reason", "")),
                log_tail=_decode_text(fields.get("log_tail", "")),
                measurements=[float(v) for v in _number_list(fields.get("measurements", "[]"))],
                seeds=[int(v) for v in _number_list(fields.get("seeds", "[]"))],
                sem=_optional_float(fields.get("sem")),
                sigma=_optional_float(fields.get("sigma")),
                verdict=_decode_text(fields.get("verdict", "")),
            )
        except (ValueError, json.JSONDecodeError) as exc:
            raise NoteFormatError(str(exc)) from None
        known = RESERVED_KEYS | {metric}
        for key, value in fields.items():
            if key in known:
                continue
            # Keys are interned: 100,000 notes then share one string per key, in memory and in the
            # pickled history cache.
            if key.startswith("param."):
                note.params[sys.intern(key[len("param.") :])] = _decode_scalar(value)
            elif key.startswith("summary."):
                note.summary[sys.intern(key[len("summary.") :])] = _decode_scalar(value)
            else:
                note.other[sys.intern(key)] = value
        return note


NOTE_FIELDS = tuple(f.name for f in fields(TrialNote))  # in the order TrialNote() takes them


def _number_list(value: str) -> list[float]:
    decoded = json.loads(value)
    if not isinstance(decoded, list) or not all(isinstance(v, int | float) for v in decoded):
        raise NoteFormatError(f"{value[:60]!r} is not a list of numbers")
    return decoded


def _required(fields: dict[str, str], key: str) -> str:
    if key not in fields:
        raise NoteFormatError(f"missing '{key}'")
    return fields[key]


def _check_key(key: str) -> None:
    if not is_note_key(key):
        raise ValueError(f"{key!r} cannot be a note key")


@functools.lru_cache(maxsize=4096)  # a history's notes share a few dozen keys; a report formats them all
def is_note_key(key: str) -> bool:
    """Whether `key` can be a note line's key: printable, no ": ", no padding, no trailing ":"."""
    return (
        bool(key) and key.isprintable() and ": " not in key and key == key.strip() and not key.endswith(":")
    )


def _needs_quoting(value: str) -> bool:
    return value == "" or value != value.strip() or not value.isprintable() or value.startswith('"')


def _encode_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if _needs_quoting(value) else value


def _decode_text(value: str) -> str:
    if value.startswith('"'):
        decoded = json.loads(value)
        if not isinstance(decoded, str):
            raise NoteFormatError(f"{value[:60]!r} is not a string")
        return decoded
    return value


def _encode_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)  # nan, inf, -inf: float() reads them back
    return repr(float(value))


def _optional_float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _encode_scalar(value: Scalar) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return _encode_float(value)
    return json.dumps(value)


def _decode_scalar(value: str) -> Scalar:
    if value in ("nan", "inf", "-inf"):
        return float(value)
    decoded = json.loads(value)
    if not isinstance(decoded, int | float | str | bool):
        raise NoteFormatError(f"{value[:60]!r} is not a number, string or boolean")
    return decoded


def iso_utc(when: datetime) -> str:
    """ISO 8601 in UTC, to the millisecond, as notes write times (`started_at`)."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    """Now, as notes write it: to the millisecond, so that trials started in one second still sort."""
    return iso_utc(datetime.now(timezone.utc))
