"""Prefect flows. The flow body is the story; tasks are small and typed; side effects at the edges.

Import this module only after `settings.configure_environment()`: Prefect reads its settings
at import time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import fsspec
import mlflow
import mlflow.pytorch
import pyarrow.fs
import ray
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
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

from pipelines import report, serving, tracking
from pipelines.data import store
from pipelines.data.prepare import prepare_data
from pipelines.data.store import DatasetRef
from pipelines.ops import settings
from pipelines.report.markdown import Report
from pipelines.spec import OPTION_SECTIONS, PERTURBABLE, Distribution, StudySpec
from pipelines.spec.schema import MODEL_KEYS, TRAIN_KEYS
from pipelines.study import failures, resume
from pipelines.study.progress import Progress
from pipelines.tracking import trial_runs
from pipelines.trial.restorable import RestorableCheckpoints
from pipelines.trial.trainable import evaluate, train_repeat, train_trial
from seqmodels.config import TrialConfig
from seqmodels.files import join

METRIC, MODE = "val/loss", "min"

# `mlflow.pytorch` calls logging.basicConfig() on import. That root handler would print every
# Prefect record a second time, in the bare "INFO:prefect:..." format; Prefect has its own.
logging.getLogger().handlers.clear()


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
class Repeats:
    """What the seeded repeats cost; their scores live on their MLflow runs."""

    runs: int
    failed: int
    train_seconds: float
    left_out: list[LeftOut] = field(default_factory=list)


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
    left_out: dict[str, str] = field(default_factory=dict)  # variant -> why, in one line


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


def search_space(spec: StudySpec, variant: str | None = None) -> dict[str, Any]:
    """The nuisance space as Ray Tune sampling objects (grid: every combination).

    Without `variant`, the space all variants share; with it, the variant's own additions too.
    """
    space = spec.search.variant_space(variant) if variant else spec.search.space
    if spec.search.algorithm == "grid":
        return {key: tune.grid_search(dist.args) for key, dist in space.items()}
    return {key: _sampler(dist) for key, dist in space.items()}


def trial_space(spec: StudySpec, variant: str) -> dict[str, Any]:
    """What Tune samples a trial of `variant` from: its `TrialConfig`, nested, with each
    searched key in its place (Tune samples nested dimensions in place).

    A model hyperparameter goes into `model`, a training one into `train`, and a searched
    option of the variant's cell or architecture (`cell_options.alpha`) into that options
    mapping, next to the options the variant fixes.
    """
    config = spec.trial(variant).nested()
    model, train = config["model"], config["train"]
    for key, sampler in search_space(spec, variant).items():
        section, _, option = key.partition(".")
        if section in OPTION_SECTIONS and option:
            model[section] = {**model[section], option: sampler}
        elif key in MODEL_KEYS:
            model[key] = sampler
        elif key in TRAIN_KEYS:
            train[key] = sampler
        else:  # the seed
            config[key] = sampler
    return config


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
                hyperparam_mutations={
                    "train": {k: v for k, v in space.items() if k in PERTURBABLE}
                },
                synch=False,
            )
    return FIFOScheduler()


def checkpoint_every(spec: StudySpec) -> int | None:
    """The spec's `checkpoint_every`, but 1 under PBT: a trial that exploits another restores
    that trial's newest checkpoint, which must be its weights now, not at its best epoch."""
    return 1 if spec.search.scheduler.name == "pbt" else spec.search.checkpoint_every


