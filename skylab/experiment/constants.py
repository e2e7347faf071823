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


def format_value(value: Any, like: str = "") -> str:
    """Python source for a value: repr keeps floats exact and 2.0 a float; a string is written in
    the quotes of `like`, the literal it replaces (`"gpt"` stays double-quoted)."""
    text = repr(value)
    if not isinstance(value, str) or not like:
        return text
    quote = next((c for c in like if c in "'\""), "")
    if quote in ("", text[0]) or like.lstrip("rRbBuUfF")[:1] != quote:
        return text
    body = "".join("\\" + c if c == quote else repr(c)[1:-1] for c in value)  # each char's escape
    return quote + body + quote


def _edit_values(source: str, texts: Mapping[str, str], filename: str) -> str:
    """`source` with the value of each named constant replaced by the source text given for it."""
    assignments = _assignments(_parse(source, filename))
    encoded = source.encode("utf-8")
    line_starts = [0]
    for line in encoded.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    edits: list[tuple[int, int, bytes]] = []
    for name, text in texts.items():
        target = assignments[name].value
        assert target is not None and target.end_lineno is not None and target.end_col_offset is not None
        start = line_starts[target.lineno - 1] + target.col_offset  # col offsets count UTF-8 bytes
        end = line_starts[target.end_lineno - 1] + target.end_col_offset
        edits.append((start, end, text.encode("utf-8")))
    for start, end, replacement in sorted(edits, reverse=True):
        encoded = encoded[:start] + replacement + encoded[end:]
    return encoded.decode("utf-8")


def _current(
    source: str, assignments: dict[str, ast.Assign | ast.AnnAssign], name: str, filename: str
) -> tuple[Any, str]:
    """The value of constant `name` and its source text; a ConstantError when it is missing or
    not a literal."""
    node = assignments.get(name)
    if node is None or node.value is None:
        raise ConstantError(f"{filename}: no module-level constant {name} (a line `{name} = ...`)")
    segment = ast.get_source_segment(source, node.value) or "?"
    try:
        return _evaluate(node.value), segment
    except _NotLiteral:
        raise ConstantError(f"{filename}: {name} = {segment} is not a literal, so it cannot be set") from None


def set_constants(source: str, values: Mapping[str, Any], filename: str = "<source>") -> str:
    """`source` with each named constant's value replaced (a sweep's values: written as repr, a
    string in the quotes it had); a missing or non-literal one is an error."""
    assignments = _assignments(_parse(source, filename))
    texts = {}
    for name, value in values.items():
        _, segment = _current(source, assignments, name, filename)
        texts[name] = format_value(value, segment)
    return _edit_values(source, texts, filename)


def set_constant_texts(
    source: str, texts: Mapping[str, str], filename: str = "<source>"
) -> tuple[str, dict[str, str]]:
    """`source` with each named constant set to a value typed by a researcher (`texts`: name ->
    what followed `=`), and what was written for each. A value keeps its constant's type (see
    `typed_text`): anything else is a ConstantError, and nothing is written."""
    assignments = _assignments(_parse(source, filename))
    written = {}
    for name, raw in texts.items():
        current, segment = _current(source, assignments, name, filename)
        written[name] = typed_text(name, raw, current, segment)
    return _edit_values(source, written, filename), written


def _literal(raw: str) -> tuple[bool, Any]:
    """Whether `raw` is a literal, or arithmetic on literals (`2**14`, `(0.8, 0.95)`), and its value."""
    try:
        return True, _evaluate(ast.parse(raw.strip(), mode="eval").body)
    except (SyntaxError, ValueError, _NotLiteral, ArithmeticError):
        return False, None


_KINDS: tuple[tuple[type, str], ...] = (  # bool before int: a bool is an int to isinstance
    (bool, "a bool"),
    (int, "an int"),
    (float, "a float"),
    (str, "a string"),
    (tuple, "a tuple"),
    (list, "a list"),
)


def _kind(value: Any) -> str:
    return next((name for kind, name in _KINDS if isinstance(value, kind)), "None")


def typed_text(name: str, raw: str, current: Any, current_text: str) -> str:
    """The source text to write for `NAME=raw` over the constant's `current` value (written as
    `current_text`), keeping its type unless a quoted string asks for a string: a bool takes
    True/False (true/false too); an int an int; a float any number (an int written as a float); a
    string any text that is not another literal (in the quotes it had); a tuple or list one of the
    same kind; None anything. What the researcher typed is written as typed (`2**14`, `1e15`),
    but for those conversions. Pure; a ConstantError in one line otherwise."""
    raw = raw.strip()
    is_literal, value = _literal(raw)
    if is_literal and isinstance(value, str):  # quoted: a string, asked for explicitly
        return format_value(value, current_text if isinstance(current, str) else "")
    if isinstance(current, bool):
        if raw.lower() in ("true", "false"):
            return repr(raw.lower() == "true")
        if is_literal and isinstance(value, bool):
            return raw
    elif isinstance(current, int):
        if is_literal and isinstance(value, int) and not isinstance(value, bool):
            return raw
    elif isinstance(current, float):
        if is_literal and isinstance(value, float):
            return raw
        if is_literal and isinstance(value, int) and not isinstance(value, bool):
            return repr(float(value))
    elif isinstance(current, str):
        if not is_literal and raw:
            return format_value(raw, current_text)
    elif current is None or type(value) is type(current):
        if is_literal:
            return raw
        if current is None and raw:
            return repr(raw)
    got = f"{_kind(value)}" if is_literal else "not a Python literal"
    hint = f" (to set it to a string, quote it: {name}='\"{raw}\"')"
    raise ConstantError(f"{name} is {_kind(current)} ({current_text}); {raw!r} is {got}{hint}")


def parse_assignment(text: str) -> tuple[str, str]:
    """`NAME=VALUE` from the command line: the name and the value's text as typed."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ConstantError(f"'{text}' is not NAME=VALUE")
    if not raw.strip():
        raise ConstantError(f"{name}: no value after '='")
    return name, raw.strip()
