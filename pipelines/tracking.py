"""MLflow tracking for a study: the parent run, one child run per trial, models and registry.

Only the driver process writes to MLflow: Ray Tune hands every trial's results to the
`TrialRuns` callback on the driver. So an embedded SQLite store never has several writers.
"""

from __future__ import annotations

import json
import math
import os
import platform
import queue
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial

from pipelines import settings
from pipelines.failures import Divergence, trial_error

if TYPE_CHECKING:
    from pipelines.store import DatasetRef

METRIC_PREFIXES = ("train/", "val/", "test/", "diag/")
# Result keys that say where a trial runs (`trainable.placement`); tagged as `ray.node_id`, ...
PLACEMENT_KEYS = ("ray/node_id", "ray/gpu_ids")
PACKAGES = ("torch", "lightning", "ray", "mlflow", "prefect", "pydantic", "seqlab")


def client() -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri())


def ensure_experiment(mlflow: MlflowClient, name: str) -> str:
    """The study's experiment id, created on first use (artifacts under the store by default)."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None if settings.tracking_uri().startswith("http") else settings.artifact_root()
    # The MLflow UI opens an experiment of this kind on its training runs, not its GenAI pages.
    tags = {"mlflow.experimentKind": "custom_model_development"}
    return mlflow.create_experiment(name, artifact_location=location, tags=tags)


def run_url(experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI, when a tracking server serves it; None otherwise."""
    uri = settings.tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return None
    return settings.mlflow_ui_url(uri, experiment_id, run_id)


def artifact_access_problem(mlflow: MlflowClient, name: str) -> str | None:
    """Why the study's experiment cannot take artifacts from here, or None when it can.

    An experiment created through `seqlab up`'s tracking server keeps its artifacts behind that
    server (`mlflow-artifacts:/`), so a run without the server cannot store models there.
    """
    if settings.tracking_uri().startswith(("http://", "https://")):
        return None
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None or not experiment.artifact_location.startswith("mlflow-artifacts:"):
        return None
    return (
        f"study {name!r}: its MLflow experiment keeps artifacts behind the tracking server "
        f"({experiment.artifact_location}); start it with `seqlab up` or set MLFLOW_TRACKING_URI"
    )


def log_dataset(
    run_id: str,
    dataset: DatasetRef,
    *,
    context: str = "training",
    mlflow: MlflowClient | None = None,
) -> None:
    """Log a prepared dataset as an input of an MLflow run (MLflow's dataset tracking).

    The dataset is logged by reference, no data is uploaded: name = the task, digest = the
    store's content digest, source = its URI (a local path or a URL such as s3://...). The
    profile holds the split sizes, the metric and the baseline, so the UI shows them.

    Args:
        run_id: the run that used the dataset (a study's parent run, a trial's run).
        dataset: what `store.prepare` returned.
        context: the `mlflow.data.context` input tag: "training", "evaluation", ...
        mlflow: the client to log with; `client()` (the configured tracking URI) when None.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with warnings.catch_warnings():
        # A local path matches both the "" and "file" schemes; both mean the same source type.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        try:
            source = resolve_dataset_source(dataset.uri)
        except MlflowException:  # an fsspec scheme MLflow has no source type for (memory://)
            source = None
    if source is None:
        meta = {
            "name": dataset.task,
            "digest": dataset.digest,
            "source_type": "fsspec",
            "source": json.dumps({"uri": dataset.uri}),
        }
    else:
        meta = MetaDataset(source=source, name=dataset.task, digest=dataset.digest).to_dict()
    profile = {
        "sizes": dataset.sizes,
        "family": dataset.family,
        "metric": dataset.metric,
        "baseline": dataset.baseline,
    }
    entity = Dataset(
        name=meta["name"],
        digest=meta["digest"],
        source_type=meta["source_type"],
        source=meta["source"],
        profile=json.dumps(profile),
    )
    tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
    (mlflow or client()).log_inputs(run_id, datasets=[DatasetInput(dataset=entity, tags=tags)])


def provenance_tags() -> dict[str, str]:
    """What reproduces a run: code version and the key package versions."""
    tags = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    sha = _git("rev-parse", "HEAD")
    if sha:
        tags["mlflow.source.git.commit"] = sha
        tags["git.dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no")))
    return tags


def driver_tags() -> dict[str, str]:
    """Which process drives the study: `seqlab resume` refuses a study whose driver still runs."""
    from pipelines.stack import process_started  # the stack module imports nothing heavy

    pid = os.getpid()
    return {
        "seqlab.driver.host": socket.gethostname(),
        "seqlab.driver.pid": str(pid),
        "seqlab.driver.started": process_started(pid) or "",
    }


def driver_alive(tags: dict[str, str]) -> bool | None:
    """Whether the driver a parent run's tags name still runs: None when it ran on another host."""
    from pipelines.stack import process_started

    if tags.get("seqlab.driver.host") != socket.gethostname():
        return None
    pid = int(tags.get("seqlab.driver.pid") or 0)
    started = process_started(pid) if pid > 0 else None
    return started is not None and started == tags.get("seqlab.driver.started")


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


