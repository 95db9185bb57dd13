"""Retrain one recorded trial from its MLflow run, and compare its metrics with the original's.

The run's params are the trial's whole config, and the parent run's `spec.json` names the task,
so the dataset is prepared again (a store hit when it is still there) and checked against the
recorded digest. Training runs in this process, without Ray, with as many threads as the trial
had CPUs: on a CPU the per-epoch losses then match the original's.

The training libraries load only once the run has been found and can be retrained, so that a
wrong run id is answered in a few seconds.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.ops import settings
from pipelines.spec.task import parse_task
from seqmodels.config import TrialConfig

COMPARED = ("train/loss", "val/loss")


class RerunError(Exception):
    """A run that cannot be rerun; the message is one line for the user."""


@dataclass
class Rerun:
    run_id: str
    config: dict[str, Any]
    original: dict[str, list[float]]  # metric -> per-epoch values of the recorded run
    again: dict[str, list[float]]  # the same, retrained here

    def max_abs_diff(self) -> float:
        return max(
            abs(a - b)
            for key in COMPARED
            for a, b in zip(self.original[key], self.again[key], strict=True)
        )

    def matches(self, rtol: float = 1e-5, atol: float = 1e-7) -> bool:
        return all(
            abs(a - b) <= atol + rtol * abs(a)
            for key in COMPARED
            for a, b in zip(self.original[key], self.again[key], strict=True)
        )


def _value(text: str) -> Any:
    """A param back to its Python value: params were logged as `str(value)`."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string, e.g. a cell's name


def load(client: MlflowClient, run_id: str) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """The trial's config, its study's spec and its recorded per-epoch metrics."""
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise RerunError(f"{run_id}: {err.message.splitlines()[0]}") from None
    kind = run.data.tags.get("kind")
    if kind not in ("trial", "repeat"):
        raise RerunError(f"{run_id}: not a trial or a repeat (kind {kind!r}); pick a child run")
    parent_id = run.data.tags["mlflow.parentRunId"]
    # The validated spec as the study logged it, defaults filled in: read, not re-validated.
    spec = json.loads(Path(client.download_artifacts(parent_id, "spec.json")).read_text())
    if kind == "trial" and spec["search"]["scheduler"]["name"] == "pbt":
        raise RerunError(
            f"{run_id}: a population-based-training trial changed its config while it trained; "
            "only a fixed config can be retrained"
        )
    config = {key: _value(text) for key, text in run.data.params.items()}
    history = {
        key: [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
        for key in COMPARED
    }
    if not history["val/loss"]:
        raise RerunError(f"{run_id}: the run recorded no epoch to compare with")
    return config, spec, {"history": history, "parent": client.get_run(parent_id)}


def rerun(client: MlflowClient, run_id: str) -> Rerun:
    """Retrain the trial of `run_id` for as many epochs as it recorded, and collect its metrics."""
    config, spec, recorded = load(client, run_id)
    from pipelines.data import store  # the training libraries, now that they are needed
    from pipelines.trial import trainable

    history = recorded["history"]
    task = parse_task(spec["task"], "spec.json")
    dataset = store.prepare(task.name, task.options.__dict__, task.seed, settings.data_store())
    digest = recorded["parent"].data.tags.get("dataset.digest")
    if digest and dataset.digest != digest:
        raise RerunError(
            f"{run_id}: the task now generates dataset {dataset.digest}, not the recorded {digest}"
        )
    trial = TrialConfig.from_params(config)
    # A trial stopped early by its scheduler trained fewer epochs than `max_epochs`.
    epochs = len(history["val/loss"])
    trial = dataclasses.replace(trial, train=dataclasses.replace(trial.train, max_epochs=epochs))
    threads = max(1, int(spec["resources"]["cpu"]))  # as many as the trial's worker had
    again = trainable.train_in_process(trial, dataset, threads, COMPARED)
    return Rerun(run_id, trial.params(), history, again)
