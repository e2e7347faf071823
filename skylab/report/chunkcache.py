"""Output built in chunks of trials and kept between commands, under a key of what each is built from.

Between two reports (or two `skylab history --json`) of a running search only the last chunk of
trials changes, yet building all of them was most of the command's time at 100,000 trials. So each
built chunk is kept in a file of `.git/skylab/`, under a key made of everything it is built from; a
chunk whose key is known (and, for what a key cannot name, that `still_valid` accepts) is reused as
it is. Such a file is derived like the history cache: safe to delete, rebuilt when unreadable or of
another format version, written atomically.
"""

from __future__ import annotations

import hashlib
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from skylab.store.historycache import load_pickled, save_pickled

KEPT_CHUNKS = 300  # chunks kept beyond those used now (another tag's, an older report's), by default

Chunk = TypeVar("Chunk")


def chunk_keys(first: str, columns: list[list[str]], chunk: int) -> list[str]:
    """A key per `chunk` trials, made of the line `first` (what every chunk is built with: a
    format version) and each trial's value in every column (one string per trial each, naming all
    its chunk is built from; none holding a newline). Hashed column by column: joining a line per
    trial first took five times as long at 100,000 trials."""
    keys = []
    for start in range(0, len(columns[0]) if columns else 0, chunk):
        digest = hashlib.sha256(first.encode())
        for column in columns:
            digest.update(b"\n\0" + "\n".join(column[start : start + chunk]).encode())
        keys.append(digest.hexdigest())
    return keys


def reused_chunks(
    path: Path,
    version: int,
    keys: list[str],
    build: Callable[[list[int]], list[Chunk]],
    still_valid: Callable[[Chunk], bool] = lambda _chunk: True,
    kept_beyond: int = KEPT_CHUNKS,
) -> list[Chunk]:
    """The chunk of each key: kept ones reused, the others built by `build` (given their places
    in `keys`, all at once), then the file rewritten with those of this call first and up to
    `kept_beyond` of the others, the most recent first. Each is kept pickled beside its CRC-32: a
    kept chunk that does not match it (a changed byte would print as changed output) is built
    again like an unknown one."""
    cached = load_pickled(path, version)
    stored: dict[str, Stored] = cached if isinstance(cached, dict) else {}
    found = {key: chunk for key in keys if (chunk := _intact(stored.get(key))) is not None}
    missing = [at for at, key in enumerate(keys) if key not in found or not still_valid(found[key])]
    fresh = dict(zip((keys[at] for at in missing), build(missing) if missing else [], strict=True))
    if fresh:
        kept = {key: _stored(fresh[key]) if key in fresh else stored[key] for key in keys}
        for key, entry in reversed(stored.items()):
            if len(kept) >= len(keys) + kept_beyond:
                break
            kept.setdefault(key, entry)
        save_pickled(path, version, kept)
    return [fresh[key] if key in fresh else found[key] for key in keys]


Stored = tuple[int, bytes]  # a chunk as kept: the CRC-32 of its pickle, and the pickle


def _stored(chunk: object) -> Stored:
    data = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
    return (zlib.crc32(data), data)


def _intact(entry: object) -> Any:
    """The chunk kept as `entry`; None when there is none, or it does not match its checksum."""
    if not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[1], bytes):
        return None
    crc, data = entry
    if zlib.crc32(data) != crc:
        return None
    try:
        return pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError):
        return None
