"""Refs under one folder, read straight from git's files backend: `packed-refs` and the loose ref
files beside it.

Why: pygit2 makes a Python object for every ref it lists, so listing 100,000 trial refs took 0.6 s
on every history load. Here `packed-refs` is parsed once per version of the file (its inode, size
and modification time) and only the loose refs are read on each call; the store packs refs when
loose ones pile up (`RefWriter.maintain`), so a load reads few files however long the history.

Invariants: a loose ref overrides a packed one of the same name, as in git; a name ending in `.lock`
is a write in progress and not a ref; symbolic refs are left out (trial refs are never symbolic).
A read is consistent: when `packed-refs` changes while the loose refs are read (a concurrent `git
pack-refs` moves loose refs into it, then deletes them), the read starts again. Repositories with
another ref backend (reftable) are not read here: `under` returns None and the caller asks pygit2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
ATTEMPTS = 3


def common_git_dir(git_dir: Path) -> Path:
    """Where a repository's refs live: its own git directory, or for a linked worktree the main
    repository's (named in the worktree's `commondir` file)."""
    pointer = git_dir / "commondir"
    try:
        named = pointer.read_text().strip()
    except OSError:
        return git_dir
    return (git_dir / named).resolve()


def uses_files_backend(config_value: str | None) -> bool:
    """Whether `extensions.refStorage` (None when unset) is git's files backend."""
    return config_value is None or config_value.strip().lower() == "files"


def parse_packed_refs(text: str, prefix: str) -> dict[str, str]:
    """Name (without `prefix`) -> object id of every packed ref under `prefix`. Peeled lines (`^id`)
    and the header (`# pack-refs with: ...`) are skipped. When the header says the file is sorted
    (git writes it so), only the lines from the first ref under `prefix` to the last are read: a
    sorted file holds them together, and a repository that shares trials holds two namespaces of
    100,000 refs each (its own and a remote's staged), of which one prefix wants one or none."""
    section = packed_section(text, prefix)
    text = text if section is None else section
    # One regular expression over the whole text: 100,000 lines in C, where a loop over them in
    # Python took twice as long (0.2 s of every read of a changed packed-refs).
    line = re.compile(rf"^({OBJECT_ID.pattern}) {re.escape(prefix)}(.*)$", re.MULTILINE)
    return {name: object_id for object_id, name in line.findall(text)}


def packed_section(text: str, prefix: str) -> str | None:
    """The lines of a sorted `packed-refs` text from its first ref under `prefix` to its last, as
    they are (`<id> <name>`, with any peeled `^<id>` lines among them); "" when none lies there,
    None when the file does not say it is sorted."""
    header, _, _ = text.partition("\n")
    if not (header.startswith("# pack-refs with:") and " sorted" in header):
        return None
    first, last = text.find(" " + prefix), text.rfind(" " + prefix)  # names hold no spaces
    if first < 0:
        return ""
    end = text.find("\n", last)
    return text[text.rfind("\n", 0, first) + 1 : end if end >= 0 else len(text)]


@dataclass(frozen=True)
class RefLayers:
    """The refs under one folder as git's files backend holds them: packed, and loose files that
    override packed refs of the same name. Invariant: `packed` is never changed once made, and a
    reader hands out the same `packed` object for as long as `packed-refs` is unchanged, so two
    reads with the same `packed` differ only where their loose refs do (see `ref_changes`)."""

    packed: Mapping[str, str]
    loose: Mapping[str, str]
    version: tuple[int, int, int] | None = None  # of the packed-refs file `packed` was read from

    def merged(self) -> dict[str, str]:
        return {**self.packed, **self.loose}


NO_REFS = RefLayers({}, {})


def ref_changes(old: RefLayers, new: RefLayers) -> tuple[dict[str, str], dict[str, str]]:
    """(removed, added) between two reads of the same folder: name -> commit of each ref gone or
    moved, and of each ref new or moved (a moved ref is in both). When both reads share their
    packed refs only the loose refs are compared, so the cost follows the loose refs (at most a
    thousand or so: the store packs beyond that), not the whole history."""
    if not old.packed and not old.loose:  # the first read: everything is new
        return {}, new.merged()
    if old.packed is new.packed:
        names = old.loose.keys() | new.loose.keys()
        before = {n: c for n in names if (c := old.loose.get(n, old.packed.get(n))) is not None}
        after = {n: c for n in names if (c := new.loose.get(n, new.packed.get(n))) is not None}
    else:
        before, after = old.merged(), new.merged()
    return dict(before.items() - after.items()), dict(after.items() - before.items())


