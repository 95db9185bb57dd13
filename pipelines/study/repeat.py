"""Phase 3, the repeats: each variant's best configuration retrained under fresh seeds; their
test scores are what the statistics compare.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from ray import tune

from pipelines import tracking
from pipelines.data.store import DatasetRef
from pipelines.spec import StudySpec
from pipelines.study import failures, tuning
from pipelines.study.progress import Progress
from pipelines.study.search import LeftOut, VariantOutcome, divergence
from pipelines.study.space import METRIC
from pipelines.study.timings import timed
from pipelines.tracking import trial_runs
from pipelines.trial.trainable import train_repeat


@dataclass
class Repeats:
    """What the seeded repeats cost; their scores live on their MLflow runs."""

    runs: int
    failed: int
    train_seconds: float
    left_out: list[LeftOut] = field(default_factory=list)


def repeat_seeds(spec: StudySpec) -> list[int]:
    """Fresh seeds for the repeats: the search's own seed picked the winner, so it is not reused."""
    return [spec.fixed.seed + 1 + i for i in range(spec.seeds)]


@timed("repeats")
@task(name="repeat-best")
def repeat_best(
    spec: StudySpec,
    outcomes: list[VariantOutcome],
    dataset: DatasetRef,
    experiment_id: str,
    parent_run_id: str,
) -> Repeats:
    """Retrain each variant's best configuration under `spec.seeds` fresh seeds, in parallel.

    The repeats' test scores, logged on their MLflow runs, are what the statistics compare.
    """
    if not outcomes:  # no variant trained: nothing to repeat
        return Repeats(runs=0, failed=0, train_seconds=0.0)
    best = {o.variant: o.trial.nested() for o in outcomes}
    seeds = repeat_seeds(spec)
    # Grid over (variant, seed); every other key follows the variant's best configuration.
    keys = sorted({key for config in best.values() for key in config} - {"variant", "seed"})
    param_space: dict[str, Any] = {
        "variant": tune.grid_search(list(best)),
        "seed": tune.grid_search(seeds),
        **{key: tune.sample_from(_follow(best, key)) for key in keys},
    }
    total = len(best) * len(seeds)
    diverged = divergence(dataset)
    runs = trial_runs.TrialRuns(tracking.client(), experiment_id, parent_run_id, "repeat", diverged)
    trainable = tuning.trainable(train_repeat, spec, dataset)
    tested = f"test/{dataset.metric}"  # each repeat's last report: its test metrics
    run_config = tuning.run_config(
        f"{spec.name}-repeats",
        [
            runs,
            Progress(
                "repeats",
                total,
                METRIC,
                spec.fixed.max_epochs,
                test_metric=tested,
                diverged=diverged,
            ),
        ],
    )
    tune_config = tune.TuneConfig(
        max_concurrent_trials=spec.search.max_concurrent, reuse_actors=tuning.reuse_workers()
    )
    tuner = tuning.tuner(
        parent_run_id,
        "repeats",
        trainable,
        run_config,
        lambda: tune.Tuner(
            trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
        ),
    )
    results = tuning.fit(tuner, parent_run_id, "repeat", None)
    ok = [r for r in results if r.error is None]
    return Repeats(
        runs=len(results),
        failed=len(results) - len(ok),
        train_seconds=sum(float(r.metrics.get("time_total_s", 0.0)) for r in ok),
        left_out=repeats_left_out(list(best), results, diverged),
    )


def repeats_left_out(
    variants: list[str], results: Iterable[tune.Result], diverged: failures.Divergence
) -> list[LeftOut]:
    """The variants whose seeded repeats cannot be compared: one diverged, or every one failed.

    One diverged repeat is enough: its score (1e12, NaN) would make the variant's mean and
    interval meaningless, and "no significant difference" would hide that it blew up.
    """
    results, left_out = list(results), []
    for variant in variants:
        mine = [r for r in results if r.config.get("variant") == variant]
        errors = [r.error for r in mine if r.error is not None]
        reasons = [why for r in mine if r.error is None and (why := diverged(r.metrics))]
        if reasons:
            reason = f"{len(reasons)} of {len(mine)} seeded repeats diverged: {reasons[0]}"
            left_out.append(LeftOut(variant, reason))
        elif mine and len(errors) == len(mine):
            reason = f"every seeded repeat failed: {failures.error_line(errors[0])}"
            left_out.append(LeftOut(variant, reason))
    return left_out


def _follow(best: dict[str, dict[str, Any]], key: str) -> Any:
    """A Tune sampler that copies `key` from the best configuration of the trial's variant."""
    return lambda spec: best[spec.config["variant"]][key]
