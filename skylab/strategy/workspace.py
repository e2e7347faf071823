"""The files an agent may touch, and the checks that keep it to them.

Every path the model names is checked here: absolute paths, `..`, symlinks that lead out of the
work tree, frozen files and anything not editable are refused, and the refusal goes back to the
model as a tool error it can read and correct.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from skylab.experiment.config import ExperimentConfig, outside_experiment

READ_LINES = 400  # lines read_file returns when no limit is given
MAX_READ_CHARS = 40_000  # at most this much per read: every read is re-sent on every later turn
MAX_WRITE_CHARS = 200_000  # a write larger than this is refused (train.py is about 30,000)


def window(name: str, text: str, offset: int, limit: int) -> str:
    """Lines `offset` .. `offset + limit - 1` (1-based) of `text`, numbered, with a line saying what
    is left; at most MAX_READ_CHARS characters."""
    if offset < 1 or limit < 1:
        raise ToolError("offset and limit must be at least 1")
    lines = text.splitlines()
    shown: list[str] = []
    size = 0
    for number in range(offset, min(len(lines), offset + limit - 1) + 1):
        line = f"{number:5d}  {lines[number - 1]}"
        if size + len(line) > MAX_READ_CHARS and shown:
            break
        shown.append(line)
        size += len(line) + 1
    if not shown:
        return f"{name} has {len(lines)} lines; nothing at line {offset}"
    last = offset + len(shown) - 1
    more = f" (more: read with offset={last + 1})" if last < len(lines) else ""
    return f"{name}: lines {offset}-{last} of {len(lines)}{more}\n" + "\n".join(shown)


class ToolError(Exception):
    """A refused or failed tool call, said to the model."""


def no_logs(trial: str) -> str:
    return ""


class Workspace:
    def __init__(
        self, root: Path, config: ExperimentConfig, logs: Callable[[str], str] = lambda _: ""
    ) -> None:
        self.root = root.resolve()
        self.logs = logs  # trial name -> its whole log ("" when unknown)
        self.memory: str | None = None  # the research memory the model consolidated, if it did
        self.editable = set(config.editable_files)
        self.frozen = set(config.frozen_files)

    def _path(self, name: str, for_writing: bool) -> Path:
        if not isinstance(name, str) or not name.strip():
            raise ToolError("give a file path relative to the experiment, e.g. train.py")
        pure = PurePosixPath(name)
        if pure.is_absolute() or name.startswith("~"):
            raise ToolError(f"{name}: absolute paths are not allowed; use a path relative to the experiment")
        if ".." in pure.parts:
            raise ToolError(f"{name}: '..' is not allowed; only files of this experiment can be used")
        relative = str(pure)
        path = self.root / relative
        if outside_experiment(self.root, relative):
            raise ToolError(f"{name}: leads outside the experiment (a symbolic link?)")
        if for_writing:
            if relative in self.frozen:
                raise ToolError(
                    f"{name} is frozen (read-only): it defines the rules every trial is judged by"
                )
            if relative not in self.editable:
                raise ToolError(f"{name} is not editable; editable files: {', '.join(sorted(self.editable))}")
            if path.is_symlink():
                raise ToolError(f"{name} is a symbolic link; it cannot be edited")
        elif relative not in self.editable | self.frozen:
            readable = ", ".join(sorted(self.editable | self.frozen))
            raise ToolError(f"{name} is not part of the experiment; readable files: {readable}")
        return path

    def list_files(self) -> str:
        lines = []
        for name in sorted(self.editable | self.frozen):
            role = "editable" if name in self.editable else "frozen, read-only"
            size = (self.root / name).stat().st_size if (self.root / name).is_file() else 0
            lines.append(f"{name} ({role}, {size} bytes)")
        return "\n".join(lines)

    def read_file(self, name: str, offset: int = 1, limit: int = READ_LINES) -> str:
        """Lines `offset` .. `offset + limit - 1` (1-based) of a file of the experiment."""
        path = self._path(name, for_writing=False)
        if not path.is_file():
            raise ToolError(f"{name}: no such file")
        return window(name, path.read_text(encoding="utf-8", errors="replace"), offset, limit)

    def read_log(self, trial: str, offset: int = 1, limit: int = READ_LINES) -> str:
        """Lines of a past trial's training log (negative `offset`: counted from the end)."""
        text = self.logs(trial)
        if not text:
            raise ToolError(
                f"{trial}: no such trial, or it has no log (give a name from the history, e.g. t/3)"
            )
        if offset < 0:
            offset = max(1, len(text.splitlines()) + offset + 1)
        return window(f"log of {trial}", text, offset, limit)

    def replace_in_file(self, name: str, old: str, new: str) -> str:
        path = self._path(name, for_writing=True)
        text = path.read_text(encoding="utf-8")
        count = text.count(old) if old else 0
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times"
            raise ToolError(
                f"{name}: old_string {where}; it must match exactly one place (include more context)"
            )
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        return f"{name}: replaced 1 occurrence"

    def write_file(self, name: str, content: str) -> str:
        path = self._path(name, for_writing=True)
        if len(content) > MAX_WRITE_CHARS:
            raise ToolError(
                f"{name}: {len(content)} characters is over the {MAX_WRITE_CHARS} a write may hold; "
                "change the file in smaller steps with replace_in_file"
            )
        path.write_text(content, encoding="utf-8")
        return f"{name}: wrote {len(content)} characters"
