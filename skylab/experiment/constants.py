"""Read and rewrite module-level constants (`DEPTH = 8`) in a Python file, keeping every other byte.

This is how the sweep strategy (and `skylab constants --set`) changes an experiment: only the value
of each named assignment is replaced, so comments, formatting and the rest of the file stay as the
researcher wrote them, and the trial's diff is one line per constant.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

from skylab.errors import SkylabError
from skylab.store.notes import Scalar

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}


class ConstantError(SkylabError):
    """A constant that cannot be read or changed, with the reason."""


class _NotLiteral(Exception):
    pass


def _evaluate(node: ast.expr) -> Any:
    """The value of a literal, or of arithmetic on literals (`2**19`, `-1e-3`, `(0.8, 0.95)`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)):
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise _NotLiteral
            return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Tuple | ast.List):
        values = [_evaluate(e) for e in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else values
    raise _NotLiteral


def _assignments(tree: ast.Module) -> dict[str, ast.Assign | ast.AnnAssign]:
    found: dict[str, ast.Assign | ast.AnnAssign] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found[node.target.id] = node
    return found


def _parse(source: str, filename: str) -> ast.Module:
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ConstantError(f"{filename}:{exc.lineno}: not valid Python ({exc.msg})") from None


def read_constants(source: str, filename: str = "<source>") -> dict[str, Any]:
    """Every module-level NAME = literal (upper-case names: the knobs), in file order."""
    constants = {}
    for name, node in _assignments(_parse(source, filename)).items():
        if name.isupper() and node.value is not None:
            try:
                constants[name] = _evaluate(node.value)
            except _NotLiteral:
                continue
    return constants


def format_value(value: Scalar) -> str:
    """Python source for a value: repr keeps floats exact and 2.0 a float."""
    return repr(value)


def set_constants(source: str, values: Mapping[str, Scalar], filename: str = "<source>") -> str:
    """`source` with each named constant's value replaced; a missing or non-literal one is an error."""
    assignments = _assignments(_parse(source, filename))
    encoded = source.encode("utf-8")
    line_starts = [0]
    for line in encoded.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    edits: list[tuple[int, int, bytes]] = []
    for name, value in values.items():
        node = assignments.get(name)
        if node is None or node.value is None:
            raise ConstantError(f"{filename}: no module-level constant {name} (a line `{name} = ...`)")
        try:
            _evaluate(node.value)
        except _NotLiteral:
            segment = ast.get_source_segment(source, node.value) or "?"
            raise ConstantError(
                f"{filename}: {name} = {segment} is not a literal, so it cannot be set"
            ) from None
        target = node.value
        assert target.end_lineno is not None and target.end_col_offset is not None
        start = line_starts[target.lineno - 1] + target.col_offset  # col offsets count UTF-8 bytes
        end = line_starts[target.end_lineno - 1] + target.end_col_offset
        edits.append((start, end, format_value(value).encode("utf-8")))
    for start, end, text in sorted(edits, reverse=True):
        encoded = encoded[:start] + text + encoded[end:]
    return encoded.decode("utf-8")


def parse_assignment(text: str) -> tuple[str, Scalar]:
    """`NAME=VALUE` from the command line; VALUE is a Python literal, or else taken as a string."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ConstantError(f"'{text}' is not NAME=VALUE")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    if not isinstance(value, int | float | str | bool):
        raise ConstantError(f"{name}: only numbers, strings and booleans can be set, not {raw!r}")
    return name, value
