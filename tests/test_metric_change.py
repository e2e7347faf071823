"""A metric changed in experiment.toml: no value of the new metric is ever compared with notes
that measured the old one."""

from __future__ import annotations

from pathlib import Path

from skylab.store.gitstore import TrialStore
from tests.loop_experiment import make_loop_experiment
from tests.test_loop import orchestrate


def test_a_changed_metric_is_never_compared_with_notes_of_the_old_one(tmp_path: Path) -> None:
    exp = make_loop_experiment(tmp_path / "q", parameters="X = [0, 1]")
    orchestrate(exp)  # val_bpb 11.0, then 6.0 kept: the best
    config = exp / "experiment.toml"
    text = config.read_text().replace('metric = "val_bpb"', 'metric = "mfu_percent"')
    text = text.replace('direction = "minimize"', 'direction = "maximize"').replace(
        "X = [0, 1]", "X = [1, 2]"
    )
    config.write_text(text)
    _, log = orchestrate(exp)
    store = TrialStore.open(exp)
    *_, first = store.load().trials
    assert first.note is not None and first.note.metric == "mfu_percent" and first.value == 12.5
    # 12.5 % MFU is not "6.5 better" than 6.0 bits per byte: it is the first result of its metric.
    assert first.note.verdict == "the run's first measured result: its reference"
    assert "+6.5" not in log and "improvement" not in first.note.verdict
    assert store.best() == first.commit  # the best of all now measures what the experiment does