def _trainable(
    function: Callable[..., None], spec: StudySpec, dataset: DatasetRef, **constants: Any
) -> Any:
    """`function` with the dataset (and `constants`) bound, and the spec's resources reserved
    per trial."""
    return tune.with_resources(
        tune.with_parameters(function, dataset=dataset, **constants),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def reuse_workers() -> bool:
    """Whether a new trial may run in a finished trial's worker process (Tune's `reuse_actors`).

    On the local default it does: a fresh worker imports torch and Lightning again, and 8
    one-epoch trials took 45 s instead of 18 s on 2 cores (benchmarks/scale.py). Every trial
    seeds what it uses itself, so it inherits nothing that changes its result. On a Ray cluster
    (`RAY_ADDRESS`, or the Ray head of `seqlab up`) each trial gets a fresh worker, so Ray
    places it on any node with room: reused workers keep every later trial on the nodes the
    first trials landed on, and nodes that join later stay idle.
    """
    return settings.ray_address() is None


# Set once an interrupted study has ended its MLflow runs and stopped Ray. What the process does
# after that is Prefect's report of the crashed flow run (`cli._interruptible` reads this).
INTERRUPTED_STUDY_CLOSED = threading.Event()


class StudyInterrupted(KeyboardInterrupt):
    """Tune was asked to stop (Ctrl-C, or SIGUSR1): it stopped the trials and saved its state,
    then returned.

    The study must stop there too, not go on with a part of its trials; `seqlab resume`
    continues it from Tune's saved state.
    """


def tune_storage() -> str:
    """Where Ray Tune keeps its experiments' state, results and checkpoints.

    Beside the datasets when the store is an object store (`SEQLAB_STORE=s3://...`): every node
    of a cluster reaches the bucket, and Tune's trials on other nodes need storage they all
    share. Otherwise under `SEQLAB_HOME`, on the driver's disk.
    """
    root = settings.data_store()
    return (
        join(root, "ray_results")
        if store.is_url(root)
        else str(settings.seqlab_home() / "ray_results")
    )


def _run_config(label: str, callbacks: list[tune.Callback], **extra: Any) -> tune.RunConfig:
    """Results in Tune's storage, our own callbacks for output, one retry from a checkpoint
    (one that still exists: `RestorableCheckpoints`)."""
    return tune.RunConfig(
        name=f"{label}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=tune_storage(),
        callbacks=[*callbacks, RestorableCheckpoints()],
        failure_config=tune.FailureConfig(max_failures=1),
        verbose=0,
        **extra,
    )


def _tuner(
    parent_run_id: str,
    phase: str,
    trainable: Any,
    run_config: tune.RunConfig,
    new: Callable[[], tune.Tuner],
) -> tune.Tuner:
    """The phase's Tuner: restored from Tune's saved state when the study ran it before.

    The parent run's `seqlab.tune.<phase>` tag records where each Tuner keeps its state. A
    resumed study finds it there: `Tuner.restore` then reruns no finished trial, and continues
    every unfinished one from its last checkpoint. A fresh study records it before fitting.
    """
    client, tag = tracking.client(), f"seqlab.tune.{phase}"
    path = client.get_run(parent_run_id).data.tags.get(tag)
    # A Tuner stopped before it first saved the experiment's state has nothing to restore
    # (Tune would restore its tuner.pkl with no trials): the phase starts again.
    if path and tune.Tuner.can_restore(path) and _saved_state(path):
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True)
    client.set_tag(parent_run_id, tag, join(str(run_config.storage_path), str(run_config.name)))
    return new()


def _saved_state(experiment: str) -> bool:
    """Whether Tune saved the experiment's state at `experiment` (a path or a URL)."""
    fs, root = fsspec.core.url_to_fs(experiment)
    fs.invalidate_cache(root)  # an object store's listing may be cached from before Tune wrote
    return bool(fs.glob(f"{root}/experiment_state-*"))


def local_checkpoint(checkpoint: tune.Checkpoint, *where: str) -> str:
    """A local directory holding `checkpoint`: its own where Tune's storage is on this disk,
    else a copy under `SEQLAB_HOME/checkpoints/<where...>` (the driver reads it to test and
    register the model)."""
    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return checkpoint.path
    return checkpoint.to_directory(str(settings.seqlab_home().joinpath("checkpoints", *where)))


@dataclass
class _Fitting:
    """A Tuner fitting in this process: the SIGUSR1 handler in place before it started, and
    whether it was asked to stop."""

    before: object
    stopped: bool = False


_FITTING: list[_Fitting] = []


def stop_tuning(frame: FrameType | None) -> bool:
    """Ask the Tuner fitting in this process to stop as Tune's own Ctrl-C handler does.

    Tune then leaves its loop at the next step, saves the experiment's state once more, with
    every result it has processed, stops the trials and returns; `_fit` raises
    StudyInterrupted. Ctrl-C's handler (`cli`) calls this: Tune's SIGINT handler is off (see
    `settings`), and a KeyboardInterrupt raised in Tune's loop would skip that last save, so a
    resumed study would train again what the last few seconds trained. Tune installs its stop
    handler for SIGUSR1 on each fit, from the main thread only, and never removes it.

    Returns:
        False when no Tuner is fitting, or this fit's Tune has not installed its handler yet
        (or could not: not the main thread); the caller raises KeyboardInterrupt instead.
    """
    if not _FITTING:
        return False
    fitting = _FITTING[-1]
    handler = signal.getsignal(signal.SIGUSR1)
    if handler is fitting.before or not callable(handler):
        return False
    fitting.stopped = True
    handler(signal.SIGUSR1, frame)
    return True


