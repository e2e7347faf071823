"""The house rules, checked on the source: packages import only the layers below them, no module
imports another in a cycle, no class outgrows 250 lines, no module reaches into another's private
names, and only the store takes the store's lock."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "skylab"
# Each package and what it may import of skylab (besides itself and the bottom modules).
BOTTOM = {"skylab.errors", "skylab.terminal", "skylab.jsontext"}
LAYERS = {
    "skylab.store": set(),
    "skylab.experiment": {"skylab.store"},
    "skylab.runner": {"skylab.experiment", "skylab.store"},
    "skylab.strategy": {"skylab.experiment", "skylab.store"},
}
LARGEST_CLASS = 250


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported(tree: ast.Module, at_import_time: bool) -> Iterator[tuple[str, list[str]]]:
    """(module, names) of each `from skylab... import` in `tree`: with `at_import_time`, only those
    that run when the module is imported (top level, outside `if TYPE_CHECKING:`)."""
    nodes = tree.body if at_import_time else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("skylab"):
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("skylab"):
                    yield alias.name, []


ALL = dict(modules())


def test_each_package_imports_only_the_layers_below_it() -> None:
    upward = []
    for name, tree in ALL.items():
        package = next((p for p in LAYERS if name == p or name.startswith(p + ".")), None)
        if package is None:
            continue
        allowed = {package, *LAYERS[package], *BOTTOM}
        for module, _names in imported(tree, at_import_time=False):
            if not any(module == a or module.startswith(a + ".") for a in allowed):
                upward.append(f"{name} imports {module}")
    assert upward == []


def test_no_module_imports_another_in_a_cycle() -> None:
    graph: dict[str, set[str]] = {name: set() for name in ALL}
    for name, tree in ALL.items():
        for module, names in imported(tree, at_import_time=True):
            targets = {f"{module}.{n}" for n in names if f"{module}.{n}" in ALL} or {module}
            graph[name] |= {t for t in targets if t in ALL and t != name}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_no_class_is_longer_than_250_lines() -> None:
    long = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in ALL.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None
        if node.end_lineno - node.lineno + 1 > LARGEST_CLASS
    ]
    assert long == []


def test_no_module_imports_a_private_name_of_another() -> None:
    private = [
        f"{name}: from {module} import {n}"
        for name, tree in ALL.items()
        for module, names in imported(tree, at_import_time=False)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert private == []


def test_only_the_store_takes_the_store_lock() -> None:
    takes = [
        f"{name}: {ast.unparse(node)}"
        for name, tree in ALL.items()
        if not name.startswith("skylab.store")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "writing"
    ]
    assert takes == []
