"""gpt-pretrain against the published reference, on CPU: NorMuon, cautious weight decay, the
optimizer groups, BOS-aligned best-fit packing, the evaluation protocol, dtypes and batch layout."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.gpt_harness import POEMS, load_module, smoke_prepare, trains_on, write_parquet


@pytest.fixture
def prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return smoke_prepare(tmp_path, monkeypatch)


@pytest.fixture
def train(prepare: ModuleType) -> ModuleType:
    return load_module("train")


# ----- NorMuon and cautious weight decay -------------------------------------------------------------


def normuon_by_hand(
    train: ModuleType,
    param: np.ndarray,
    grad: np.ndarray,
    momentum: float,
    lr: float,
    wd: float,
    beta2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One NorMuon step from zero buffers, written out in float64; returns (new param, the update)."""
    import torch

    buffer = (1 - momentum) * grad  # lerp from zero
    nesterov = grad + momentum * (buffer - grad)
    ortho = train.orthogonalize(torch.from_numpy(nesterov).float()[None]).double().numpy()[0]
    axis = 1 if param.shape[0] >= param.shape[1] else 0  # per row when tall or square, else per column
    mean_square = (ortho**2).mean(axis=axis, keepdims=True)
    second = (1 - beta2) * mean_square
    scaled = ortho / np.sqrt(second)
    update = scaled * (np.linalg.norm(ortho) / np.linalg.norm(scaled))
    decay = np.where(update * param >= 0, param, 0.0)
    return param - lr * update - lr * wd * decay, update


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
def test_normuon_step_matches_a_hand_computation(train: ModuleType, shape: tuple[int, int]) -> None:
    import torch

    rng = np.random.default_rng(0)
    param, grad = rng.normal(size=shape), rng.normal(size=shape)
    expected, update = normuon_by_hand(train, param, grad, momentum=0.6, lr=0.1, wd=0.5, beta2=0.9)
    params = torch.tensor(param[None], dtype=torch.float32)
    rows, cols = shape
    moment = torch.zeros((1, rows, 1) if rows >= cols else (1, 1, cols))
    train.muon_step(
        torch.tensor(grad[None], dtype=torch.float32),
        params,
        torch.zeros(1, *shape),
        moment,
        0.6,
        0.1,
        0.5,
        0.9,
        5,
    )
    assert np.allclose(params[0].numpy(), expected, atol=1e-5)
    # What NorMuon is for: every row (or column) of the first update has the same RMS, and the
    # update keeps the orthogonalised matrix's norm.
    axis = 1 if rows >= cols else 0
    rms = np.sqrt((update**2).mean(axis=axis))
    assert np.allclose(rms, rms[0]) and not np.allclose(param, expected)


def test_cautious_weight_decay_only_where_update_and_param_agree(train: ModuleType) -> None:
    import torch

    rng = np.random.default_rng(1)
    param, grad = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))

    def step(wd: float) -> np.ndarray:
        params = torch.tensor(param[None], dtype=torch.float32)
        train.muon_step(
            torch.tensor(grad[None], dtype=torch.float32), params, torch.zeros(1, 6, 4), torch.zeros(1, 6, 1),
            0.0, 0.05, wd, 0.95, 5,
        )  # fmt: skip
        return params[0].double().numpy()

    _, update = normuon_by_hand(train, param, grad, momentum=0.0, lr=0.05, wd=0.0, beta2=0.95)
    agree = update * param >= 0
    assert agree.any() and (~agree).any()
    decayed = step(0.0) - step(0.4)  # what weight decay took away
    assert np.allclose(decayed[agree], 0.05 * 0.4 * param[agree], atol=1e-6)  # at the update's lr
    assert np.allclose(decayed[~agree], 0.0, atol=1e-6)  # nothing where they disagree


