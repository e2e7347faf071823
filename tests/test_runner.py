from __future__ import annotations

import sys
import time
from pathlib import Path

from skylab.runner import RunResult, TrialRequest
from skylab.runner.local import LocalRunner
from skylab.store.notes import Status


def run(
    tmp_path: Path, script: str, limit: float = 20, gpu: str | None = None, grace: float = 10
) -> tuple[RunResult, list[str]]:
    (tmp_path / "train.py").write_text(script)
    lines: list[str] = []
    runner = LocalRunner(gpu=gpu, kill_grace=grace)
    result = runner.run(
        TrialRequest(tmp_path, "python train.py", "val_bpb", limit, tmp_path / "logs" / "1.log", lines.append)
    )
    return result, lines


def test_success_parses_the_summary_and_streams_lines(tmp_path: Path) -> None:
    script = 'print("step 1 | loss 2.0")\nprint("---")\n'
    script += 'print("val_bpb:          0.9979")\nprint("peak_vram_mb: 512.5")\n'
    result, lines = run(tmp_path, script + 'print("training_seconds: 300.1")\nprint("mfu_percent: 39.8")\n')
    assert result.status is Status.SUCCESS and result.value == 0.9979
    assert result.peak_vram_mb == 512.5 and result.train_seconds == 300.1
    assert result.summary["mfu_percent"] == 39.8
    assert lines[0] == "step 1 | loss 2.0"
    assert "val_bpb" in (tmp_path / "logs" / "1.log").read_text()


def test_missing_metric_is_a_crash(tmp_path: Path) -> None:
    result, _ = run(tmp_path, 'print("---")\nprint("loss: 3")\n')
    assert result.status is Status.CRASH and "printed no val_bpb" in result.reason


def test_non_zero_exit_is_a_crash_with_the_log_tail(tmp_path: Path) -> None:
    result, _ = run(tmp_path, 'import sys\nprint("---\\nval_bpb: 1.0")\nsys.exit("Traceback: boom")\n')
    assert result.status is Status.CRASH and result.exit_code == 1
    assert "boom" in result.log_tail


def test_timeout_escalates_to_sigkill_for_a_process_ignoring_sigterm(tmp_path: Path) -> None:
    script = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    script += "print('up', flush=True)\ntime.sleep(60)\n"
    started = time.monotonic()
    result, _ = run(tmp_path, script, limit=1, grace=0.5)
    assert result.status is Status.TIMEOUT and "wall-time limit" in result.reason
    assert time.monotonic() - started < 10


def test_gpu_is_pinned_and_python_is_skylabs(tmp_path: Path) -> None:
    script = 'import os, sys\nprint("---")\nprint("val_bpb: 1")\n'
    script += 'print("gpu:", os.environ["CUDA_VISIBLE_DEVICES"])\n'
    result, _ = run(tmp_path, script + 'print("exe:", sys.executable)\n', gpu="3")
    assert result.summary["gpu"] == 3.0
    assert Path(str(result.summary["exe"])).parent == Path(sys.executable).parent
