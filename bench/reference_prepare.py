"""The published reference's `prepare` interface on top of gpt-pretrain's prepared data.

`bench/gpu.sh --reference DIR` copies this file as `prepare.py` beside the reference's own train.py
(and the template's prepare.py beside it as `skylab_prepare.py`), so the reference trains and is
evaluated on exactly the data, tokenizer, packing and metric that the template uses:

    MAX_SEQ_LEN, TIME_BUDGET, EVAL_TOKENS, VOCAB_SIZE
    Tokenizer.from_directory(), .get_vocab_size(), .get_bos_token_id(), .encode(), .decode()
    make_dataloader(tokenizer, B, T, split) -> yields (inputs, targets, epoch) on the GPU
    evaluate_bpb(model, tokenizer, batch_size) -> val_bpb
    get_token_bytes(device)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import skylab_prepare as harness  # type: ignore[import-not-found]  # the template, renamed beside it

MAX_SEQ_LEN = harness.MAX_SEQ_LEN
TIME_BUDGET = harness.TIME_BUDGET
EVAL_TOKENS = harness.EVAL_TOKENS
VOCAB_SIZE = harness.VOCAB_SIZE


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Tokenizer:
    def __init__(self, encoding: Any) -> None:
        self.enc = encoding
        self.bos_token_id = encoding.encode_single_token(harness.BOS_TOKEN)

    @classmethod
    def from_directory(cls, directory: Any = None) -> Tokenizer:
        return cls(harness.load_tokenizer())

    def get_vocab_size(self) -> int:
        return int(self.enc.n_vocab)

    def get_bos_token_id(self) -> int:
        return int(self.bos_token_id)

    def encode(self, text: str | list[str], prepend: int | None = None, num_threads: int = 8) -> Any:
        if isinstance(text, str):
            ids = self.enc.encode_ordinary(text)
            return ids if prepend is None else [prepend, *ids]
        rows = self.enc.encode_ordinary_batch(text, num_threads=num_threads)
        return rows if prepend is None else [[prepend, *row] for row in rows]

    def decode(self, ids: list[int]) -> str:
        return str(self.enc.decode(ids))


def get_token_bytes(device: str = "cpu") -> Any:
    import torch

    return torch.from_numpy(np.load(harness.DATA_DIR / "token_bytes.npy")).to(device)


def make_dataloader(
    tokenizer: Tokenizer, B: int, T: int, split: str, **_: Any
) -> Iterator[tuple[Any, Any, int]]:
    loader = harness.PackedLoader(split, B, T, _device())
    while True:
        x, y = loader.next_batch()
        yield x, y, loader.epoch


def evaluate_bpb(model: Any, tokenizer: Tokenizer, batch_size: int) -> float:
    return float(harness.evaluate_bpb(model, batch_size, _device()).val_bpb)
