"""The MLflow side of a study: its experiment, the client, provenance tags, the dataset's
input, and finding, ending and deleting a study's runs.

Trials' runs are written by the Tune callback in `pipelines.tracking.trial_runs`.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import warnings
from importlib import metadata
from typing import TYPE_CHECKING

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipelines.ops import settings

if TYPE_CHECKING:
    from pipelines.data.store import DatasetRef

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
    from pipelines.ops.records import process_started

    pid = os.getpid()
    return {
        "seqlab.driver.host": socket.gethostname(),
        "seqlab.driver.pid": str(pid),
        "seqlab.driver.started": process_started(pid) or "",
    }


def driver_alive(tags: dict[str, str]) -> bool | None:
    """Whether the driver a parent run's tags name still runs: None when it ran on another host."""
    from pipelines.ops.records import process_started

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


# The tag of a suite's task study (its parent run, a child of the suite's): the task's label.
SUITE_TASK = "suite.task"


def latest_study_run(mlflow: MlflowClient, study: str, *, finished: bool) -> Run | None:
    """The newest parent run of a study (or of a suite) that has finished (or, if not
    `finished`, that has not), or None; None also when no experiment carries the study's
    name."""
    experiment = mlflow.get_experiment_by_name(study)
    if experiment is None:
        return None
    status = "=" if finished else "!="
    runs = [
        run
        for kind in ("study", "suite")
        for run in mlflow.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.kind = '{kind}' and attributes.status {status} 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
        )
        if "mlflow.parentRunId" not in run.data.tags  # a suite's, not one of its tasks'
    ]
    return max(runs, key=lambda run: run.info.start_time, default=None)


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


def delete_lost(mlflow: MlflowClient, parent_run_id: str, known: set[str]) -> int:
    """Delete the runs of trials that a resumed Tuner lost; returns how many.

    `known` holds the ids of the trials the study's Tuner knows, once each has ended. A trial
    that started after Tune last saved its state and before the driver died is not among
    them, whether its run was still going (KILLED) or had ended: the restored searcher handed
    out its config again, under a new id, in a new run. The old run is deleted (MLflow keeps
    deleted runs until garbage collection), so the study counts each trial once. A child run
    of no trial (no `trial_id` tag) is not the Tuner's to judge.
    """
    lost = [
        run
        for run in child_runs(mlflow, parent_run_id)
        if run.data.tags.get("trial_id", "") not in known | {""}
    ]
    for run in lost:
        mlflow.set_tag(run.info.run_id, "seqlab.lost", "its trial ran again after a resume")
        mlflow.delete_run(run.info.run_id)
    return len(lost)
