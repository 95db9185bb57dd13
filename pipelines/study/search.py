"""Phase 2, the search: what it produced for each variant (its best trial, or why the study goes
on without it). Its trials run in the study's one Tuner (`trials`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ray import tune

from pipelines import tracking
from pipelines.data.store import DatasetRef
from pipelines.spec import StudySpec
from pipelines.study import failures, tuning
from pipelines.study.space import METRIC
from seqmodels.config import TrialConfig


@dataclass
class VariantOutcome:
    """What tuning one variant produced."""

    variant: str
    trial: TrialConfig  # its best trial's
    best_val: float
    checkpoint_dir: str
    run_id: str
    trials: int
    stopped_early: int
    failed: int
    train_seconds: float


@dataclass
class LeftOut:
    """A variant the study goes on without, and why, in one line.

    Every trial of it failed or diverged, or a seeded repeat of its best configuration diverged
    (or every one failed). One variant that cannot train must not sink the others' finished
    work: the study repeats, registers and compares the rest, and its report names this one.
    """

    variant: str
    reason: str


def divergence(dataset: DatasetRef) -> failures.Divergence:
    """The study's divergence rule, against its task's metric and baseline."""
    return failures.Divergence(dataset.metric, dataset.baseline)


def variant_outcome(
    spec: StudySpec,
    variant: str,
    results: Iterable[tune.Result],
    parent_run_id: str,
    diverged: failures.Divergence,
    chosen: str | None = None,
) -> VariantOutcome | LeftOut:
    """The variant's best trial from its search trials' results, or LeftOut when none can be
    used.

    Only trials that neither failed nor diverged count, and among their kept checkpoints only
    finite `val/loss` scores: Tune's own `get_best_result` would pick a trial that blew up
    after a good epoch, and a NaN score compares as neither better nor worse than any other.
    The best is the lowest score of any epoch (Tune's `scope="all"`), the rule by which
    `routing.best_trial` chose the trial the variant's repeats retrain; with `chosen` (that
    trial's id) the outcome is that trial, so a tie cannot make the two differ.
    """
    results = list(results)  # a ResultGrid, or some of its results
    errors = [r.error for r in results if r.error is not None]
    trained = [r for r in results if r.error is None]
    judged = [(r, diverged(r.metrics)) for r in trained]
    reasons = [why for _, why in judged if why is not None]
    usable = [r for r, why in judged if why is None]
    scored = [
        (float(metrics[METRIC]), checkpoint, r)
        for r in usable
        for checkpoint, metrics in r.best_checkpoints
        if math.isfinite(float(metrics.get(METRIC, math.nan)))
        and (chosen is None or tuning.trial_id(r) == chosen)
    ]
    if not scored:
        return LeftOut(variant, _unusable(len(results), errors, reasons))
    best_val, checkpoint, best = min(scored, key=lambda s: s[0])
    run_ids = {
        run.data.tags["trial_id"]: run.info.run_id
        for run in tracking.child_runs(tracking.client(), parent_run_id, "trial", variant)
    }
    return VariantOutcome(
        variant=variant,
        trial=TrialConfig.from_nested(best.config),
        best_val=best_val,
        checkpoint_dir=tuning.local_checkpoint(checkpoint, parent_run_id, variant),
        run_id=run_ids[tuning.trial_id(best)],
        trials=len(results),
        stopped_early=sum(r.metrics["training_iteration"] < spec.fixed.max_epochs for r in trained),
        failed=len(errors),
        train_seconds=sum(float(r.metrics.get("time_total_s", 0.0)) for r in trained),
    )


def _unusable(trials: int, errors: list[BaseException], reasons: list[str]) -> str:
    """Why no trial of a variant can be used, in one line: the first error, the first reason."""
    if errors and reasons:
        return (
            f"{len(errors)} of {trials} trials failed ({failures.error_line(errors[0])}), "
            f"{len(reasons)} diverged ({reasons[0]})"
        )
    if errors and len(errors) == trials:
        return f"every trial failed: {failures.error_line(errors[0])}"
    if reasons and len(reasons) == trials:
        return f"every trial diverged: {reasons[0]}"
    return "no trial kept a checkpoint with a finite val/loss"
