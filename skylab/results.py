"""What a researcher does with the results: bring a trial into their checkout, branch from it,
compare two trials, ablate its kept changes, confirm it at a longer budget. Reads through the store;
writes refs only through it; writes the checkout's editable files only when they hold no uncommitted
edit, unless forced; trains only through `session.run_session`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from skylab.errors import SkylabError
from skylab.experiment.config import ExperimentConfig, experiment_file
from skylab.loop.forward import RunLine, run_best
from skylab.loop.jobs import Job, RunOutcome
from skylab.loop.judge import rules_for
from skylab.report.history_view import format_mean
from skylab.runner import Runner
from skylab.session import SessionPlan, run_session
from skylab.store.gitstore import TrialStore
from skylab.store.history import Trial
from skylab.store.refs import run_branch
from skylab.studies.ablation import Contribution, ablation_jobs, check_ablation, contributions, prune_job
from skylab.studies.confirmation import ScaleCheck, check_confirmation, confirmation_jobs, scale_checks
from skylab.studies.fresh import FreshEstimate, check_fresh, fresh_estimate, fresh_job


def apply_trial(store: TrialStore, config: ExperimentConfig, trial: Trial, force: bool = False) -> list[str]:
    """Write `trial`'s editable files into the checkout as uncommitted changes; one line per file
    that changed. Refused when one of them has uncommitted edits (they would be lost), unless `force`."""
    editable = list(config.editable_files)
    dirty = sorted(
        name
        for name in store.checkout.dirty_paths() & set(editable)
        if _content(store, name) != store.changes.file_at(trial.commit, name)  # already the trial's: no loss
    )
    if dirty and not force:
        raise SkylabError(
            f"{', '.join(dirty)} {'has' if len(dirty) == 1 else 'have'} uncommitted edits that apply would "
            "overwrite: commit or stash them, or pass --force"
        )
    changed = []
    for name in editable:
        wanted = store.changes.file_at(trial.commit, name)
        path = experiment_file(store.git.root, name)
        current = _content(store, name)
        if wanted == current:
            continue
        if wanted is None:
            path.unlink()
            changed.append(f"deleted {name}")
        else:
            path.write_bytes(wanted)
            changed.append(f"{'wrote' if current is not None else 'created'} {name}")
    return changed


def _content(store: TrialStore, name: str) -> bytes | None:
    path = experiment_file(store.git.root, name)
    return path.read_bytes() if path.is_file() else None


@dataclass
class Side:
    """One trial in a comparison: the lines `skylab diff` shows for it."""

    name: str
    value: str
    status: str
    vram: str
    steps: str


def _side(trial: Trial) -> Side:
    note = trial.note
    if note is None:
        return Side(trial.name, "—", "interrupted", "—", "—")
    value = format_mean(note.value, len(note.measurements), note.sem) or "—"
    steps = note.summary.get("num_steps")
    return Side(
        trial.name,
        value,
        f"{note.status.value}, {note.decision.value}",
        "—" if note.peak_vram_mb is None else f"{note.peak_vram_mb / 1024:.1f} GB",
        "—" if not isinstance(steps, int | float) else f"{steps:g}",
    )


def compare(
    store: TrialStore, config: ExperimentConfig, a: Trial, b: Trial
) -> tuple[list[tuple[str, str, str]], str]:
    """The two trials side by side ((field, A, B) rows: the metric, every constant that differs as
    from → to, status, VRAM, steps) and the editable files' diff from A to B."""
    left, right = _side(a), _side(b)
    rows = [("trial", left.name, right.name), (config.metric, left.value, right.value)]
    params_a = a.note.params if a.note else {}
    params_b = b.note.params if b.note else {}
    for key in sorted(set(params_a) | set(params_b)):
        if params_a.get(key) != params_b.get(key):
            rows.append((key, str(params_a.get(key, "—")), str(params_b.get(key, "—"))))
    rows += [
        ("status", left.status, right.status),
        ("peak VRAM", left.vram, right.vram),
        ("steps", left.steps, right.steps),
    ]
    return rows, store.changes.diff_text(a.commit, b.commit, list(config.editable_files))