def _fit(tuner: tune.Tuner, parent_run_id: str, kind: str, variant: str | None) -> Any:
    """Run the Tuner; whatever stops it, no MLflow run of its trials stays RUNNING.

    Raises StudyInterrupted when Tune returned with trials unfinished, or was asked to stop
    (`stop_tuning`, Ctrl-C). Otherwise, runs of trials that Tune's restored state no longer
    knew (started after its last save, before the driver died) are deleted: their trials ran
    again under new ids.
    """
    client = tracking.client()
    fitting = _Fitting(before=signal.getsignal(signal.SIGUSR1))
    _FITTING.append(fitting)
    try:
        results = tuner.fit()
    finally:
        _FITTING.remove(fitting)
        tracking.end_running(client, parent_run_id, "KILLED")
    unfinished = len(results) - results.num_terminated - results.num_errors
    if unfinished or fitting.stopped:
        raise StudyInterrupted(f"{unfinished} trials unfinished")
    tracking.delete_lost(client, parent_run_id, kind, variant)
    return results


def keep_checkpoints(spec: StudySpec) -> int:
    """The spec's best-N, but at least 4 under PBT: exploiting trials restore others' files."""
    keep = spec.search.keep_checkpoints
    return max(keep, 4) if spec.search.scheduler.name == "pbt" else keep


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
    trainable = _trainable(train_trial, spec, dataset, checkpoint_every=checkpoint_every(spec))
    run_config = _run_config(
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
        reuse_actors=reuse_workers(),
    )
    space = trial_space(spec, variant)
    tuner = _tuner(
        parent_run_id,
        variant,
        trainable,
        run_config,
        lambda: tune.Tuner(
            trainable, param_space=space, tune_config=tune_config, run_config=run_config
        ),
    )
    results = _fit(tuner, parent_run_id, "trial", variant)
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
        checkpoint_dir=local_checkpoint(checkpoint, parent_run_id, variant),
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
    trainable = _trainable(train_repeat, spec, dataset)
    tested = f"test/{dataset.metric}"  # each repeat's last report: its test metrics
    run_config = _run_config(
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
        max_concurrent_trials=spec.search.max_concurrent, reuse_actors=reuse_workers()
    )
    tuner = _tuner(
        parent_run_id,
        "repeats",
        trainable,
        run_config,
        lambda: tune.Tuner(
            trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
        ),
    )
    results = _fit(tuner, parent_run_id, "repeat", None)
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


@task(name="evaluate-and-register")
def evaluate_and_register(
    spec: StudySpec, outcome: VariantOutcome, dataset: DatasetRef
) -> dict[str, float]:
    """Test the variant's best trial on the held-out split; log and register its network.

    The trial's run is reopened to take the model and ended again as it was: its status and
    end time still say when the trial finished, not when its model was registered.
    """
    metrics, module = evaluate(outcome.trial, dataset, outcome.checkpoint_dir)
    name = f"{spec.name}-{outcome.variant}"
    client = tracking.client()
    ended = client.get_run(outcome.run_id).info
    said = io.StringIO()  # MLflow prints each registration to stderr; the study's log keeps it
    with mlflow.start_run(run_id=outcome.run_id), contextlib.redirect_stderr(said):
        mlflow.log_metrics(metrics)
        # A pyfunc model per task family, which `mlflow models serve` and `seqlab sample` load.
        info = serving.log_champion(
            module.net, outcome.trial.params(), dataset, registered_model_name=name
        )
    for line in said.getvalue().splitlines():
        logging.getLogger("seqlab").info(line)
    client.set_terminated(outcome.run_id, ended.status, end_time=ended.end_time)
    client.set_registered_model_alias(name, "champion", info.registered_model_version)
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


