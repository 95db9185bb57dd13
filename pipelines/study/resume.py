"""`seqlab resume STUDY`: find an interrupted study's parent run and the spec it ran.

The flow itself resumes (`flows.run_study(..., resume_run_id=...)`): each phase's Tuner is
restored from the state Ray Tune saved, whose path the parent run records.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.ops import settings
from pipelines.spec import SpecError, StudySpec, SuiteSpec, parse_spec

TUNER_TAG = "seqlab.tune.trials"  # where the study's one Tuner keeps its state (`tuning.tuner`)


class ResumeError(Exception):
    """Why a study cannot be resumed: printed as one line."""


def find(
    client: MlflowClient, study: str, run_id: str | None = None, *, force: bool = False
) -> tuple[Run, StudySpec | SuiteSpec]:
    """The parent run to resume (default: the study's newest unfinished one) and its spec: a
    study's, or a suite's (whose unfinished tasks the suite's flow resumes in turn).

    Refuses a finished run, a child run, a run whose driver still runs on this machine
    (or, without `force`, ran on another machine: it may still run there), and a run whose
    recorded spec this seqlab reads differently from the seqlab that began it.
    """
    parent = _parent(client, study, run_id)
    info, tags = parent.info, parent.data.tags
    if tags.get("kind") not in ("study", "suite") or "mlflow.parentRunId" in tags:
        raise ResumeError(f"--run: {info.run_id} is not a study's parent run")
    if info.status == "FINISHED":
        raise ResumeError(f"study {study!r}: run {info.run_id} has finished; nothing to resume")
    if info.status == "RUNNING":
        alive = tracking.driver_alive(tags)
        pid = tags.get("seqlab.driver.pid", "?")
        if alive:
            raise ResumeError(
                f"study {study!r}: run {info.run_id} is still running (driver PID {pid}); "
                "stop it with Ctrl-C first"
            )
        if alive is None and not force:
            host = tags.get("seqlab.driver.host", "?")
            raise ResumeError(
                f"study {study!r}: run {info.run_id} is marked RUNNING by a driver on {host}; "
                "make sure it has stopped, then pass --force"
            )
    if tags["kind"] == "suite":
        suite = recorded_suite(_artifact(client, info.run_id, "suite.json"))
        problem = suite_changed(info.run_id, tags, suite)
        if problem:
            raise ResumeError(problem)
        return parent, suite
    spec = _spec(client, info.run_id)
    problem = spec_changed(info.run_id, tags, spec)
    if problem:
        raise ResumeError(problem)
    return parent, spec


def suite_changed(run_id: str, tags: dict[str, str], suite: SuiteSpec) -> str | None:
    """Why a suite's recorded spec no longer matches its parent run's digest, or None."""
    if tags.get("spec.hash") == suite.digest():
        return None
    return (
        f"run {run_id} suite.json: validates to digest {suite.digest()} under this seqlab, "
        f"not the {tags.get('spec.hash')} the suite ran with (a default or field changed)"
    )


def spec_changed(run_id: str, tags: dict[str, str], spec: StudySpec) -> str | None:
    """Why the study's recorded `spec` no longer matches the digest its parent run was tagged
    with (this seqlab reads it differently), or None when it matches."""
    if tags.get("spec.hash") == spec.digest():
        return None
    return (
        f"run {run_id} spec.json: validates to digest {spec.digest()} under this seqlab, "
        f"not the {tags.get('spec.hash')} the study ran with (a default or field changed)"
    )


def older_layout(run_id: str, tags: dict[str, str], spec: StudySpec) -> str | None:
    """Why a study cannot be resumed whose trials ran in Tuners of an older layout, or None.

    The study's trials run in one Tuner (`trials`, tagged `seqlab.tune.trials`). seqlab once ran
    a Tuner per variant's search (tagged `seqlab.tune.<variant>`), then one for every search
    and one for the repeats (`seqlab.tune.search`, `seqlab.tune.repeats`). This seqlab would
    start its one Tuner from the beginning, beside the runs of the trials those had finished.
    """
    if TUNER_TAG in tags:
        return None
    older = ["seqlab.tune.search", "seqlab.tune.repeats"]
    older += [f"seqlab.tune.{variant}" for variant in spec.variants]
    if not any(tag in tags for tag in older):
        return None  # stopped before its trials began
    return (
        f"run {run_id}: its trials ran in Ray Tune experiments of an older seqlab (one per "
        "variant or per phase), which this seqlab cannot continue; run the study again"
    )


def _parent(client: MlflowClient, study: str, run_id: str | None) -> Run:
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise ResumeError(f"study: no study {study!r} in {settings.tracking_uri()}")
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise ResumeError(f"--run: no run {run_id!r} in {settings.tracking_uri()}") from None
        if run.info.experiment_id != experiment.experiment_id:
            raise ResumeError(f"--run: run {run_id} is not a run of study {study!r}")
        return run
    run = tracking.latest_study_run(client, study, finished=False)
    if run is None:
        raise ResumeError(f"study {study!r}: no interrupted run to resume; all have finished")
    return run


def _spec(client: MlflowClient, run_id: str) -> StudySpec:
    """The validated spec the run recorded (its `spec.json` artifact)."""
    return recorded_spec(_artifact(client, run_id, "spec.json"), f"run {run_id} spec.json")


def _artifact(client: MlflowClient, run_id: str, name: str) -> dict:
    try:
        return json.loads(Path(client.download_artifacts(run_id, name)).read_text())
    except (MlflowException, OSError, ValueError) as err:
        raise ResumeError(f"run {run_id}: cannot read its {name}: {err}") from None


def recorded_suite(raw: dict) -> SuiteSpec:
    """The SuiteSpec a suite recorded in its suite.json: each task's study validated again."""
    studies = {
        label: recorded_spec(study, f"suite.json studies.{label}")
        for label, study in raw["studies"].items()
    }
    return SuiteSpec(raw["name"], raw.get("description", ""), studies)


def recorded_spec(raw: dict, source: str) -> StudySpec:
    """The StudySpec a study recorded in its spec.json, validated again.

    spec.json holds the validated spec with every default filled in, `fixed` included. A
    searched key cannot have been fixed by the user (validation forbids both), so its value in
    `fixed` is a filled-in default: it is dropped, or validation would see the key twice.
    """
    search = raw.get("search", {})
    searched = set(search.get("space", {}))
    for additions in search.get("per_variant", {}).values():
        searched |= set(additions)
    raw = {**raw, "fixed": {k: v for k, v in raw.get("fixed", {}).items() if k not in searched}}
    try:
        return parse_spec(raw, source)
    except SpecError as err:
        raise ResumeError(str(err)) from None
