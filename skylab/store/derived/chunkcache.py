"""Output built in chunks of trials and kept between commands, under a key of what each is built from.

Between two reports (or two `skylab history --json`) of a running search only the last chunk of
trials changes, yet building all of them was most of the command's time at 100,000 trials. So each
built chunk is kept in a file of `.git/skylab/`, under a key made of everything it is built from; a
chunk whose key is known (and, for what a key cannot name, that `still_valid` accepts) is reused as
it is. Such a file is derived like the history cache: safe to delete, rebuilt when unreadable or of
another schema, written atomically (see `derivedfile`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from skylab.store.derived.derivedfile import DerivedFile

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
    file: DerivedFile,
    skylab_dir: Path,
    keys: list[str],
    build: Callable[[list[int]], list[Chunk]],
    still_valid: Callable[[Chunk], bool] = lambda _chunk: True,
    kept_beyond: int = KEPT_CHUNKS,
) -> list[Chunk]:
    """The chunk of each key: kept ones reused, the others built by `build` (given their places
    in `keys`, all at once), then the file rewritten with those of this call first and up to
    `kept_beyond` of the others, the most recent first."""
    cached = file.load(skylab_dir)
    known: dict[str, Chunk] = cached if isinstance(cached, dict) else {}
    missing = [at for at, key in enumerate(keys) if key not in known or not still_valid(known[key])]
    fresh = dict(zip((keys[at] for at in missing), build(missing) if missing else [], strict=True))
    chunks = [fresh[key] if key in fresh else known[key] for key in keys]
    if fresh:
        kept = dict(zip(keys, chunks, strict=True))
        for key, chunk in reversed(known.items()):
            if len(kept) >= len(keys) + kept_beyond:
                break
            kept.setdefault(key, chunk)
        file.save(skylab_dir, kept)
    return chunks
