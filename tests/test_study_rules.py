"""The pure rules of the studies, on histories built by hand: a change's contribution and whether it
clears the noise bar, and whether a win holds at a longer budget."""

from __future__ import annotations

from skylab.loop.evidence import Rules
from skylab.store.history import History, Trial
from skylab.store.notes import Decision, Status, TrialNote
from skylab.studies.ablation import contributions, kept_changes
from skylab.studies.confirmation import scale_checks

NOISY = Rules("minimize", noise_samples=3, confirm=2, sigmas=2.0)


def trial(
    number: int,
    parent: int | None,
    values: list[float],
    strategy: str = "sweep",
    status: Status = Status.SUCCESS,
    kept: bool = True,
    **other: str,
) -> Trial:
    note = TrialNote(
        number,
        "t",
        status,
        Decision.KEEP if kept else Decision.REVERT,
        "val_bpb",
        value=sum(values) / len(values) if values else None,
        strategy=strategy,
        parent="" if parent is None else f"{parent:040d}",
        started_at=f"2026-11-26T00:00:{number:02d}Z",
        description=f"change {number}",
        measurements=list(values),
        other=dict(other),
    )
    return Trial("t", number, f"{number:040d}", note)


def history(*trials: Trial) -> History:
    return History(list(trials), None, None, {})


def test_contributions_are_sorted_and_flag_what_does_not_clear_the_noise_bar() -> None:
    """σ is pooled over every repeated commit of the run (here 0.01 from the start's spread); a
    contribution counts only beyond 2σ·se, se = σ·sqrt(1/3 + 1/3) ≈ 0.0082."""
    chain = [
        trial(1, None, [3.00, 3.01, 2.99]),  # the start
        trial(2, 1, [2.80, 2.81, 2.79]),
        trial(3, 2, [2.79, 2.80, 2.78]),
        trial(4, 3, [2.70, 2.71, 2.69]),  # the best
    ]
    ablations = [
        trial(5, 4, [2.80, 2.81, 2.79], "ablation", kept=False, ablates="t/2", ablation_of="t/4"),
        trial(6, 4, [2.705, 2.715, 2.695], "ablation", kept=False, ablates="t/3", ablation_of="t/4"),
        trial(7, 4, [], "ablation", Status.CRASH, kept=False, ablates="t/4", ablation_of="t/4"),
    ]
    found = history(*chain, *ablations)
    assert [t.name for t in kept_changes(found, chain[-1])] == ["t/2", "t/3", "t/4"]
    rows = contributions(found, chain[-1], NOISY)
    assert [r.change for r in rows] == ["t/4", "t/2", "t/3"]  # a crash without it first, then by size
    crash, big, small = rows
    assert (
        crash.gap is None
        and not crash.flagged
        and crash.verdict() == "needed: without it the trial ends in crash"
    )
    assert big.gap is not None and round(big.gap.gain, 6) == 0.1 and big.verdict() == "helps, beyond noise"
    assert small.gap is not None and round(small.gap.gain, 6) == 0.005 and small.flagged
    assert round(small.gap.se or 0, 4) == 0.0082 and small.verdict().startswith("within noise")


def test_a_later_ablation_of_the_same_change_replaces_the_earlier() -> None:
    start, best = trial(1, None, [3.0]), trial(2, 1, [2.0])
    old = trial(3, 2, [2.5], "ablation", kept=False, ablates="t/2", ablation_of="t/2")
    new = trial(4, 2, [1.9], "ablation", kept=False, ablates="t/2", ablation_of="t/2")
    (row,) = contributions(history(start, best, old, new), best, Rules("minimize"))
    assert row.ablation == "t/4" and row.verdict() == "hurts: the trial is better without it"


def test_scale_checks_say_holds_within_noise_or_reverses() -> None:
    start, best = trial(1, None, [3.00, 3.01, 2.99]), trial(2, 1, [2.90, 2.91, 2.89])

    def at(scale: str, ours: list[float], theirs: list[float]) -> list[Trial]:
        base = 10 * int(scale)
        ended = Status.SUCCESS if theirs else Status.CRASH
        return [
            trial(base, 2, ours, "confirm", kept=False, scale=scale, confirms="t/2", confirmation_of="t/2"),
            trial(
                base + 1,
                1,
                theirs,
                "confirm",
                ended,
                False,
                scale=scale,
                confirms="t/1",
                confirmation_of="t/2",
            ),
        ]

    found = history(
        start,
        best,
        *at("2", [2.50, 2.51, 2.49], [2.60, 2.61, 2.59]),  # holds: 0.1 apart, σ 0.01
        *at("4", [2.400, 2.410, 2.390], [2.405, 2.415, 2.395]),  # within noise
        *at("16", [2.3], []),  # the start crashed at 16×
    )
    checks = scale_checks(found, best, NOISY)
    assert [(c.scale, c.verdict()) for c in checks] == [
        ("2", "holds at 2×"),
        ("4", "does not hold at 4×: within noise of the starting point"),
        ("16", "unknown at 16×: t/161 ended in crash"),
    ]
    assert (
        round(checks[0].at_1.gain, 6) == 0.1
        and checks[0].at_k is not None
        and round(checks[0].at_k.gain, 6) == 0.1
    )
