"""The study's parent MLflow run: opened (or reopened, to resume), tagged with what reproduces
it, and ended FINISHED, FAILED or KILLED however the study ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from prefect import get_run_logger
from prefect.runtime import flow_run

from pipelines import tracking
from pipelines.data.store import DatasetRef
from pipelines.ops import settings
from pipelines.spec import StudySpec
from pipelines.study import resume, tuning
from pipelines.study.search import LeftOut
from pipelines.study.timings import PhaseSpan, Timings, phase


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
    problem = resume.spec_changed(parent_id, tags, spec) or resume.older_layout(
        parent_id, tags, spec
    )
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


@dataclass
class StudyRun:
    """A study's parent run while the study runs: where its trials' runs and its report go."""

    client: MlflowClient
    experiment_id: str
    run_id: str

    def leave_out(self, left_out: list[LeftOut]) -> dict[str, str]:
        """Tag the run `left_out.<variant>` with why (the report reads them), and say so;
        each variant left out, and why."""
        logger = get_run_logger()
        for gone in left_out:
            self.client.set_tag(self.run_id, f"left_out.{gone.variant}", gone.reason)
            line = f"variant {gone.variant} is left out of the comparison: {gone.reason}"
            logger.warning(line)
            logging.getLogger("seqlab").warning(line)  # the study's log file
        return {gone.variant: gone.reason for gone in left_out}

    def log_timings(
        self, timings: Timings, train_seconds: float, spans: Mapping[str, PhaseSpan]
    ) -> None:
        """The phases' wall-clock seconds and the trials' summed training time, as
        `timing/<phase>_s` metrics; for the search and the repeats, which overlap, each one's
        span and summed work (`timing/search_span_s`, `timing/search_work_s`, ...)."""
        now = int(time.time() * 1000)
        seconds = {**timings.phases, "train": train_seconds}
        for name, span in spans.items():
            seconds |= {f"{name}_span": span.span_s, f"{name}_work": span.work_s}
        metrics = [Metric(f"timing/{name}_s", value, now, 0) for name, value in seconds.items()]
        self.client.log_batch(self.run_id, metrics=metrics)


@contextmanager
def study_run(
    spec: StudySpec, source: str, dataset: DatasetRef, resume_run_id: str | None
) -> Iterator[StudyRun]:
    """The study's parent run, open while inside: a new one, or with `resume_run_id` an
    interrupted study's, reopened. Leaving normally ends it FINISHED; any other way out ends
    it FAILED, or KILLED when the study was interrupted, so none is left RUNNING."""
    with phase("mlflow"):
        mlflow.set_tracking_uri(settings.tracking_uri())
        client = tracking.client()
        experiment_id = tracking.ensure_experiment(client, spec.name)
        if resume_run_id:
            run_id = resume_run_id
            _reopen_parent(client, spec, run_id, dataset)
        else:
            run_id = _open_parent(client, spec, source, experiment_id, dataset)
    verb = "resumes" if resume_run_id else "is"
    get_run_logger().info("MLflow parent run %s %s in experiment %r", run_id, verb, spec.name)
    try:
        yield StudyRun(client, experiment_id, run_id)
    except BaseException as stopped:
        interrupted = tuning.interrupted(stopped)
        client.set_terminated(run_id, "KILLED" if interrupted else "FAILED")
        if interrupted:
            tuning.INTERRUPTED_STUDY_CLOSED.set()
        raise
    client.set_terminated(run_id, "FINISHED")
