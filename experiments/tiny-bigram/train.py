"""Byte-level bigram language model, trained with Adam for prepare.TIME_BUDGET seconds (numpy only).

Every knob is a module-level constant so that a sweep or an agent can edit it.
"""

import os
import time

import numpy as np
from prepare import TIME_BUDGET, VOCAB_SIZE, evaluate_bpb, load_splits

LEARNING_RATE = 0.1
BATCH_SIZE = 1024
WEIGHT_DECAY = 0.0
INIT_SCALE = 0.01
BETA1 = 0.9
BETA2 = 0.99
SEED = 0  # measurement k of a trial runs with SKYLAB_SEED=k, added to this (see skylab's [decision])
PRINT_EVERY = 100


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def main() -> None:
    started = time.time()
    rng = np.random.default_rng(SEED + int(os.environ.get("SKYLAB_SEED", "0")))
    train, val = load_splits()
    weights = rng.normal(0.0, INIT_SCALE, (VOCAB_SIZE, VOCAB_SIZE))
    first_moment = np.zeros_like(weights)
    second_moment = np.zeros_like(weights)
    rows = np.arange(BATCH_SIZE)

    step = 0
    train_start = time.time()
    while time.time() - train_start < TIME_BUDGET:
        positions = rng.integers(0, len(train) - 1, BATCH_SIZE)
        current, following = train[positions], train[positions + 1]
        log_probs = log_softmax(weights[current])
        loss = -log_probs[rows, following].mean()

        grad_logits = np.exp(log_probs)
        grad_logits[rows, following] -= 1.0
        grad = np.zeros_like(weights)
        np.add.at(grad, current, grad_logits / BATCH_SIZE)
        grad += WEIGHT_DECAY * weights

        step += 1
        first_moment = BETA1 * first_moment + (1 - BETA1) * grad
        second_moment = BETA2 * second_moment + (1 - BETA2) * grad**2
        corrected_first = first_moment / (1 - BETA1**step)
        corrected_second = second_moment / (1 - BETA2**step)
        weights -= LEARNING_RATE * corrected_first / (np.sqrt(corrected_second) + 1e-8)

        if step % PRINT_EVERY == 0:
            elapsed = time.time() - train_start
            print(
                f"step {step:05d} | loss {loss:.4f} | lr {LEARNING_RATE:g} | elapsed {elapsed:.1f}s",
                flush=True,
            )

    training_seconds = time.time() - train_start
    val_bpb = evaluate_bpb(log_softmax(weights), val)
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.time() - started:.1f}")
    print(f"peak_vram_mb:     {0.0:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {weights.size / 1e6:.3f}")


if __name__ == "__main__":
    main()