class RefFiles:
    """The refs of one repository's files backend; keeps the parsed `packed-refs` between reads."""

    def __init__(self, git_dir: Path) -> None:
        self.common = common_git_dir(git_dir)
        self._packed: dict[str, tuple[tuple[int, int, int] | None, dict[str, str]]] = {}
        self._text: tuple[tuple[int, int, int] | None, str] | None = None
        # prefix -> path of each loose ref file under it -> (its inode, size, mtime; its content)
        self._loose: dict[str, dict[str, tuple[tuple[int, int, int], str]]] = {}

    def under(self, prefix: str) -> RefLayers | None:
        """Name (without `prefix`) -> object id of every direct ref under `prefix` (a folder, ending
        in '/'), packed and loose; None when no consistent read could be made."""
        for _ in range(ATTEMPTS):
            before, packed = self._packed_under(prefix)
            loose = self._loose_under(prefix)
            if self._packed_version() == before:
                return RefLayers(packed, loose, before)
        return None

    def lines_under(self, prefix: str) -> tuple[str, dict[str, str]] | None:
        """The packed refs under `prefix` as `packed-refs` holds them (see `packed_section`), and
        the loose ones, name (without `prefix`) -> object id: a comparison of many refs by their
        lines costs no parse. None when the file is not sorted or no consistent read was made."""
        for _ in range(ATTEMPTS):
            version = self._packed_version()
            section = packed_section(self._packed_text(version), prefix)
            if section is None:
                return None
            loose = self._loose_under(prefix)
            if self._packed_version() == version:
                return section, loose
        return None

    def seed(self, prefix: str, layers: RefLayers) -> None:
        """Take `layers.packed` as what `packed-refs` holds under `prefix` while the file is still
        the version it was read from (a read saved by an earlier process), so a later read
        hands out that very object (see `RefLayers`) and nothing is parsed."""
        fresh = layers.version is not None and layers.version == self._packed_version()
        if fresh and isinstance(layers.packed, dict):
            self._packed[prefix] = (layers.version, layers.packed)

    def target(self, name: str) -> str | None:
        """The object id the direct ref `name` points at (its loose file first, as git reads it,
        then packed-refs); None when there is no such ref or it is symbolic."""
        try:
            content = (self.common / name).read_text(encoding="utf-8", errors="replace").strip()
        except (FileNotFoundError, NotADirectoryError):
            folder, _, rest = name.rpartition("/")
            return self._packed_under(folder + "/")[1].get(rest)
        except IsADirectoryError:
            return None
        return content if OBJECT_ID.fullmatch(content) else None

    def loose_count(self, prefix: str) -> int:
        """How many loose ref files lie under `prefix` (counted, not read)."""
        return sum(
            not file.endswith(".lock")
            for _folder, _dirs, files in os.walk(self.common / prefix)
            for file in files
        )

    def _packed_version(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.common / "packed-refs")
        except OSError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _packed_under(self, prefix: str) -> tuple[tuple[int, int, int] | None, dict[str, str]]:
        version = self._packed_version()
        cached = self._packed.get(prefix)
        if cached is not None and version is not None and cached[0] == version:
            return cached
        parsed = (version, parse_packed_refs(self._packed_text(version), prefix))
        self._packed[prefix] = parsed
        return parsed

    def _packed_text(self, version: tuple[int, int, int] | None) -> str:
        """The text of `packed-refs`, read once per version (one read serves every prefix)."""
        if self._text is None or self._text[0] != version or version is None:
            try:
                text = (self.common / "packed-refs").read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._text = (version, text)
        return self._text[1]

    def _loose_under(self, prefix: str) -> dict[str, str]:
        """The loose refs under `prefix`. A file is read again only when its inode, size or
        modification time changed (git writes a ref to a new file and renames it over the old),
        so a read stats up to a thousand files rather than opening them (40 ms at 1,000 loose
        refs, several times a trial in the loop)."""
        found: dict[str, str] = {}
        known = self._loose.get(prefix, {})
        seen: dict[str, tuple[tuple[int, int, int], str]] = {}
        folders = [(os.path.join(self.common, prefix), "")]
        while folders:
            folder, relative = folders.pop()
            try:
                entries = os.scandir(folder)
            except OSError:  # no such folder (yet), or removed since it was listed
                continue
            with entries:
                for entry in entries:
                    name = relative + entry.name
                    if entry.is_dir(follow_symlinks=False):
                        folders.append((entry.path, name + "/"))
                    elif not entry.name.endswith(".lock"):
                        content = _loose_content(entry, known.get(entry.path))
                        if content is not None:
                            seen[entry.path] = content
                            if OBJECT_ID.fullmatch(content[1]):
                                found[name] = content[1]
        self._loose[prefix] = seen  # only what is there now: nothing piles up
        return found


def _loose_content(
    entry: os.DirEntry[str], known: tuple[tuple[int, int, int], str] | None
) -> tuple[tuple[int, int, int], str] | None:
    """(the file's version, its content stripped): `known` while the file is the version it was
    read from; None when it is gone (packed, or deleted) or cannot be read."""
    try:
        stat = entry.stat(follow_symlinks=False)
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if known is not None and known[0] == version:
            return known
        with open(entry.path, "rb") as handle:
            return version, handle.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return None
