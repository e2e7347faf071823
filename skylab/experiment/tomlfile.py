"""Reading a Skylab TOML file (experiment.toml, remote.toml) and checking its tables.

One reader and one checker for every file, so each says what is wrong the same way: one
ConfigError naming the file, the dotted key and the problem, never a traceback.
"""

from __future__ import annotations

import math
import sys
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from skylab.errors import ConfigError
from skylab.experiment.durations import parse_duration

T = TypeVar("T")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


def read_toml(path: Path, display: str, missing: str = "file not found") -> dict[str, Any]:
    """The parsed file; a ConfigError when it is missing, not UTF-8 or not TOML."""
    if not path.is_file():
        raise ConfigError(display, "", missing)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(display, "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(display, "", f"invalid TOML: {exc}") from None


class Table:
    """A TOML table being read: checks types, remembers which keys were used, rejects the rest."""

    def __init__(self, file: str, prefix: str, data: Any) -> None:
        self.file = file
        self.prefix = prefix
        if not isinstance(data, dict):
            raise ConfigError(file, prefix, f"must be a table, not {type_name(data)}")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        if not name:
            return self.prefix
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def get(
        self,
        name: str,
        kinds: tuple[type, ...],
        kind_name: str,
        default: Any = ...,
        /,
        infinite: bool = False,
    ) -> Any:
        """The value of `name` (`default` when absent), of one of `kinds`; a float must be finite,
        or +inf when `infinite`."""
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise self.error(name, "is required but missing")
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"must be {kind_name}, not a boolean")
        if not isinstance(value, kinds):
            raise self.error(name, f"must be {kind_name}, not {type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value) and not (infinite and value == math.inf):
            raise self.error(name, f"must be a finite number, not {value}")
        return value

    def string(self, name: str, default: Any = ...) -> Any:
        value = self.get(name, (str,), "a string", default)
        if isinstance(value, str) and not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def positive(self, name: str, default: Any = ...) -> Any:
        value = self.get(name, (int, float), "a number", default)
        if value is not None and value is not default and value <= 0:
            raise self.error(name, f"must be positive, not {value}")
        return value

    def duration(self, name: str, default: Any = ...) -> Any:
        value = self.get(name, (int, float, str), "a number of seconds or a duration like '10m'", default)
        if value is None or value is default:
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def string_list(self, name: str, default: Any = ...) -> Any:
        value = self.get(name, (list,), "a list of strings", default)
        for item in value:
            if not isinstance(item, str):
                raise self.error(name, f"must be a list of strings, but holds {type_name(item)}")
        return value

    def table(self, name: str, required: bool = False) -> Table | None:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "table is required but missing")
            return None
        return Table(self.file, self.key(name), self.data[name])

    def finish(self) -> None:
        for name in self.data:
            if name not in self.used:
                raise self.error(name, "unknown key")


def type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names.update({list: "a list", dict: "a table"})
    return names.get(type(value), type(value).__name__)


# ----- settings declared on dataclass fields ---------------------------------------------------------

KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "number": ((int, float), "a number"),
    "bool": ((bool,), "a boolean"),
}


@dataclass(frozen=True)
class Check:
    """How one key of a table is read and bounded: its kind, then an optional range or choice list.

    `low`/`high` are inclusive and `above` exclusive; `what` replaces the generic wording of a bound
    in the message ("must be {what}, not {value}").
    """

    kind: str  # int | number | bool | string | strings | duration
    low: float | None = None
    high: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()
    what: str = ""
    infinite: bool = False  # a number may be inf (TOML's `inf`): "never", for a bar

    def read(self, table: Table, name: str, default: Any) -> Any:
        if self.kind == "string":
            value = table.string(name, default)
        elif self.kind == "strings":
            value = table.string_list(name, default)
            return tuple(value) if isinstance(value, list) else value
        elif self.kind == "duration":
            value = table.duration(name, default)
        else:
            kinds, kind_name = KINDS[self.kind]
            value = table.get(name, kinds, kind_name, default, infinite=self.infinite)
        if value is None or name not in table.data:
            return value
        problem = self.problem(value)
        if problem:
            raise table.error(name, problem)
        return float(value) if self.kind == "number" else value

    def problem(self, value: Any) -> str:
        """What is wrong with a value of the right kind ("" when nothing)."""
        if self.choices and value not in self.choices:
            quoted = [f'"{choice}"' for choice in self.choices]
            listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
            return f'must be {listed}, not "{value}"'
        if self.kind == "number" and not math.isfinite(value) and not (self.infinite and value == math.inf):
            return (
                f"must be a finite number or inf, not {value}"
                if self.infinite
                else f"must be a finite number, not {value}"
            )
        too_low = self.low is not None and value < self.low
        too_high = self.high is not None and value > self.high
        if self.above is not None and value <= self.above:
            bound = "positive" if self.above == 0 else f"above {self.above:g}"
            return f"must be {self.what or bound}, not {value}"
        if not (too_low or too_high):
            return ""
        if self.what:
            return f"must be {self.what}, not {value}"
        if self.high is not None and self.low is not None:
            return f"must be between {self.low:g} and {self.high:g}, not {value}"
        if too_low and self.low == 0:
            return f"must not be negative, not {value}"
        if too_low:
            return f"must be at least {self.low:g}, not {value}"
        return f"must be at most {self.high:g}, not {value}"


def setting(default: Any = MISSING, kind: str = "string", **bounds: Any) -> Any:
    """A dataclass field read from a TOML table by `read_settings`: a new key is one line."""
    check = Check(kind, **bounds)
    if default is MISSING:
        return field(metadata={"check": check})
    return field(default=default, metadata={"check": check})


def read_settings(table: Table, cls: type[T], **given: Any) -> T:
    """An instance of the dataclass `cls`: each field declared with `setting` read from `table`
    (its default when the key is absent, a ConfigError when it is wrong), the others from `given`."""
    values = dict(given)
    for item in fields(cls):  # type: ignore[arg-type]
        check = item.metadata.get("check")
        if check is not None and item.name not in values:
            values[item.name] = check.read(table, item.name, ... if item.default is MISSING else item.default)
    return cls(**values)
