"""Prefect flows. The flow body is the story; tasks are small and typed; side effects at the edges.

Import this module only after `settings.configure_environment()`: Prefect reads its settings
at import time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import ray
import torch
from mlflow.entities import Metric
from mlflow.models import infer_signature
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext
from prefect.runtime import flow_run
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

import seqmodels
from pipelines import report, settings, store, tracking
from pipelines.progress import Progress
from pipelines.report import Report
from pipelines.spec import PERTURBABLE, Distribution, StudySpec
from pipelines.store import DatasetRef
from pipelines.trainable import evaluate, train_repeat, train_trial

METRIC, MODE = "val/loss", "min"

# `mlflow.pytorch` calls logging.basicConfig() on import. That root handler would print every
# Prefect record a second time, in the bare "INFO:prefect:..." format; Prefect has its own.
logging.getLogger().handlers.clear()


@dataclass
class VariantOutcome:
    """What tuning one variant produced."""

    variant: str
    config: dict[str, Any]
    best_val: float
    checkpoint_dir: str
    run_id: str
    trials: int
    stopped_early: int
    failed: int
    train_seconds: float


@dataclass
class Repeats:
    """What the seeded repeats cost; their scores live on their MLflow runs."""

    runs: int
    failed: int
    train_seconds: float


@dataclass
class StudyResult:
    """What `run_study` returns: where the runs are, the table, and where the time went."""

    study: str
    experiment_id: str
    parent_run_id: str
    table: str
    winner: str | None
    phases: dict[str, float]
    train_seconds: float
    began_at: float  # time.time() when the flow body began: after Prefect's start-up


@dataclass
class Timings:
    """Wall-clock seconds of each phase of a study, for the summary and the benchmark."""

    phases: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start


def _data_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Same task, options, seed, generator version and store means the same dataset."""
    digest = store.dataset_digest(
        parameters["task_name"], parameters["options"], parameters["seed"]
    )
    return f"{parameters['task_name']}-{digest}-{Path(parameters['root']).as_posix()}"


@task(name="prepare-data", cache_key_fn=_data_cache_key, persist_result=True)
def prepare_data(task_name: str, options: dict[str, Any], seed: int, root: str) -> DatasetRef:
    """Generate the task's splits into the store (a no-op when the same content is there)."""
    return store.prepare(task_name, options, seed, Path(root))


def search_space(spec: StudySpec) -> dict[str, Any]:
    """The spec's nuisance space as Ray Tune sampling objects (grid: every combination)."""
    if spec.search.algorithm == "grid":
        return {key: tune.grid_search(dist.args) for key, dist in spec.search.space.items()}
    return {key: _sampler(dist) for key, dist in spec.search.space.items()}


def search_algorithm(spec: StudySpec) -> Searcher | None:
    """Optuna's TPE where asked; otherwise Tune's own random and grid generator (None)."""
    if spec.search.algorithm != "optuna":
        return None
    searcher: Searcher = OptunaSearch(metric=METRIC, mode=MODE, seed=spec.fixed.seed)
    if spec.search.max_concurrent:
        # TPE proposes from finished results: cap how many run on stale information.
        searcher = ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent)
    return searcher


def _sampler(dist: Distribution) -> Any:
    low_high = dist.args
    match dist.kind:
        case "uniform":
            return tune.uniform(*low_high)
        case "loguniform":
            return tune.loguniform(*low_high)
        case "randint":
            return tune.randint(low_high[0], low_high[1] + 1)  # Tune's upper end is exclusive
        case "choice":
            return tune.choice(dist.args)
    raise ValueError(f"unhandled distribution {dist.kind!r}")


def scheduler(spec: StudySpec) -> TrialScheduler:
    s, max_t = spec.search.scheduler, spec.fixed.max_epochs
    match s.name:
        case "asha":
            return ASHAScheduler(
                time_attr="training_iteration",
                max_t=max_t,
                grace_period=min(s.grace_period, max_t),
                reduction_factor=s.reduction_factor,
            )
        case "hyperband":
            return HyperBandScheduler(
                time_attr="training_iteration", max_t=max_t, reduction_factor=s.reduction_factor
            )
        case "pbt":
            space = search_space(spec)
            return PopulationBasedTraining(
                time_attr="training_iteration",
                perturbation_interval=s.perturbation_interval,
                hyperparam_mutations={k: v for k, v in space.items() if k in PERTURBABLE},
                synch=False,
            )
    return FIFOScheduler()


def _trainable(function: Callable[..., None], spec: StudySpec, dataset: DatasetRef) -> Any:
    """`function` with the dataset bound and the spec's resources reserved per trial."""
    return tune.with_resources(
        tune.with_parameters(function, dataset=dataset),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def _run_config(label: str, callbacks: list[tune.Callback], **extra: Any) -> tune.RunConfig:
    """Results under the store, our own callbacks for output, one retry from a checkpoint."""
    return tune.RunConfig(
        name=f"{label}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=str(settings.seqlab_home() / "ray_results"),
        callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=1),
        verbose=0,
        **extra,
    )


