"""Phase 2, the search: each variant's nuisance space searched with its equal share of the
budget, all variants in one Tuner, and each variant's best trial, or why the study goes on
without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from prefect import task
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from pipelines import tracking
from pipelines.data.store import DatasetRef
from pipelines.spec import StudySpec
from pipelines.study import failures, routing, tuning
from pipelines.study.progress import Progress
from pipelines.study.space import (
    METRIC,
    MODE,
    checkpoint_every,
    keep_checkpoints,
    scheduler,
    searched_keys,
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


@dataclass
class Searched:
    """What the search produced: each variant's best trial, or why it is left out."""

    outcomes: list[VariantOutcome]
    left_out: list[LeftOut]


def divergence(dataset: DatasetRef) -> failures.Divergence:
    """The study's divergence rule, against its task's metric and baseline."""
    return failures.Divergence(dataset.metric, dataset.baseline)


@timed("trials")
@task(name="search")
def tune_search(
    spec: StudySpec,
    dataset: DatasetRef,
    experiment_id: str,
    parent_run_id: str,
    variants: list[str] | None = None,
) -> Searched:
    """Search every variant's nuisance space (or only `variants`'), each with its equal share of
    the budget, in one Tuner: each variant drawn and scheduled on its own (`routing`).

    A variant none of whose trials trained (each failed or diverged) comes back LeftOut.
    """
    variants = list(variants or spec.variants)
    diverged = divergence(dataset)
    runs = trial_runs.TrialRuns(tracking.client(), experiment_id, parent_run_id, "trial", diverged)
    trainable = tuning.trainable(
        train_trial, spec, dataset, checkpoint_every=checkpoint_every(spec)
    )
    searcher = routing.VariantSearch(
        {variant: trial_space(spec, variant) for variant in variants},
        spec.search.trials_per_variant,
        spec.search.algorithm,
        spec.fixed.seed,
        METRIC,
        MODE,
    )
    progress = Progress(
        "search",
        searcher.budget,
        METRIC,
        spec.fixed.max_epochs,
        diverged=diverged,
        shown=searched_keys(spec),
    )
    run_config = tuning.run_config(
        f"{spec.name}-search",
        [runs, progress],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=keep_checkpoints(spec),
            checkpoint_score_attribute=METRIC,
            checkpoint_score_order=MODE,
        ),
    )
    tune_config = tune.TuneConfig(
        metric=METRIC,
        mode=MODE,
        num_samples=searcher.total,
        scheduler=routing.VariantSchedulers({v: scheduler(spec) for v in variants}),
        # Tune keeps one trial pending at a time for a searcher of its own unless the searcher
        # is behind a cap (one trial ran at a time): the spec's, or Tune's own default.
        search_alg=ConcurrencyLimiter(
            searcher, max_concurrent=spec.search.max_concurrent or min(searcher.total, 200)
        ),
        reuse_actors=tuning.reuse_workers(),
    )
    tuner = tuning.tuner(
        parent_run_id,
        "search",
        trainable,
        run_config,
        lambda: tune.Tuner(trainable, tune_config=tune_config, run_config=run_config),
    )
    results = list(tuning.fit(tuner, parent_run_id, "trial", None))
    searched = Searched([], [])
    for variant in variants:
        mine = [r for r in results if r.config["variant"] == variant]
        outcome = variant_outcome(spec, variant, mine, parent_run_id, diverged)
        if isinstance(outcome, LeftOut):
            searched.left_out.append(outcome)
        else:
            searched.outcomes.append(outcome)
    return searched


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
