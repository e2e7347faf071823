"""Schedules over a time-budgeted run. `progress` is the fraction of the training budget spent (0..1):
with a fixed wall-clock budget, time, not steps, is what every trial has the same amount of.

Editable: a strategy may reshape any of these.
"""


def lr_multiplier(progress: float, warmup_ratio: float, warmdown_ratio: float, final_lr_frac: float) -> float:
    """Linear warmup, flat, then linear warmdown to `final_lr_frac` of the peak."""
    if warmup_ratio > 0 and progress < warmup_ratio:
        return (progress + 1e-8) / warmup_ratio
    if warmdown_ratio > 0 and progress > 1.0 - warmdown_ratio:
        remaining = max(0.0, 1.0 - progress) / warmdown_ratio
        return final_lr_frac + (1.0 - final_lr_frac) * remaining
    return 1.0


def muon_momentum(step: int, start: float = 0.85, end: float = 0.95, warmup_steps: int = 300) -> float:
    """Muon's momentum ramps up over the first steps, while the weights move fastest."""
    fraction = min(step / warmup_steps, 1.0)
    return start + (end - start) * fraction


def weight_decay_multiplier(progress: float) -> float:
    """Weight decay fades out with training, so the last steps fit the data rather than shrink."""
    return max(0.0, 1.0 - progress)
