"""Phases 4 and 5: each variant's best trial tested and registered as its champion, and the
report built from MLflow alone, with the winner's alias.
"""

from __future__ import annotations

import contextlib
import io
import logging

import mlflow
import mlflow.pytorch  # noqa: F401  (the champion's flavour: logged with its torch network)
from prefect import task
from prefect.artifacts import create_markdown_artifact

from pipelines import report, serving, tracking
from pipelines.data.store import DatasetRef
from pipelines.report.markdown import Report
from pipelines.study.search import VariantOutcome
from pipelines.study.timings import timed
from pipelines.trial.trainable import evaluate


@timed("register")
def register_champions(study: str, outcomes: list[VariantOutcome], dataset: DatasetRef) -> None:
    """Test and register each variant's best trial, but one registered already (a resumed
    study's)."""
    client = tracking.client()
    for outcome in outcomes:
        if not client.search_model_versions(f"run_id = '{outcome.run_id}'"):
            evaluate_and_register(study, outcome, dataset)


@task(name="evaluate-and-register")
def evaluate_and_register(
    study: str, outcome: VariantOutcome, dataset: DatasetRef
) -> dict[str, float]:
    """Test the variant's best trial on the held-out split; log and register its network.

    The trial's run is reopened to take the model and ended again as it was: its status and
    end time still say when the trial finished, not when its model was registered.
    """
    metrics, module = evaluate(outcome.trial, dataset, outcome.checkpoint_dir)
    name = f"{study}-{outcome.variant}"
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


@timed("report")
@task(name="report")
def publish_report(study: str, parent_run_id: str) -> Report:
    """Build the report from MLflow alone; publish it to MLflow and as a Prefect artifact."""
    client = tracking.client()
    built = report.build(report.collect(client, parent_run_id))
    report.publish(client, parent_run_id, built)
    key = "".join(c if c.isalnum() else "-" for c in study.lower()) + "-report"
    create_markdown_artifact(markdown=built.markdown, key=key, description=f"study {study}")
    if built.winner is not None:
        winner = f"{study}-{built.winner}"  # the winning variant's registered model
        version = client.get_model_version_by_alias(winner, "champion")
        client.set_registered_model_alias(winner, "winner", version.version)
    return built
