"""Frozen harness of the tiny-bigram experiment: the data, the split and the metric.

Trials may change train.py only; everything here is the fixed rules of the game.
"""

import math
import os
from pathlib import Path

import numpy as np

# Seconds of training per trial: Skylab passes experiment.toml's time_budget_seconds as SKYLAB_TIME_BUDGET.
TIME_BUDGET = float(os.environ.get("SKYLAB_TIME_BUDGET") or 5.0)
VOCAB_SIZE = 256  # one token per byte, so bits per token are bits per byte
VAL_FRACTION = 0.1
DATA_FILE = Path(__file__).resolve().parent / "data" / "sonnets.txt"


def load_splits() -> tuple[np.ndarray, np.ndarray]:
    """Train and validation byte streams: the last VAL_FRACTION of the text is validation."""
    data = np.frombuffer(DATA_FILE.read_bytes(), dtype=np.uint8)
    split = int(len(data) * (1 - VAL_FRACTION))
    return data[:split], data[split:]


def evaluate_bpb(log_probs: np.ndarray, val: np.ndarray) -> float:
    """Bits per byte of the validation text; log_probs[a, b] is log p(next byte b | byte a) in nats."""
    assert log_probs.shape == (VOCAB_SIZE, VOCAB_SIZE)
    nats = -log_probs[val[:-1], val[1:]].astype(np.float64).sum()
    return float(nats / (math.log(2) * (len(val) - 1)))