def study_trial(store: TrialStore, spec: str | None, tag: str | None) -> Trial:
    """The trial a study is about: `spec` (see `find_trial`); without it, the best of run `tag`
    when a tag is given, else the best of all."""
    if spec is not None:
        return store.resolve_trial(spec, tag)
    if tag is None:
        return store.resolve_trial("best")
    history = store.load()
    tip = store.git.ref_target(run_branch(tag))
    best = run_best(store, tip, "", RunLine(history, tag)) if tip is not None else None
    if best is None:
        raise SkylabError(f"run {tag} has no measured trial yet (see `skylab history`)")
    return best


def require_own_run(store: TrialStore, trial: Trial) -> None:
    """A study's trials join `trial`'s run, whose numbers only the clone running it may claim."""
    if trial.tag not in store.clone.own_tags():
        raise SkylabError(
            f"trial {trial.name} is from run {trial.tag}, which another clone runs (a teammate's): "
            "its trial numbers are theirs to claim, so study it in that clone"
        )


def ablate(
    store: TrialStore,
    config: ExperimentConfig,
    runners: list[Runner],
    trial: Trial,
    console: Console,
    prune: bool = False,
) -> tuple[list[Contribution], RunOutcome | None]:
    """Measure `trial` without each of its kept changes, then (with `prune`) train and judge the
    trial without every change that did not help beyond noise. Returns the contributions and the
    outcome of the last session (None when nothing was trained)."""
    require_own_run(store, trial)
    check_ablation(store.load(), trial)

    def ablations(say: Callable[[str], None]) -> list[Job]:
        jobs, skipped = ablation_jobs(store, config, store.load(), trial)
        for line in skipped:
            say(line)
        return jobs

    outcome = run_session(
        store, config, None, runners, SessionPlan(trial.tag, "ablate", prepare=ablations), console
    )
    if outcome.stopped_because == "interrupted":
        return [], outcome
    rows = contributions(store.load(), trial, rules_for(config))
    flagged = [row for row in rows if row.flagged]
    if not prune:
        return rows, outcome
    if not flagged:
        console.print("nothing to prune: every kept change helps beyond noise", markup=False)
        return rows, outcome

    def pruned(say: Callable[[str], None]) -> list[Job]:
        job, line = prune_job(store, config, trial, flagged)
        say(line)
        return [job] if job is not None else []

    outcome = run_session(
        store, config, None, runners, SessionPlan(trial.tag, "prune", prepare=pruned), console
    )
    return rows, outcome


def confirm(
    store: TrialStore,
    config: ExperimentConfig,
    runners: list[Runner],
    trial: Trial,
    scale: float,
    console: Console,
) -> tuple[list[ScaleCheck], RunOutcome]:
    """Measure `trial` and its run's starting point at `scale` × the time budget; returns every
    scale the trial has been confirmed at, and the session's outcome."""
    require_own_run(store, trial)
    check_confirmation(store.load(), trial)

    def confirmations(say: Callable[[str], None]) -> list[Job]:
        return confirmation_jobs(store, config, store.load(), trial, scale)

    plan = SessionPlan(trial.tag, "confirm", prepare=confirmations)
    outcome = run_session(store, config, None, runners, plan, console)
    return scale_checks(store.load(), trial, rules_for(config)), outcome


def confirm_fresh(
    store: TrialStore, config: ExperimentConfig, runners: list[Runner], trial: Trial, console: Console
) -> tuple[FreshEstimate | None, RunOutcome]:
    """Measure `trial` again on seeds no selection used, `[decision] fresh_samples` times (2 when
    that is 0: asked for, so wanted); returns its selected and fresh estimates."""
    require_own_run(store, trial)
    check_fresh(store.load(), trial)
    samples = config.decision.fresh_samples or 2

    def fresh(say: Callable[[str], None]) -> list[Job]:
        return [fresh_job(store, config, trial.tag, trial, samples)]

    outcome = run_session(
        store, config, None, runners, SessionPlan(trial.tag, "confirm --fresh", prepare=fresh), console
    )
    return fresh_estimate(store.load().trials, trial), outcome
