"""The study's parent MLflow run: opened (or reopened, to resume), tagged with what reproduces
it, and ended FINISHED, FAILED or KILLED however the study ends; and a suite's, whose children
are its tasks' studies' parent runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
from mlflow.entities import Metric, Run
from mlflow.tracking import MlflowClient
from prefect import get_run_logger
from prefect.runtime import flow_run

from pipelines import tracking
from pipelines.data.store import DatasetRef
from pipelines.ops import settings
from pipelines.spec import StudySpec, SuiteSpec
from pipelines.study import resume, tuning
from pipelines.study.search import LeftOut
from pipelines.study.timings import PhaseSpan, Timings, phase


@dataclass(frozen=True)
class Within:
    """Where a task's study of a suite keeps its parent run: in the suite's experiment, a
    child of the suite's parent run, tagged with its task's label."""

    experiment_id: str
    suite_run_id: str
    label: str

    def tags(self) -> dict[str, str]:
        return {"mlflow.parentRunId": self.suite_run_id, tracking.SUITE_TASK: self.label}


def _open_parent(
    client: MlflowClient,
    spec: StudySpec,
    source: str,
    experiment_id: str,
    dataset: DatasetRef,
    within: Within | None = None,
) -> str:
    """Create the study's parent run, tagged with what reproduces it and who runs it."""
    parent = client.create_run(
        experiment_id,
        run_name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={
            **_parent_tags("study", spec.digest(), source),
            **(within.tags() if within else {}),
            "dataset.digest": dataset.digest,
            "dataset.metric": dataset.metric,
            "dataset.baseline": str(dataset.baseline),
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


def _parent_tags(kind: str, digest: str, source: str) -> dict[str, str]:
    """The tags every parent run (a study's, a suite's) starts with: what reproduces it, who
    runs it, and the Prefect flow run it is in."""
    return {
        **tracking.provenance_tags(),
        **tracking.driver_tags(),
        "kind": kind,
        "spec.hash": digest,
        "spec.source": source,
        "prefect.flow_run_id": str(flow_run.get_id() or ""),
        # The run a user started (from the UI, a deployment), when this one is nested.
        "prefect.root_flow_run_id": str(flow_run.root_flow_run_id or ""),
        "prefect.flow_run_url": flow_run.ui_url or "",
    }


def _mark_resumed(client: MlflowClient, run_id: str) -> None:
    """A parent run RUNNING again, tagged with this driver and the flow run resuming it."""
    client.update_run(run_id, status="RUNNING")
    for key, value in {
        **tracking.driver_tags(),
        "prefect.resumed_by_flow_run_id": str(flow_run.get_id() or ""),
    }.items():
        client.set_tag(run_id, key, value)


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
    _mark_resumed(client, parent_id)


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
    spec: StudySpec,
    source: str,
    dataset: DatasetRef,
    resume_run_id: str | None,
    within: Within | None = None,
) -> Iterator[StudyRun]:
    """The study's parent run, open while inside: a new one, or with `resume_run_id` an
    interrupted study's, reopened. Leaving normally ends it FINISHED; any other way out ends
    it FAILED, or KILLED when the study was interrupted, so none is left RUNNING.

    `within`: the study of one task of a suite, whose parent run is a child of the suite's.
    """
    with phase("mlflow"):
        mlflow.set_tracking_uri(settings.tracking_uri())
        client = tracking.client()
        if within:
            experiment_id = within.experiment_id
        else:
            experiment_id = tracking.ensure_experiment(client, spec.name)
        if resume_run_id:
            run_id = resume_run_id
            _reopen_parent(client, spec, run_id, dataset)
        else:
            run_id = _open_parent(client, spec, source, experiment_id, dataset, within)
    verb = "resumes" if resume_run_id else "is"
    where = f"suite run {within.suite_run_id}" if within else f"experiment {spec.name!r}"
    get_run_logger().info("MLflow parent run %s %s in %s", run_id, verb, where)
    with _ended(client, run_id, closes_study=within is None):
        yield StudyRun(client, experiment_id, run_id)


# The parent runs open in this process (a suite's, its task's study's), innermost last; the
# lock guards it against an interrupted driver's exit (`end_open_runs`, in another thread).
_OPEN: list[tuple[MlflowClient, str]] = []
_OPEN_LOCK = threading.Lock()
END_OPEN_RUNS_S = 5.0  # how long an exiting driver waits for the store to end them


def end_open_runs(status: str) -> None:
    """End every parent run still open: what an interrupted driver does as it exits, when
    Prefect's report of its crashed flow runs (to an API server that Ctrl-C stopped too) held
    the study up for longer than it may take. Waits at most `END_OPEN_RUNS_S` (a store that
    does not answer would retry for minutes); runs it could not end stay RUNNING, which
    `seqlab resume` accepts once their driver is gone."""

    def end() -> None:
        with _OPEN_LOCK:
            still = list(_OPEN)
        for client, run_id in reversed(still):
            with contextlib.suppress(Exception):  # a store that cannot be written: resume copes
                client.set_terminated(run_id, status)

    ending = threading.Thread(target=end, name="seqlab-end-open-runs", daemon=True)
    ending.start()
    ending.join(END_OPEN_RUNS_S)


@contextmanager
def _ended(client: MlflowClient, run_id: str, closes_study: bool) -> Iterator[None]:
    """End `run_id` FINISHED on leaving normally; FAILED, or KILLED when interrupted, on any
    other way out. `closes_study`: the run is the outermost one, whose end lets an interrupted
    driver exit (`tuning.INTERRUPTED_STUDY_CLOSED`)."""
    with _OPEN_LOCK:
        _OPEN.append((client, run_id))
    try:
        yield
    except BaseException as stopped:
        interrupted = tuning.interrupted(stopped)
        _close(client, run_id, "KILLED" if interrupted else "FAILED")
        if interrupted and closes_study:
            tuning.INTERRUPTED_STUDY_CLOSED.set()
        raise
    _close(client, run_id, "FINISHED")


def _close(client: MlflowClient, run_id: str, status: str) -> None:
    client.set_terminated(run_id, status)
    with _OPEN_LOCK, contextlib.suppress(ValueError):
        _OPEN.remove((client, run_id))


@dataclass
class SuiteRun:
    """A suite's parent run while the suite runs: its tasks' studies are its children."""

    client: MlflowClient
    experiment_id: str
    run_id: str

    def within(self, label: str) -> Within:
        return Within(self.experiment_id, self.run_id, label)

    def task_run(self, label: str) -> Run | None:
        """The parent run of the study of task `label`, if it began (in an earlier driver):
        the newest that recorded its spec (one that failed before it could, never began)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}' and tags.kind = 'study' "
            f"and tags.`{tracking.SUITE_TASK}` = '{label}'",
            order_by=["attributes.start_time DESC"],
        )
        recorded = (r for r in runs if _has_artifact(self.client, r.info.run_id, "spec.json"))
        return next(recorded, None)


def _has_artifact(client: MlflowClient, run_id: str, path: str) -> bool:
    return any(a.path == path for a in client.list_artifacts(run_id))


@contextmanager
def suite_run(suite: SuiteSpec, source: str, resume_run_id: str | None) -> Iterator[SuiteRun]:
    """The suite's parent run, open while inside: new, or an interrupted suite's, reopened;
    ended as `study_run` ends a study's."""
    with phase("mlflow"):
        mlflow.set_tracking_uri(settings.tracking_uri())
        client = tracking.client()
        experiment_id = tracking.ensure_experiment(client, suite.name)
        if resume_run_id:
            run_id = resume_run_id
            problem = resume.suite_changed(run_id, client.get_run(run_id).data.tags, suite)
            if problem:
                raise ValueError(problem)
            _mark_resumed(client, run_id)
        else:
            run_id = _open_suite(client, suite, source, experiment_id)
    verb = "resumes" if resume_run_id else "is"
    get_run_logger().info("MLflow suite run %s %s in experiment %r", run_id, verb, suite.name)
    with _ended(client, run_id, closes_study=True):
        yield SuiteRun(client, experiment_id, run_id)


def _open_suite(client: MlflowClient, suite: SuiteSpec, source: str, experiment_id: str) -> str:
    """Create the suite's parent run, tagged as a study's is, and holding `suite.json`."""
    parent = client.create_run(
        experiment_id,
        run_name=f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={
            **_parent_tags("suite", suite.digest(), source),
            "suite.tasks": ",".join(suite.studies),
        },
    )
    try:
        client.log_dict(parent.info.run_id, suite.dump(), "suite.json")
    except BaseException:
        client.set_terminated(parent.info.run_id, "FAILED")
        raise
    return parent.info.run_id