class Writer:
    """One background thread that makes MLflow calls in the order they were submitted.

    MLflow's own asynchronous logging (`log_batch(synchronous=False)`) does not fit a driver
    that keeps many runs open: `set_terminated` shuts down the store's whole queue and waits
    for its thread, which polls with a 1 s timeout, so every trial's end cost up to a second
    (`benchmarks/README.md`, under `checkpoint_policy.py`).
    """

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., Any], tuple, dict]] = queue.Queue()
        self.error: BaseException | None = None
        threading.Thread(target=self._work, name="seqlab-mlflow-writer", daemon=True).start()

    def submit(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.calls.put((call, args, kwargs))

    def wait(self) -> None:
        """Return when every call submitted so far is made.

        Raises:
            BaseException: the first error a call raised since the last `wait`.
        """
        self.calls.join()
        error, self.error = self.error, None
        if error is not None:
            raise error

    def _work(self) -> None:
        while True:
            call, args, kwargs = self.calls.get()
            try:
                call(*args, **kwargs)
            except BaseException as error:  # raised again by `wait`, in the driver's thread
                self.error = self.error or error
            finally:
                self.calls.task_done()


class TrialRuns(Callback):
    """A Tune callback that mirrors each trial into an MLflow child run of the study's parent.

    Params are the trial's config; `train/` and `val/` metrics are logged per epoch with
    `step` = epoch index, and `test/` metrics, reported once at the end, as they come. Where the
    trial runs (its Ray node, its GPU ids) becomes tags when first reported, and again if it moves.

    Its state (trial id -> run id) is saved by Tune with the experiment's state, and restored
    with it by `Tuner.restore`, so a resumed study logs to the runs it began: a trial that starts
    again reopens its run and skips the epochs the run already holds.

    The epochs' metrics are written by a `Writer` thread: a trial waits for the driver after
    each report, and would otherwise wait for the write too. They are waited for before a run
    ends, and whenever Tune saves the experiment's state (`get_state`), so that MLflow never
    holds fewer epochs than that state, which a resumed study starts from.

    A trial that raised ends FAILED, tagged `error` with the error's line, its traceback in the
    artifact `error.txt`. A trial that diverged (`failures.Divergence`: non-finite, or far above
    the baseline, at its end) ends FAILED too, tagged `diverged` with the reason: it is no
    result, and the MLflow UI shows it among the failures, not the finished runs.

    Args:
        kind: `trial` for a search trial, `repeat` for a seeded repeat of a chosen config.
        diverged: the study's divergence rule; None: no run is judged.
    """

    # An instance Tune pickled before the rule existed (a study interrupted then) has none.
    diverged: Divergence | None = None

    def __init__(
        self,
        mlflow: MlflowClient,
        experiment_id: str,
        parent_run_id: str,
        kind: str,
        diverged: Divergence | None = None,
    ) -> None:
        self.mlflow = mlflow
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.kind = kind
        self.diverged = diverged
        self.run_ids: dict[str, str] = {}  # trial id -> MLflow run id
        self.open: set[str] = set()  # trial ids whose run has not been ended
        self.placed: dict[str, dict[str, str]] = {}  # trial id -> placement tags on its run
        self.logged: dict[str, int] = {}  # trial id -> last epoch its run holds
        self.restored = False
        self.writer: Writer | None = None  # started on the first epoch's result

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the Tuner; a thread does not pickle
        return {**self.__dict__, "writer": None}

    def get_state(self) -> dict[str, Any]:
        self.wait()
        return {"run_ids": dict(self.run_ids), "placed": dict(self.placed)}

    def wait(self) -> None:
        """Return when every epoch's metrics submitted so far are written.

        Raises:
            MlflowException: a write failed.
        """
        if self.writer is not None:
            self.writer.wait()

    def set_state(self, state: dict[str, Any]) -> None:
        self.run_ids = dict(state["run_ids"])
        self.placed = dict(state["placed"])
        self.restored = True

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None and self.restored:
            # Started after Tune last saved its state, before the driver stopped.
            run_id = self._recorded_run(trial.trial_id)
        if run_id is not None:
            self._reopen(trial.trial_id, run_id)
            return
        variant, seed = trial.config["variant"], trial.config["seed"]
        run = self.mlflow.create_run(
            self.experiment_id,
            run_name=f"{variant}-{self.kind}-{seed}" if self.kind == "repeat" else trial.trial_id,
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "variant": variant,
                "trial_id": trial.trial_id,
                "seed": str(seed),
                "kind": self.kind,
            },
        )
        self.run_ids[trial.trial_id] = run.info.run_id
        self.open.add(trial.trial_id)
        params = [Param(k, str(v)) for k, v in sorted(trial.config.items())]
        self.mlflow.log_batch(run.info.run_id, params=params)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        step = int(result["training_iteration"]) - 1  # the epoch just finished
        if run_id is None or step <= self.logged.get(trial.trial_id, -1):
            return  # an epoch a restored trial repeats: its run has it already
        self.logged[trial.trial_id] = step
        now = int(time.time() * 1000)
        values = [
            Metric(key, float(value), now, step)
            for key, value in result.items()
            if key.startswith(METRIC_PREFIXES) and math.isfinite(float(value))
        ]
        self.writer = self.writer or Writer()
        tags = self._placement_tags(trial, result)
        self.writer.submit(self.mlflow.log_batch, run_id, metrics=values, tags=tags)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        reason = self.diverged(trial.last_result) if self.diverged else None
        run_id = self.run_ids.get(trial.trial_id)
        if reason is None or run_id is None:
            self._end(trial, RunStatus.FINISHED)
            return
        self.wait()
        self.mlflow.set_tag(run_id, "diverged", reason)
        self._end(trial, RunStatus.FAILED)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is not None:
            line, text = trial_error(trial)
            self.wait()
            self.mlflow.set_tag(run_id, "error", line)
            self.mlflow.log_text(run_id, text or line, "error.txt")
        self._end(trial, RunStatus.FAILED)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.close_open("KILLED")  # trials Tune stopped without completing them

    def close_open(self, status: str) -> None:
        """End every run not ended yet, so none is left RUNNING (Ctrl-C, a driver error)."""
        self.wait()
        for trial_id in list(self.open):
            self.mlflow.set_terminated(self.run_ids[trial_id], status)
            self.open.discard(trial_id)

    def _recorded_run(self, trial_id: str) -> str | None:
        runs = self.mlflow.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' "
            f"and tags.kind = '{self.kind}' and tags.trial_id = '{trial_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def _reopen(self, trial_id: str, run_id: str) -> None:
        """A trial that starts again goes on in its own run.

        A trial restored from a checkpoint (a retry after a crash, a resumed study) repeats the
        epochs after that checkpoint that its run already holds: they are not logged twice.
        Within one Tuner the run is open and `logged` knows its last epoch; in a resumed study
        its history in MLflow says.
        """
        self.run_ids[trial_id] = run_id
        if trial_id in self.open:
            return
        if self.mlflow.get_run(run_id).info.status != "RUNNING":
            self.mlflow.update_run(run_id, status="RUNNING")
        self.open.add(trial_id)
        history = self.mlflow.get_metric_history(run_id, "train/loss")
        self.logged[trial_id] = max((m.step for m in history), default=-1)

    def _placement_tags(self, trial: Trial, result: dict) -> list[RunTag]:
        """Tags for where the trial runs, when that is news: once per run, unless it moved."""
        where = {key.replace("/", "."): str(result[key]) for key in PLACEMENT_KEYS if key in result}
        if not where or where == self.placed.get(trial.trial_id):
            return []
        self.placed[trial.trial_id] = where
        return [RunTag(key, value) for key, value in where.items()]

    def _end(self, trial: Trial, status: int) -> None:
        self.wait()
        if trial.trial_id in self.open:
            self.mlflow.set_terminated(self.run_ids[trial.trial_id], RunStatus.to_string(status))
            self.open.discard(trial.trial_id)