def _fit(tuner: tune.Tuner, runs: tracking.TrialRuns) -> tune.ResultGrid:
    """Run the Tuner; whatever stops it, no MLflow run of its trials stays RUNNING."""
    try:
        return tuner.fit()
    finally:
        runs.close_open("KILLED")


def keep_checkpoints(spec: StudySpec) -> int:
    """The spec's best-N, but at least 4 under PBT: exploiting trials restore others' files."""
    keep = spec.search.keep_checkpoints
    return max(keep, 4) if spec.search.scheduler.name == "pbt" else keep


@task(name="tune-variant")
def tune_variant(
    spec: StudySpec, variant: str, dataset: DatasetRef, experiment_id: str, parent_run_id: str
) -> VariantOutcome:
    """Search the nuisance space for one variant with its equal share of the budget."""
    trials = spec.search.trials_per_variant
    runs = tracking.TrialRuns(tracking.client(), experiment_id, parent_run_id, "trial")
    tuner = tune.Tuner(
        _trainable(train_trial, spec, dataset),
        param_space={**spec.trial_base(variant), **search_space(spec)},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            # a grid enumerates its trials itself; the spec checked they match the budget
            num_samples=1 if spec.search.algorithm == "grid" else trials,
            scheduler=scheduler(spec),
            search_alg=search_algorithm(spec),
            max_concurrent_trials=spec.search.max_concurrent,
        ),
        run_config=_run_config(
            f"{spec.name}-{variant}",
            [runs, Progress(variant, trials, METRIC, spec.fixed.max_epochs)],
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=keep_checkpoints(spec),
                checkpoint_score_attribute=METRIC,
                checkpoint_score_order=MODE,
            ),
        ),
    )
    results = _fit(tuner, runs)
    failed = sum(r.error is not None for r in results)
    if failed == len(results):
        raise RuntimeError(f"every trial of variant {variant!r} failed: {results[0].error}")
    best = results.get_best_result(metric=METRIC, mode=MODE, scope="all")
    checkpoint, metrics = min(best.best_checkpoints, key=lambda cm: cm[1][METRIC])
    ok = [r for r in results if r.error is None]
    return VariantOutcome(
        variant=variant,
        config=best.config,
        best_val=float(metrics[METRIC]),
        checkpoint_dir=checkpoint.path,
        run_id=runs.run_ids[best.metrics["trial_id"]],
        trials=len(results),
        stopped_early=sum(r.metrics["training_iteration"] < spec.fixed.max_epochs for r in ok),
        failed=failed,
        train_seconds=sum(float(r.metrics.get("time_total_s", 0.0)) for r in ok),
    )


def repeat_seeds(spec: StudySpec) -> list[int]:
    """Fresh seeds for the repeats: the search's own seed picked the winner, so it is not reused."""
    return [spec.fixed.seed + 1 + i for i in range(spec.seeds)]


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
    best = {o.variant: o.config for o in outcomes}
    seeds = repeat_seeds(spec)
    # Grid over (variant, seed); every other key follows the variant's best configuration.
    keys = sorted({key for config in best.values() for key in config} - {"variant", "seed"})
    param_space: dict[str, Any] = {
        "variant": tune.grid_search(list(best)),
        "seed": tune.grid_search(seeds),
        **{key: tune.sample_from(_follow(best, key)) for key in keys},
    }
    total = len(best) * len(seeds)
    runs = tracking.TrialRuns(tracking.client(), experiment_id, parent_run_id, "repeat")
    tuner = tune.Tuner(
        _trainable(train_repeat, spec, dataset),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=spec.search.max_concurrent),
        run_config=_run_config(
            f"{spec.name}-repeats",
            [runs, Progress("repeats", total, METRIC, spec.fixed.max_epochs + 1)],
        ),
    )
    results = _fit(tuner, runs)
    ok = [r for r in results if r.error is None]
    return Repeats(
        runs=len(results),
        failed=len(results) - len(ok),
        train_seconds=sum(float(r.metrics.get("time_total_s", 0.0)) for r in ok),
    )


def _follow(best: dict[str, dict[str, Any]], key: str) -> Any:
    """A Tune sampler that copies `key` from the best configuration of the trial's variant."""
    return lambda spec: best[spec.config["variant"]][key]


@task(name="evaluate-and-register")
def evaluate_and_register(
    spec: StudySpec, outcome: VariantOutcome, dataset: DatasetRef
) -> dict[str, float]:
    """Test the variant's best trial on the held-out split; log and register its network."""
    metrics, module = evaluate(outcome.config, dataset, outcome.checkpoint_dir)
    net = module.net.eval()
    example, signature = None, None
    # A seq2seq network decodes step by step from (x, x_len): it has no one-tensor signature.
    if dataset.family != "seq2seq":
        with np.load(Path(dataset.uri) / "test.npz") as test:
            example = test["x"][:2]  # (2, T, F) features or (2, T) token ids
        with torch.no_grad():
            prediction = net(torch.from_numpy(example)).numpy()
        signature = infer_signature(example, prediction)
    name = f"{spec.name}-{outcome.variant}"
    with mlflow.start_run(run_id=outcome.run_id):
        mlflow.log_metrics(metrics)
        info = mlflow.pytorch.log_model(
            net,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=name,
            code_paths=[str(Path(seqmodels.__file__).parent)],
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
        )
    tracking.client().set_registered_model_alias(name, "champion", info.registered_model_version)
    return metrics


