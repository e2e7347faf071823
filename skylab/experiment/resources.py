"""Where the files shipped with Skylab live: the repo's top level in a checkout, `_bundled` in a wheel."""

from __future__ import annotations

from pathlib import Path

from skylab.errors import SkylabError

_PACKAGE = Path(__file__).resolve().parents[1]  # the skylab package


def resource_dir(name: str) -> Path:
    """`experiments`, `hooks` or `templates`, wherever this installation keeps them."""
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise SkylabError(f"Skylab's '{name}' directory is missing from this installation ({_PACKAGE})")


def template_names() -> list[str]:
    root = resource_dir("experiments")
    return sorted(p.name for p in root.iterdir() if (p / "experiment.toml").is_file())


def template_dir(name: str) -> Path:
    names = template_names()
    if name not in names:
        raise SkylabError(f"unknown template '{name}' (available: {', '.join(names) or 'none'})")
    return resource_dir("experiments") / name
