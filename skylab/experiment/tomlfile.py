"""Reading a Skylab TOML file (experiment.toml, remote.toml) and checking its tables.

One reader and one checker for every file, so each says what is wrong the same way: one
ConfigError naming the file, the dotted key and the problem, never a traceback.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from skylab.errors import ConfigError
from skylab.experiment.durations import parse_duration

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

    def get(self, name: str, kinds: tuple[type, ...], kind_name: str, default: Any = ..., /) -> Any:
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
        if isinstance(value, float) and not math.isfinite(value):
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