def _open_parent(
    client: MlflowClient, spec: StudySpec, source: str, experiment_id: str, dataset: DatasetRef
) -> str:
    """Create the study's parent run, tagged with what reproduces it and who runs it."""
    parent = client.create_run(
        experiment_id,
        run_name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={
            **tracking.provenance_tags(),
            **tracking.driver_tags(),
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
    try:
        client.log_dict(parent_id, spec.model_dump(mode="json"), "spec.json")
        tracking.log_dataset(parent_id, dataset, mlflow=client)
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise
    return parent_id


def _reopen_parent(
    client: MlflowClient, spec: StudySpec, parent_id: str, dataset: DatasetRef
) -> None:
    """Mark an interrupted study's parent run RUNNING again, under this driver."""
    tags = client.get_run(parent_id).data.tags
    problem = resume.spec_changed(parent_id, tags, spec)
    if problem:
        raise ValueError(problem)
    if tags.get("dataset.digest") != dataset.digest:
        raise ValueError(
            f"run {parent_id}: its data digests to {dataset.digest} now, not the "
            f"{tags.get('dataset.digest')} it trained on; the code that generates the data changed"
        )
    client.update_run(parent_id, status="RUNNING")
    for key, value in {
        **tracking.driver_tags(),
        "prefect.resumed_by_flow_run_id": str(flow_run.get_id() or ""),
    }.items():
        client.set_tag(parent_id, key, value)


@flow(name="run_study", log_prints=False)
def run_study(spec: StudySpec, source: str = "", resume_run_id: str | None = None) -> StudyResult:
    """Run a comparison study: prepare data, tune every variant, test and register, report.

    With `resume_run_id` (an interrupted study's parent run) it continues that study: each
    phase's Tuner is restored from the state Tune saved, so no finished trial runs again and
    every trial keeps its MLflow run; champions already registered are not registered again.
    """
    began_at = time.time()
    timings = Timings()
    logger = get_run_logger()
    root = settings.data_store()
    with timings.phase("data"):
        dataset = prepare_data(spec.task.name, spec.task.options.__dict__, spec.task.seed, root)
        if not store.is_prepared(dataset.uri):  # the store was cleared under the cache
            dataset = prepare_data.with_options(refresh_cache=True)(
                spec.task.name, spec.task.options.__dict__, spec.task.seed, root
            )
    with timings.phase("mlflow"):
        mlflow.set_tracking_uri(settings.tracking_uri())
        client = tracking.client()
        experiment_id = tracking.ensure_experiment(client, spec.name)
        if resume_run_id:
            parent_id = resume_run_id
            _reopen_parent(client, spec, parent_id, dataset)
        else:
            parent_id = _open_parent(client, spec, source, experiment_id, dataset)
    verb = "resumes" if resume_run_id else "is"
    logger.info("MLflow parent run %s %s in experiment %r", parent_id, verb, spec.name)

    outcomes: list[VariantOutcome] = []
    left_out: list[LeftOut] = []
    repeats = Repeats(runs=0, failed=0, train_seconds=0.0)
    try:  # from here on, any way out ends the parent run: none is left RUNNING
        with failures.study_log(spec.name):  # the study's log file, up to its report
            with ExitStack() as stack:
                with timings.phase("ray_start"):
                    stack.enter_context(ray_session())
                for variant in spec.variants:
                    with timings.phase("trials"):
                        tuned = tune_variant(spec, variant, dataset, experiment_id, parent_id)
                    (left_out if isinstance(tuned, LeftOut) else outcomes).append(tuned)
                if outcomes:  # the variants that trained go on without those that could not
                    with timings.phase("repeats"):
                        repeats = repeat_best(spec, outcomes, dataset, experiment_id, parent_id)
                    left_out += repeats.left_out
                _record_left_out(client, parent_id, left_out, logger)
            dropped = {gone.variant for gone in left_out}
            outcomes = [o for o in outcomes if o.variant not in dropped]
            with timings.phase("register"):
                for outcome in outcomes:
                    if not client.search_model_versions(f"run_id = '{outcome.run_id}'"):
                        evaluate_and_register(spec, outcome, dataset)  # not yet, if resumed
            with timings.phase("report"):
                built = publish_report(spec, parent_id)
    except BaseException as stopped:
        interrupted = isinstance(stopped, KeyboardInterrupt)
        client.set_terminated(parent_id, "KILLED" if interrupted else "FAILED")
        if interrupted:
            INTERRUPTED_STUDY_CLOSED.set()
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
        left_out={gone.variant: gone.reason for gone in left_out},
    )


def _record_left_out(
    client: MlflowClient, parent_id: str, left_out: list[LeftOut], logger: Any
) -> None:
    """Tag the parent run `left_out.<variant>` with why (the report reads them), and say so."""
    for gone in left_out:
        client.set_tag(parent_id, f"left_out.{gone.variant}", gone.reason)
        line = f"variant {gone.variant} is left out of the comparison: {gone.reason}"
        logger.warning(line)
        logging.getLogger("seqlab").warning(line)  # the study's log file