def latest_study_run(mlflow: MlflowClient, study: str, *, finished: bool) -> Run | None:
    """The newest parent run of a study that has finished (or, if not `finished`, that has
    not), or None; None also when no experiment carries the study's name."""
    experiment = mlflow.get_experiment_by_name(study)
    if experiment is None:
        return None
    status = "=" if finished else "!="
    runs = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.kind = 'study' and attributes.status {status} 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def child_runs(
    mlflow: MlflowClient,
    parent_run_id: str,
    kind: str | None = None,
    variant: str | None = None,
    status: str | None = None,
) -> list[Run]:
    """The study's child runs, of one kind, variant and status if given; deleted ones excluded."""
    experiment_id = mlflow.get_run(parent_run_id).info.experiment_id
    clauses = [f"tags.mlflow.parentRunId = '{parent_run_id}'"]
    clauses += [f"tags.kind = '{kind}'"] if kind else []
    clauses += [f"tags.variant = '{variant}'"] if variant else []
    clauses += [f"attributes.status = '{status}'"] if status else []
    return mlflow.search_runs(
        [experiment_id], filter_string=" and ".join(clauses), max_results=50_000
    )


def end_running(mlflow: MlflowClient, parent_run_id: str, status: str) -> int:
    """End every child run of the study still RUNNING; returns how many there were.

    After a Tuner returns or raises, no trial of it runs, whatever the Tuner's callbacks saw.
    """
    running = child_runs(mlflow, parent_run_id, status="RUNNING")
    for run in running:
        mlflow.set_terminated(run.info.run_id, status)
    return len(running)


def delete_lost(
    mlflow: MlflowClient, parent_run_id: str, kind: str, variant: str | None = None
) -> int:
    """Delete the runs of trials that a resumed Tuner lost; returns how many.

    When a Tuner has finished, each trial it knows ended its run FINISHED or FAILED. A run
    still KILLED belongs to a trial that started after Tune last saved its state and before the
    driver died: Tune ran that trial again under a new id, in a new run. The old run is deleted
    (MLflow keeps deleted runs until garbage collection) so the study counts each trial once.
    """
    lost = child_runs(mlflow, parent_run_id, kind, variant, status="KILLED")
    for run in lost:
        mlflow.set_tag(run.info.run_id, "seqlab.lost", "its trial ran again after a resume")
        mlflow.delete_run(run.info.run_id)
    return len(lost)
