"""bench/gpu.sh's argument checks and bench/gpu_record.py's row, from real training logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "bench" / "gpu-logs"


def record(log: Path, table: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_record.py"), str(log), "--table", str(table), *args],
        capture_output=True,
        text=True,
    )


def test_a_measured_log_becomes_one_row(tmp_path: Path) -> None:
    log = next(LOGS.glob("*065620Z*.log"))  # the 300 s H200 run
    table = tmp_path / "gpu.md"
    result = record(log, table, "--label", "again")
    assert result.returncode == 0, result.stderr
    cells = [c.strip() for c in table.read_text().splitlines()[-1].strip("|").split("|")]
    assert cells[1:11] == [
        "template",
        "NVIDIA H200",
        "flex",
        "300",
        "921",
        "1,592,885",
        "38.47",
        "45053.2",
        "5.490538",
        "5.490538",
    ]
    assert cells[-1] == "again" and table.read_text().startswith("# gpt-pretrain on a GPU")
    record(log, table)
    assert len([line for line in table.read_text().splitlines() if line.startswith("| 20")]) == 2


def test_a_failed_run_still_gets_a_row_with_the_logged_median(tmp_path: Path) -> None:
    lines = [
        f"step {s:05d} | loss 3.0 | lr 1.000 | tok/s {rate:,} | mfu 30.0% | epoch 1 | train 1.0s/300s"
        for s, rate in [(10, 5), (20, 100), (30, 300), (40, 200)]
    ]
    log = tmp_path / "cut.log"
    log.write_text(
        "\n".join([*lines, "Traceback (most recent call last):", "RuntimeError: CUDA out of memory"])
    )
    table = tmp_path / "gpu.md"
    assert record(log, table).returncode == 0
    row = table.read_text().splitlines()[-1]
    assert "| 200 |" in row and "no summary: the run failed" in row  # median of steps 20, 30, 40


def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["--attention", "xformers"], ["--budget", "5m"], ["--frobnicate"]):
        result = subprocess.run(
            ["bash", str(ROOT / "bench" / "gpu.sh"), *args], capture_output=True, text=True
        )
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    missing = record(tmp_path / "nope.log", tmp_path / "gpu.md")
    assert missing.returncode == 2 and "no such log" in missing.stderr


REFERENCE_STYLE_TRAIN = """
import time
import torch
from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, evaluate_bpb, make_dataloader

tokenizer = Tokenizer.from_directory()
vocab = tokenizer.get_vocab_size()
loader = make_dataloader(tokenizer, 4, MAX_SEQ_LEN, "train")
x, y, epoch = next(loader)
assert (x[:, 0] == tokenizer.get_bos_token_id()).all()


class Bigram(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, x, y, reduction="mean"):
        logits = self.table(x)
        return torch.nn.functional.cross_entropy(logits.view(-1, vocab), y.reshape(-1), reduction=reduction)


torch.manual_seed(0)
model = Bigram()
optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
print(f"Time budget: {TIME_BUDGET}s")
for step in range(1, 21):
    loss = model(x, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    x, y, epoch = next(loader)
    print(f"step {step:05d} | loss {loss.item():.4f} | tok/s {4 * MAX_SEQ_LEN * 100:,} |")
print("---")
print(f"val_bpb:          {evaluate_bpb(model, tokenizer, 4):.6f}")
print(f"num_steps:        20")
"""


@pytest.mark.slow
def test_reference_mode_trains_a_reference_style_train_py_on_the_same_data(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    corpus = tmp_path / "sonnets.txt"
    corpus.write_text((ROOT / "experiments/tiny-bigram/data/sonnets.txt").read_text())
    env = {
        **os.environ,
        "SKYLAB_CACHE": str(cache),
        "SKYLAB_PROFILE": "smoke",
        "SKYLAB_DATA": str(corpus),
        "PYTHON": sys.executable,
    }
    prepared = subprocess.run(
        [sys.executable, "prepare.py", "--source", str(corpus)],
        cwd=ROOT / "experiments/gpt-pretrain",
        env=env,
        capture_output=True,
        text=True,
    )
    assert prepared.returncode == 0, prepared.stderr
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "train.py").write_text(REFERENCE_STYLE_TRAIN)
    table, logs = tmp_path / "gpu.md", tmp_path / "logs"
    args = ["--reference", str(reference), "--skip-template", "--table", str(table), "--logs", str(logs)]
    result = subprocess.run(
        ["bash", str(ROOT / "bench/gpu.sh"), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    row = [c.strip() for c in table.read_text().splitlines()[-1].strip("|").split("|")]
    assert row[1] == "reference" and row[4] == "5" and row[5] == "20"  # the smoke budget, from its log
    assert 0 < float(row[9]) < 20
    assert len(list(logs.glob("*-reference.log"))) == 1
