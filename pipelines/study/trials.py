"""Phases 2 and 3 in one Tuner: every variant's search, each variant with its equal share of the
budget, and each variant's seeded repeats of its best configuration, which start as soon as
that variant's own search is over (`routing`), not when every variant's is.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from prefect import task
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from pipelines import tracking
from pipelines.data.store import DatasetRef
from pipelines.report.stats import Sequential, metric_mode
from pipelines.spec import StudySpec
from pipelines.study import routing, tuning
from pipelines.study.progress import Progress, repeats_group
from pipelines.study.register import ChampionWhenReady
from pipelines.study.repeat import Repeats, repeat_seeds, repeats_of
from pipelines.study.search import LeftOut, VariantOutcome, divergence, variant_outcome
from pipelines.study.space import (
    METRIC,
    MODE,
    checkpoint_every,
    keep_checkpoints,
    scheduler,
    searched_keys,
    trial_space,
)
from pipelines.study.timings import PhaseSpan, timed
from pipelines.tracking import trial_runs
from pipelines.trial.phase import OF_TRIAL, is_repeat, resting_config
from pipelines.trial.trainable import train_study_trial


@dataclass
class Trained:
    """What the study's trials produced: each variant's best search trial, or why it is left
    out; what its repeats cost and which variants they leave out; and each phase's span."""

    outcomes: list[VariantOutcome]
    left_out: list[LeftOut]
    repeats: Repeats
    spans: dict[str, PhaseSpan] = field(default_factory=dict)  # "search", "repeats"


@timed("trials")
@task(name="trials")
def tune_trials(
    spec: StudySpec,
    dataset: DatasetRef,
    experiment_id: str,
    parent_run_id: str,
    variants: list[str] | None = None,
    repeats: bool = True,
) -> Trained:
    """Search every variant's nuisance space (or only `variants'`), each with its equal share
    of the budget, and with `repeats` retrain each variant's best configuration under
    `spec.seeds` fresh seeds as soon as its search is over: all in one Tuner, each variant
    drawn and scheduled on its own (`routing`). A variant whose repeats are over has its
    champion tested and registered then (`register.ChampionWhenReady`).

    A variant none of whose trials trained (each failed or diverged) comes back LeftOut, with
    no repeats; so does one whose repeats cannot be compared (`repeat.repeats_left_out`).
    """
    variants = list(variants or spec.variants)
    diverged = divergence(dataset)
    runs = trial_runs.TrialRuns(tracking.client(), experiment_id, parent_run_id, "trial", diverged)
    trainable = tuning.trainable(
        train_study_trial, spec, dataset, checkpoint_every=checkpoint_every(spec)
    )
    seeds = repeat_seeds(spec) if repeats else []
    looks, k = spec.seed_looks, spec.repeats.configs  # k configurations repeated per variant
    rounds = None
    if seeds and len(looks) > 1:
        rule = spec.compare
        rounds = Sequential(looks, rule.alpha, metric_mode(dataset.metric), rule.min_effect)
    searcher = routing.VariantSearch(
        {variant: trial_space(spec, variant) for variant in variants},
        spec.search.trials_per_variant,
        spec.search.algorithm,
        spec.search_seed,
        METRIC,
        MODE,
        repeat_seeds=seeds,
        diverged=diverged,
        vary=spec.repeats.vary,
        rounds=rounds,
        test_metric=f"test/{dataset.metric}",
        configs=spec.repeats.configs,
    )
    progress = Progress(
        "trials",
        {**searcher.budget, **{repeats_group(v): len(seeds) * k for v in variants if seeds}},
        METRIC,
        spec.fixed.max_epochs,
        test_metric=f"test/{dataset.metric}",  # each repeat's last report: its test metrics
        diverged=diverged,
        shown=searched_keys(spec),
        rounds={repeats_group(v): looks[0] * k for v in variants} if rounds else None,
    )
    callbacks: list[tune.Callback] = [runs, progress]
    # With rounds, a variant's champion is registered once its first round has ended: when it
    # repeats one configuration, later rounds cannot change which. When it repeats several, a
    # later round can change which validates best: the study registers after its Tuner.
    if seeds and (rounds is None or k == 1):
        callbacks.append(  # after `runs`: a champion's run has ended by the time it is registered
            ChampionWhenReady(spec, dataset, parent_run_id, diverged, seeds=looks[0] * k)
        )
    run_config = tuning.run_config(
        spec.name,
        callbacks,
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
        trial_dirname_creator=tuning.trial_dirname,
    )
    if spec.search.scheduler.name == "pbt":
        # PBT draws its perturbations and the trials it clones from Python's own generator.
        # Seeded, the same events give the same draws; which trial reports first still
        # depends on timing, so a PBT search repeats only as far as its events do.
        random.seed(spec.search_seed)
    tuner = tuning.tuner(
        parent_run_id,
        "trials",
        trainable,
        run_config,
        lambda: tune.Tuner(trainable, tune_config=tune_config, run_config=run_config),
    )
    results = list(tuning.fit(tuner, parent_run_id))
    searched = [r for r in results if not is_repeat(r.config)]
    repeated = [r for r in results if is_repeat(r.config)]
    trained = Trained([], [], repeats_of(variants, repeated, diverged))
    for variant in variants:
        mine = [r for r in searched if r.config["variant"] == variant]
        chosen = resting_config(
            (r.config[OF_TRIAL], float(r.metrics.get(METRIC, math.nan)))
            for r in repeated
            if r.config["variant"] == variant
        )
        outcome = variant_outcome(spec, variant, mine, parent_run_id, diverged, chosen=chosen)
        if isinstance(outcome, LeftOut):
            trained.left_out.append(outcome)
        else:
            trained.outcomes.append(outcome)
    client = tracking.client()
    trained.spans = {
        "search": PhaseSpan.of(tracking.child_runs(client, parent_run_id, "trial"), searched),
        "repeats": PhaseSpan.of(tracking.child_runs(client, parent_run_id, "repeat"), repeated),
    }
    return trained