def test_optimizer_groups_follow_the_reference(train: ModuleType) -> None:
    model = train.GPT(4, 128, 64, 512, 32, "sdpa")
    optimizer = train.build_optimizer(model)
    groups = {id(g["params"][0]): g for g in optimizer.param_groups}
    resid, x0 = groups[id(model.resid_lambdas)], groups[id(model.x0_lambdas)]
    assert resid["lr"] == pytest.approx(train.SCALAR_LR * 0.01) and resid["betas"] == (0.8, 0.95)
    assert x0["lr"] == pytest.approx(train.SCALAR_LR) and x0["betas"] == (0.96, 0.95)
    assert groups[id(model.wte.weight)]["betas"] == (0.8, 0.95)
    muon = [g for g in optimizer.param_groups if g["kind"] == "muon"]
    assert {g["beta2"] for g in muon} == {0.95} and all(g["weight_decay"] == train.WEIGHT_DECAY for g in muon)
    in_muon = {id(p) for g in muon for p in g["params"]}
    matrices = [p for block in model.blocks for p in block.parameters() if p.ndim == 2]
    assert in_muon == {id(p) for p in matrices}  # every block matrix, the value-embedding gates too


@pytest.mark.slow
def test_compiled_optimizer_steps_agree_with_eager(train: ModuleType) -> None:
    import torch

    torch.manual_seed(0)
    eager_model = train.GPT(2, 128, 64, 512, 32, "sdpa")
    eager_model.init_weights()
    compiled_model = train.GPT(2, 128, 64, 512, 32, "sdpa")
    compiled_model.load_state_dict(eager_model.state_dict())
    eager, compiled = train.build_optimizer(eager_model), train.build_optimizer(compiled_model, compiled=True)
    for _ in range(3):
        for a, b in zip(eager_model.parameters(), compiled_model.parameters(), strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        eager.step()
        compiled.step()
    for a, b in zip(eager_model.parameters(), compiled_model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


# ----- dtypes ------------------------------------------------------------------------------------------


def test_attention_gets_one_dtype_with_bf16_activations_and_value_embeddings(
    train: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FA3 needs q, k and v in one dtype. Under bf16 autocast v once became fp32 on value-embedding
    layers (bf16 v + gate x fp32 embedding): checked here on CPU for both table dtypes."""
    import torch

    seen: list[tuple[torch.dtype, ...]] = []
    real_attend = train.attend

    def recording_attend(q, k, v, window, backend, mask=None):  # type: ignore[no-untyped-def]
        seen.append((q.dtype, k.dtype, v.dtype))
        return real_attend(q, k, v, window, "sdpa", mask)

    monkeypatch.setattr(train, "attend", recording_attend)
    model = train.GPT(2, 128, 64, 512, 32, "fa3")
    model.init_weights()
    idx = torch.randint(0, 512, (2, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(idx, idx)  # fp32 tables (the CPU default)
        model.embeddings_to(torch.bfloat16)
        block_inputs: list[torch.dtype] = []
        model.blocks[1].register_forward_pre_hook(lambda _m, args: block_inputs.append(args[0].dtype))
        loss = model(idx, idx)
    assert model.ve_layers and len(seen) == 4
    assert all(q == k == v for q, k, v in seen), seen
    assert seen[-1] == (torch.bfloat16,) * 3 and block_inputs == [torch.bfloat16]  # a bf16 residual stream
    assert math.isfinite(loss.item())


# ----- attention backends ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_flex_and_sdpa_models_agree(train: ModuleType) -> None:
    import torch

    torch.manual_seed(0)
    models: dict[str, Any] = {}
    for backend in ("sdpa", "flex"):
        model = train.GPT(4, 128, 64, 512, 128, backend)
        if backend == "sdpa":
            model.init_weights()
            for block in model.blocks:  # non-zero projections, so attention shapes the output
                torch.nn.init.normal_(block.attn.c_proj.weight, std=0.05)
        else:
            model.load_state_dict(models["sdpa"].state_dict())
        model.attention_masks(128, "cpu")
        models[backend] = model
    assert models["flex"].windows == [64, 64, 64, 128]
    idx = torch.randint(0, 512, (2, 128))
    with torch.no_grad():
        assert torch.allclose(models["flex"](idx), models["sdpa"](idx), atol=1e-4)


# ----- batch layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", range(1, 9))
def test_any_one_to_eight_devices_get_a_batch_near_the_total(train: ModuleType, world: int) -> None:
    per_device, accumulation, tokens = train.batch_layout(world, total=2**19, per_device=128, seq_len=2048)
    assert 1 <= per_device <= 128 and accumulation >= 1
    assert tokens == per_device * 2048 * world * accumulation
    assert abs(tokens - 2**19) / 2**19 < 0.02
    if 8 % world == 0:
        assert tokens == 2**19  # exact whenever the device count divides it
    assert train.batch_layout(8, total=2**19, per_device=128, seq_len=2048) == (32, 1, 2**19)
    assert train.batch_layout(1, total=2**19, per_device=128, seq_len=2048) == (128, 2, 2**19)


# ----- BOS-aligned best-fit packing --------------------------------------------------------------------

BOS = 8188


def write_split(prepare: ModuleType, split: str, documents: list[list[int]], group: int = 128) -> None:
    """A prepared split written directly: each document is [BOS, *tokens]."""
    prepare.DATA_DIR.mkdir(parents=True, exist_ok=True)
    flat = np.array([t for doc in documents for t in [BOS, *doc]], dtype=np.uint16)
    flat.tofile(prepare.DATA_DIR / f"{split}.bin")
    sizes = [min(group, len(documents) - i) for i in range(0, len(documents), group)]
    np.save(prepare.DATA_DIR / f"{split}.batches.npy", np.array(sizes, dtype=np.int64))
    (prepare.DATA_DIR / "meta.json").write_text(json.dumps({"source": "test", "bos_id": BOS}))


def test_best_fit_packing_by_hand(prepare: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "PACKING_BUFFER", 4)
    a, b, c, d = [10, 11, 12, 13], [20, 21], [30, 31, 32, 33, 34, 35, 36], [40]  # 5, 3, 8, 2 with BOS
    write_split(prepare, "train", [a, b, c, d])
    loader = prepare.PackedLoader("train", batch_size=4, seq_len=9, device="cpu")  # rows of 10
    rows = loader.next_rows().tolist()
    # Row 1: the longest that fits (c, 8); 2 left, the buffer is short, so the next pass's copies
    # come in, and the earliest 2-long document (d) fits exactly. Row 2: the same from those
    # copies. Row 3: the longest that fit are the 5-long a's, earliest first; the buffer refills
    # (a third pass) between them. Row 4: c and d of the third pass.
    assert rows[0] == [BOS, *c, BOS, *d]
    assert rows[1] == [BOS, *c, BOS, *d]
    assert rows[2] == [BOS, *a, BOS, *a]
    assert rows[3] == [BOS, *c, BOS, *d]
    assert loader.epoch == 3


def test_cropping_takes_the_shortest_earliest_document(
    prepare: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare, "PACKING_BUFFER", 3)
    long, medium, short = list(range(100, 112)), list(range(200, 208)), list(range(300, 305))  # 13, 9, 6
    write_split(prepare, "train", [long, medium, short])
    rows = prepare.PackedLoader("train", batch_size=1, seq_len=4, device="cpu").next_rows().tolist()
    assert rows == [[BOS, *short[:4]]]  # nothing fits in 5: the shortest is cropped to fill the row


def test_rows_start_with_bos_and_no_token_is_used_twice_in_a_pass(prepare: ModuleType) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, size=12_000)  # many documents: a pass is far longer than the buffer
    values = iter(v for v in range(1, 65_000) if v != BOS)
    documents = [[next(values) for _ in range(n)] for n in lengths]
    write_split(prepare, "train", documents)
    used: dict[int, list[int]] = {}
    for rank in (0, 1):
        loader = prepare.PackedLoader("train", batch_size=1, seq_len=31, device="cpu", rank=rank, world=2)
        tokens: list[int] = []
        while True:
            before = loader.epoch
            row = loader.next_rows()[0]
            if loader.epoch != before:
                break  # this row may hold documents of the next pass
            assert row[0] == BOS
            tokens += [int(t) for t in row if t != BOS]
        assert len(tokens) == len(set(tokens)) > 10_000  # no token twice within the pass
        used[rank] = tokens
    assert not set(used[0]) & set(used[1])  # ranks never share a document


# ----- the evaluation protocol -------------------------------------------------------------------------


def published_bpb(model, encoding, val_file: Path, batch_size: int, seq_len: int, eval_tokens: int) -> float:  # type: ignore[no-untyped-def]
    """The published protocol, written independently of prepare.py: documents read per parquet row
    group in batches of 128, BOS prepended; a buffer of at least 1000 documents; each row of T + 1
    filled by the largest document that fits (first on ties), else the shortest one cropped; token
    bytes from each token decoded alone and re-encoded; specials count zero bytes."""
    import torch

    bos = encoding.encode_single_token("<|reserved_0|>")
    specials = set(encoding.special_tokens_set)

    def batches() -> Iterator[list[str]]:
        while True:
            parquet = pq.ParquetFile(val_file)
            for g in range(parquet.num_row_groups):
                texts = parquet.read_row_group(g).column("text").to_pylist()
                for i in range(0, len(texts), 128):
                    yield texts[i : i + 128]

    source, buffer = batches(), list[list[int]]()
    token_bytes = []
    for i in range(encoding.n_vocab):
        text = encoding.decode([i])
        token_bytes.append(0 if text in specials else len(text.encode("utf-8")))
    nats, nbytes = 0.0, 0
    for _ in range(eval_tokens // (batch_size * seq_len)):
        rows = []
        for _ in range(batch_size):
            row: list[int] = []
            while len(row) < seq_len + 1:
                while len(buffer) < 1000:
                    buffer += [[bos, *ids] for ids in encoding.encode_ordinary_batch(next(source))]
                room = seq_len + 1 - len(row)
                best = -1
                for i, doc in enumerate(buffer):
                    if len(doc) <= room and (best < 0 or len(doc) > len(buffer[best])):
                        best = i
                if best >= 0:
                    row += buffer.pop(best)
                else:
                    shortest = min(range(len(buffer)), key=lambda i: len(buffer[i]))
                    row += buffer.pop(shortest)[:room]
            rows.append(row)
        batch = torch.tensor(rows)
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.no_grad():
            loss = model(x, y, reduction="none").double().reshape(-1)
        counted = torch.tensor([token_bytes[t] for t in y.reshape(-1).tolist()], dtype=torch.float64)
        nats += float((loss * (counted > 0)).sum())
        nbytes += int(counted.sum())
    return nats / (math.log(2) * nbytes)


def test_evaluation_equals_the_published_protocol(
    prepare: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    stanzas = [s for poem in POEMS for s in poem.split("\n  ")]  # many short documents, a few long
    train_file = write_parquet(tmp_path / "train.parquet", POEMS)
    val_file = tmp_path / "val.parquet"
    pq.write_table(
        pa.table({"text": stanzas[:700]}), val_file, row_group_size=300
    )  # read as 128, 128, 44, ...
    prepare = trains_on(monkeypatch, [train_file, val_file])
    prepare.prepare([str(train_file), str(val_file)])
    encoding = prepare.load_tokenizer()

    torch.manual_seed(0)

    class Bigram(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Embedding(8192, 8192)

        def forward(self, x, y, reduction="mean"):  # type: ignore[no-untyped-def]
            logits = self.table(x).float()
            return torch.nn.functional.cross_entropy(
                logits.view(-1, 8192), y.reshape(-1), reduction=reduction
            )

    model = Bigram()
    ours = prepare.evaluate_bpb(model, batch_size=4, device="cpu")
    theirs = published_bpb(model, encoding, val_file, 4, prepare.MAX_SEQ_LEN, prepare.EVAL_TOKENS)
    assert ours.val_bpb == pytest.approx(theirs, rel=1e-6)
    assert prepare.evaluate_bpb(model, batch_size=4, device="cpu") == ours  # deterministic
    assert ours.raw_bytes_bpb > 0