@task(name="report")
def publish_report(spec: StudySpec, parent_run_id: str) -> Report:
    """Build the report from MLflow alone; publish it to MLflow and as a Prefect artifact."""
    client = tracking.client()
    built = report.build(report.collect(client, parent_run_id))
    report.publish(client, parent_run_id, built)
    key = "".join(c if c.isalnum() else "-" for c in spec.name.lower()) + "-report"
    create_markdown_artifact(markdown=built.markdown, key=key, description=f"study {spec.name}")
    if built.winner is not None:
        version = client.get_model_version_by_alias(f"{spec.name}-{built.winner}", "champion")
        client.set_registered_model_alias(f"{spec.name}-{built.winner}", "winner", version.version)
    return built


@contextmanager
def ray_session() -> Iterator[None]:
    """Connect to `RAY_ADDRESS`, or start a local Ray for the run and stop it afterwards."""
    if ray.is_initialized():
        yield
        return
    address = settings.ray_address()
    # "local", not None: None would join whatever Ray `ray start` last started on this machine.
    local = {} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
    ray.init(address=address or "local", log_to_driver=False, logging_level=logging.ERROR, **local)
    try:
        yield
    finally:
        ray.shutdown()


@flow(name="run_study", log_prints=False)
def run_study(spec: StudySpec, source: str = "") -> StudyResult:
    """Run a comparison study: prepare data, tune every variant, test and register, report."""
    began_at = time.time()
    timings = Timings()
    logger = get_run_logger()
    home = settings.seqlab_home()
    with timings.phase("data"):
        dataset = prepare_data(
            spec.task.name, spec.task.options.__dict__, spec.task.seed, str(home)
        )
        if not Path(dataset.uri, "card.json").exists():  # the store was cleared under the cache
            dataset = prepare_data.with_options(refresh_cache=True)(
                spec.task.name, spec.task.options.__dict__, spec.task.seed, str(home)
            )
    with timings.phase("mlflow"):
        mlflow.set_tracking_uri(settings.tracking_uri())
        client = tracking.client()
        experiment_id = tracking.ensure_experiment(client, spec.name)
        parent = client.create_run(
            experiment_id,
            run_name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={
                **tracking.provenance_tags(),
                "kind": "study",
                "spec.hash": spec.digest(),
                "spec.source": source,
                "dataset.digest": dataset.digest,
                "dataset.metric": dataset.metric,
                "dataset.baseline": str(dataset.baseline),
                "prefect.flow_run_id": str(flow_run.get_id() or ""),
                # The run a user started (from the UI, a deployment), when this one is nested.
                "prefect.root_flow_run_id": str(flow_run.root_flow_run_id or ""),
                "prefect.flow_run_url": flow_run.ui_url or "",
            },
        )
        parent_id = parent.info.run_id
    logger.info("MLflow parent run %s in experiment %r", parent_id, spec.name)

    outcomes: list[VariantOutcome] = []
    try:  # from here on, any way out ends the parent run: none is left RUNNING
        with timings.phase("mlflow"):
            client.log_dict(parent_id, spec.model_dump(mode="json"), "spec.json")
            tracking.log_dataset(parent_id, dataset, mlflow=client)
        with ExitStack() as stack:
            with timings.phase("ray_start"):
                stack.enter_context(ray_session())
            for variant in spec.variants:
                with timings.phase("trials"):
                    outcomes.append(tune_variant(spec, variant, dataset, experiment_id, parent_id))
            with timings.phase("repeats"):
                repeats = repeat_best(spec, outcomes, dataset, experiment_id, parent_id)
        with timings.phase("register"):
            for outcome in outcomes:
                evaluate_and_register(spec, outcome, dataset)
        with timings.phase("report"):
            built = publish_report(spec, parent_id)
    except BaseException as stopped:
        interrupted = isinstance(stopped, KeyboardInterrupt)
        client.set_terminated(parent_id, "KILLED" if interrupted else "FAILED")
        raise
    train_seconds = sum(o.train_seconds for o in outcomes) + repeats.train_seconds
    client.log_batch(
        parent_id,
        metrics=[
            Metric(f"timing/{name}_s", seconds, int(time.time() * 1000), 0)
            for name, seconds in {**timings.phases, "train": train_seconds}.items()
        ],
    )
    client.set_terminated(parent_id, "FINISHED")
    return StudyResult(
        study=spec.name,
        experiment_id=experiment_id,
        parent_run_id=parent_id,
        table=built.summary,
        winner=built.winner,
        phases=timings.phases,
        train_seconds=train_seconds,
        began_at=began_at,
    )
