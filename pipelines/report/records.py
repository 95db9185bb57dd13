"""A study as MLflow holds it: its parent run, its trials' and repeats' runs, and what the
report reads of each (`collect`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from pipelines import tracking


@dataclass(frozen=True)
class RunRecord:
    """One child run: a search trial or a seeded repeat."""

    run_id: str
    variant: str
    kind: str
    seed: int
    status: str
    start_time: int
    params: dict[str, str]
    metrics: dict[str, float]
    history: dict[str, list[float]] = field(default_factory=dict)  # key -> value per epoch
    tags: dict[str, str] = field(default_factory=dict)  # `diverged`, `error`: why it FAILED

    @property
    def epochs(self) -> int:
        return len(self.history.get("val/loss", []))

    @property
    def best_val(self) -> float:
        return min(self.history.get("val/loss", []), default=math.nan)


@dataclass(frozen=True)
class StudyRecord:
    """Everything a report needs, read back from one parent run and its children."""

    study: str
    parent_run_id: str
    tags: dict[str, str]
    spec: dict[str, Any]
    runs: list[RunRecord]

    @property
    def metric(self) -> str:
        return self.tags["dataset.metric"]

    @property
    def baseline(self) -> float:
        return float(self.tags["dataset.baseline"])

    @property
    def variants(self) -> list[str]:
        return list(self.spec["variants"])

    @property
    def left_out(self) -> dict[str, str]:
        """The variants the study went on without, and why (`flows.LeftOut`, tagged on the
        parent run as `left_out.<variant>`), in the spec's order."""
        tags = self.tags
        return {v: tags[f"left_out.{v}"] for v in self.variants if f"left_out.{v}" in tags}

    def of(self, kind: str, variant: str | None = None) -> list[RunRecord]:
        return [
            r for r in self.runs if r.kind == kind and (variant is None or r.variant == variant)
        ]


def latest_parent(client: MlflowClient, study: str) -> str | None:
    """The newest finished parent run of a study (or of a suite), or None. A suite's task's
    study, `<suite>.<label>`, is found in the suite's experiment."""
    run = tracking.latest_study_run(client, study, finished=True)
    if run is None and "." in study:
        suite, _, label = study.rpartition(".")
        experiment = client.get_experiment_by_name(suite)
        runs = (
            []
            if experiment is None
            else client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.kind = 'study' and tags.`{tracking.SUITE_TASK}` = '{label}' "
                "and attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
        )
        run = runs[0] if runs else None
    return run.info.run_id if run else None


def collect(client: MlflowClient, parent_run_id: str) -> StudyRecord:
    """Read a study's parent run, its child runs and their per-epoch histories."""
    parent = client.get_run(parent_run_id)
    spec = json.loads(Path(client.download_artifacts(parent_run_id, "spec.json")).read_text())
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=10_000,
    )
    runs = []
    for child in children:
        tags = child.data.tags
        history = {
            key: [
                m.value
                for m in sorted(
                    client.get_metric_history(child.info.run_id, key), key=lambda m: m.step
                )
            ]
            for key in ("train/loss", "val/loss")
        }
        runs.append(
            RunRecord(
                run_id=child.info.run_id,
                variant=tags.get("variant", "?"),
                kind=tags.get("kind", "trial"),
                seed=int(tags.get("seed", 0) or 0),
                status=child.info.status,
                start_time=child.info.start_time or 0,
                params=dict(child.data.params),
                metrics=dict(child.data.metrics),
                history=history,
                tags=dict(tags),
            )
        )
    runs.sort(key=lambda r: (r.start_time, r.run_id))
    return StudyRecord(
        study=spec["name"],
        parent_run_id=parent_run_id,
        tags=dict(parent.data.tags),
        spec=spec,
        runs=runs,
    )
