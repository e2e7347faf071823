"""One derived file: its declaration, its schema fingerprint and its crash-safe, checksummed I/O.

A derived file is never the source of truth: it is computed from the refs and notes (or from a
remote's listing) to save time, and can be deleted at any moment. So every read trusts nothing: a
file that is missing, not a regular file, of another schema, cut short or changed by one byte reads
as absent, and the caller rebuilds it from the state. Every write goes to a temporary file renamed
over the old one, so a kill -9 mid-write leaves the old file or the new one, never half of one.

The schema fingerprint: a file holds pickled objects, and a pickle of a class rebuilt by position
(`TrialNote.__reduce__`) loads values into the wrong fields once a field is inserted before them.
The fingerprint is a digest of the declaration's format number and of every field (name and type,
in order) of each class it names, and every member of each enum; it is written in the header and
compared on read, so adding, moving or retyping a field of a note throws old files away by itself,
with no version to remember to bump.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import os
import pickle
import struct
import tempfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from skylab.store.regularfile import read_regular_file

FILE_MAGIC = b"skylab derived file\n"  # then the fingerprint and the payload's CRC-32, then the payload
HEADER = struct.Struct("<32sI")
# What reading a derived file can raise: missing or unreadable, not a pickle, or a pickle of what
# this version does not define.
UNREADABLE = (
    OSError,
    ValueError,
    EOFError,
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
    IndexError,
    TypeError,
)


def schema_lines(kinds: tuple[type, ...]) -> list[str]:
    """A line per class of `kinds` naming what its pickles depend on: a dataclass's fields in
    order with their types, an enum's members with their values, else what its constructor
    takes (names, types and defaults, in order)."""
    lines = []
    for kind in kinds:
        name = f"{kind.__module__}.{kind.__qualname__}"
        if dataclasses.is_dataclass(kind):
            described = [f"{f.name}: {f.type}" for f in dataclasses.fields(kind)]
        elif issubclass(kind, enum.Enum):
            described = [f"{member.name}={member.value!r}" for member in kind]
        else:
            described = [str(p) for p in inspect.signature(kind.__init__).parameters.values()]
        lines.append(f"{name}({', '.join(described)})")
    return lines


@dataclass(frozen=True)
class DerivedFile:
    """The declaration of one derived file under `.git/skylab/` (or a folder of them, one per key).

    `format` is raised by hand only when what the file holds is computed differently with the
    same classes; a change to the classes in `schema` changes the fingerprint by itself."""

    name: str  # the file's (or folder's) name under .git/skylab
    job: str  # what it saves, in words
    format: int
    schema: tuple[type, ...]  # the classes pickled in it
    dropped_when: str  # when it is thrown away or pruned, in words
    max_bytes: int  # a payload larger than this is not written (and the old file is removed)
    per_key: bool = False  # a folder holding one file per key (a remote each)

    @cached_property
    def fingerprint(self) -> bytes:
        text = "\n".join([self.name, str(self.format), *schema_lines(self.schema)])
        return hashlib.sha256(text.encode()).digest()

    def path(self, skylab_dir: Path, key: str | None = None) -> Path:
        if self.per_key != (key is not None):
            raise ValueError(f"{self.name}: a key is {'needed' if self.per_key else 'not taken'}")
        return skylab_dir / self.name / key if key is not None else skylab_dir / self.name

    def load(self, skylab_dir: Path, key: str | None = None) -> object | None:
        """What `save` wrote; None when the file is missing, unreadable, of another schema or
        damaged: a payload that does not match its checksum is not unpickled, since a changed
        byte inside it can read as another value (a note, a commit id, a line of JSON) rather
        than fail. (Read, not mapped: a file cut short by someone else while mapped would kill
        the process with SIGBUS. Only a regular file is read: see regularfile.)"""
        try:
            data = read_regular_file(self.path(skylab_dir, key))
            if data is None:
                return None
            start = len(FILE_MAGIC) + HEADER.size
            if not data.startswith(FILE_MAGIC) or len(data) < start:
                return None
            fingerprint, crc = HEADER.unpack_from(data, len(FILE_MAGIC))
            if fingerprint != self.fingerprint:
                return None
            with memoryview(data) as view, view[start:] as payload:
                if zlib.crc32(payload) != crc:
                    return None
                value: object = pickle.loads(payload)
                return value
        except UNREADABLE:
            return None

    def save(self, skylab_dir: Path, value: object, key: str | None = None) -> None:
        """Write `value` atomically behind the header; a value over the size bound removes the
        file instead. A failure to write (a read-only repository) only costs the next reader its
        speed."""
        path = self.path(skylab_dir, key)
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            if len(payload) > self.max_bytes:
                path.unlink(missing_ok=True)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(FILE_MAGIC + HEADER.pack(self.fingerprint, zlib.crc32(payload)))
                    out.write(payload)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError:
            return

    def present(self, skylab_dir: Path) -> bool:
        """Whether anything lies under its name: the file, or a temporary one a killed writer left."""
        return bool(self._paths(skylab_dir))

    def size(self, skylab_dir: Path) -> int:
        """The bytes of what lies under its name (regular files only)."""
        return sum(_size(path) for path in self._paths(skylab_dir))

    def _paths(self, skylab_dir: Path) -> list[Path]:
        target = skylab_dir / self.name
        found = list(skylab_dir.glob(f".{self.name}.*.tmp")) if skylab_dir.is_dir() else []
        return [*found, target] if target.exists() or target.is_symlink() else found

    def drop(self, skylab_dir: Path) -> int:
        """Remove the file (every file of a per-key folder) and any temporary file a killed writer
        left; return the bytes freed. Whatever is there under its name goes, a directory or a
        FIFO included: nothing under it is state."""
        return sum(_remove(path) for path in self._paths(skylab_dir))


def _size(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(_size(child) for child in path.iterdir())
        return path.lstat().st_size if path.is_file() and not path.is_symlink() else 0
    except OSError:
        return 0


def _remove(path: Path) -> int:
    """Remove `path` whatever it is (a file, a link, a FIFO, a directory tree); its bytes."""
    try:
        if path.is_dir() and not path.is_symlink():
            freed = sum(_remove(child) for child in path.iterdir())
            path.rmdir()
            return freed
        size = _size(path)
        path.unlink()
        return size
    except FileNotFoundError:
        return 0
