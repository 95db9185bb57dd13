"""Phase 2, the search: each variant's nuisance space searched with its equal share of the
budget, and its best trial, or why the study goes on without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from prefect import task
from ray import tune

from pipelines import tracking
from pipelines.data.store import DatasetRef
from pipelines.spec import StudySpec
from pipelines.study import failures, tuning
from pipelines.study.progress import Progress
from pipelines.study.space import (
    METRIC,
    MODE,
    checkpoint_every,
    keep_checkpoints,
    scheduler,
    search_algorithm,
    trial_space,
)
from pipelines.study.timings import timed
from pipelines.tracking import trial_runs
from pipelines.trial.trainable import train_trial
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


@task(name="tune-variant")
def tune_variant(
    spec: StudySpec, variant: str, dataset: DatasetRef, experiment_id: str, parent_run_id: str
) -> VariantOutcome | LeftOut:
    """Search the nuisance space for one variant with its equal share of the budget.

    Returns LeftOut when no trial of it trained: each failed or diverged.
    """
    trials = spec.search.trials_per_variant
    diverged = divergence(dataset)
    runs = trial_runs.TrialRuns(tracking.client(), experiment_id, parent_run_id, "trial", diverged)
    trainable = tuning.trainable(
        train_trial, spec, dataset, checkpoint_every=checkpoint_every(spec)
    )
    run_config = tuning.run_config(
        f"{spec.name}-{variant}",
        [runs, Progress(variant, trials, METRIC, spec.fixed.max_epochs, diverged=diverged)],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=keep_checkpoints(spec),
            checkpoint_score_attribute=METRIC,
            checkpoint_score_order=MODE,
        ),
    )
    tune_config = tune.TuneConfig(
        metric=METRIC,
        mode=MODE,
        # a grid enumerates its trials itself; the spec checked they match the budget
        num_samples=1 if spec.search.algorithm == "grid" else trials,
        scheduler=scheduler(spec),
        search_alg=search_algorithm(spec),
        max_concurrent_trials=spec.search.max_concurrent,
        reuse_actors=tuning.reuse_workers(),
    )
    space = trial_space(spec, variant)
    tuner = tuning.tuner(
        parent_run_id,
        variant,
        trainable,
        run_config,
        lambda: tune.Tuner(
            trainable, param_space=space, tune_config=tune_config, run_config=run_config
        ),
    )
    results = tuning.fit(tuner, parent_run_id, "trial", variant)
    return variant_outcome(spec, variant, results, parent_run_id, diverged)


def variant_outcome(
    spec: StudySpec,
    variant: str,
    results: Iterable[tune.Result],
    parent_run_id: str,
    diverged: failures.Divergence,
) -> VariantOutcome | LeftOut:
    """The variant's best trial from its Tuner's results, or LeftOut when none can be used.

    Only trials that neither failed nor diverged count, and among their kept checkpoints only
    finite `val/loss` scores: Tune's own `get_best_result` would pick a trial that blew up
    after a good epoch, and a NaN score compares as neither better nor worse than any other.
    The best is the lowest score of any epoch (Tune's `scope="all"`).
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
        run_id=run_ids[best.metrics["trial_id"]],
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


@dataclass
class Searched:
    """What the search produced: each variant's best trial, or why it is left out."""

    outcomes: list[VariantOutcome]
    left_out: list[LeftOut]


@timed("trials")
def tune_variants(
    spec: StudySpec, dataset: DatasetRef, experiment_id: str, parent_run_id: str
) -> Searched:
    """Search every variant, one after another (`tune_variant`)."""
    searched = Searched([], [])
    for variant in spec.variants:
        tuned = tune_variant(spec, variant, dataset, experiment_id, parent_run_id)
        if isinstance(tuned, LeftOut):
            searched.left_out.append(tuned)
        else:
            searched.outcomes.append(tuned)
    return searched
