"""Phases 4 and 5: each variant's best trial tested and registered as its champion, as soon as
that variant's repeats are over (`ChampionWhenReady`), and the report built from MLflow alone,
with the winner's alias.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from typing import Any

import mlflow
import mlflow.pytorch  # noqa: F401  (the champion's flavour: logged with its torch network)
from prefect import task
from prefect.artifacts import create_markdown_artifact
from ray import tune
from ray.tune.experiment import Trial

from pipelines import report, serving, tracking
from pipelines.data.store import DatasetRef
from pipelines.report import suite as suite_report
from pipelines.report.markdown import Report
from pipelines.spec import StudySpec
from pipelines.study.failures import Divergence
from pipelines.study.search import VariantOutcome, variant_outcome
from pipelines.study.space import METRIC
from pipelines.study.timings import timed
from pipelines.trial.phase import OF_TRIAL, is_repeat, resting_config
from pipelines.trial.trainable import evaluate


@timed("register")
def register_champions(study: str, outcomes: list[VariantOutcome], dataset: DatasetRef) -> None:
    """Test and register each variant's best trial, but one registered already (a resumed
    study's)."""
    for outcome in outcomes:
        if not registered(study, outcome):
            evaluate_and_register(study, outcome, dataset)


class ChampionWhenReady(tune.Callback):
    """Tests and registers a variant's champion (its best search trial) as soon as the last of
    its seeded repeats has ended, while other variants still train: in the study's one Tuner a
    variant is done long before the study is.

    Only a variant the comparison keeps: none of its repeats failed or diverged (one that did
    may leave it out, `repeat.repeats_left_out`, which the study decides once its Tuner is
    done; `register_champions` then registers whatever this did not). It runs on the driver,
    between Tune's events: the trials go on training meanwhile, and their results wait.

    Args:
        spec: the study's spec.
        dataset: the study's dataset.
        parent_run_id: the study's parent run, whose child runs are the trials'.
        diverged: the study's divergence rule.
        seeds: how many repeats each variant has (of every configuration it repeats).
    """

    def __init__(
        self,
        spec: StudySpec,
        dataset: DatasetRef,
        parent_run_id: str,
        diverged: Divergence,
        seeds: int,
    ) -> None:
        self.spec = spec
        self.dataset = dataset
        self.parent_run_id = parent_run_id
        self.diverged = diverged
        self.seeds = seeds
        self.registered: set[str] = set()  # variants whose champion this registered

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._maybe_register(trials, trial)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._maybe_register(trials, trial)

    def _maybe_register(self, trials: list[Trial], ended: Trial) -> None:
        variant = ended.config["variant"]
        if not is_repeat(ended.config) or variant in self.registered:
            return
        repeats = [t for t in trials if is_repeat(t.config) and t.config["variant"] == variant]
        # Tune marks a trial that just completed TERMINATED after its callbacks return (one that
        # failed is ERROR before).
        over = [t for t in repeats if t is ended or t.status in (Trial.TERMINATED, Trial.ERROR)]
        if len(over) < self.seeds:
            return
        if any(t.status == Trial.ERROR or self.diverged(t.last_result or {}) for t in over):
            return  # the study decides, once its Tuner is done
        searched = [
            _result(t) for t in trials if t.config["variant"] == variant and not is_repeat(t.config)
        ]
        chosen = resting_config(
            (t.config[OF_TRIAL], float((t.last_result or {}).get(METRIC, math.nan))) for t in over
        )
        outcome = variant_outcome(
            self.spec, variant, searched, self.parent_run_id, self.diverged, chosen
        )
        if not isinstance(outcome, VariantOutcome):
            return
        self.registered.add(variant)
        if not registered(self.spec.name, outcome):
            evaluate_and_register(self.spec.name, outcome, self.dataset)


def _result(trial: Trial) -> tune.Result:
    """A finished trial as the Tuner's results will hold it: its last result and the best
    checkpoints it kept, as Tune's `ResultGrid` makes them."""
    kept = trial.run_metadata.checkpoint_manager.best_checkpoint_results
    return tune.Result(
        metrics=dict(trial.last_result or {}),
        checkpoint=None,
        error=RuntimeError("the trial failed") if trial.status == Trial.ERROR else None,
        path=trial.path,
        best_checkpoints=[(k.checkpoint, k.metrics) for k in kept],
    )


# How a champion's run had ended, noted on it before registration reopens it.
TRIAL_ENDED = "seqlab.trial_ended"


def registered(study: str, outcome: VariantOutcome) -> bool:
    """Whether the variant's champion is this trial's model, registered to the end: its
    `champion` alias, set last, names a version of the trial's run."""
    try:
        version = tracking.client().get_model_version_by_alias(
            f"{study}-{outcome.variant}", "champion"
        )
    except mlflow.exceptions.MlflowException:  # no such model, or no such alias yet
        return False
    return version.run_id == outcome.run_id


@task(name="evaluate-and-register")
def evaluate_and_register(study: str, outcome: VariantOutcome, dataset: DatasetRef) -> None:
    """Test the variant's best trial on the held-out split; log and register its network.

    The trial's run is reopened to take the model and ended again as it was: its status and
    end time still say when the trial finished, not when its model was registered. They are
    noted on the run first, so that a registration cut short (a driver killed) is finished by
    the next one: it ends the run as the trial had, and, if the version was registered
    already, sets the alias on that version instead of testing and logging the model again.
    """
    name = f"{study}-{outcome.variant}"
    client = tracking.client()
    run = client.get_run(outcome.run_id)
    if TRIAL_ENDED not in run.data.tags:
        ended = {"status": run.info.status, "end_time": run.info.end_time}
        client.set_tag(outcome.run_id, TRIAL_ENDED, json.dumps(ended))
    else:
        ended = json.loads(run.data.tags[TRIAL_ENDED])
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{outcome.run_id}'")
    if versions:
        version = max(int(v.version) for v in versions)
    else:
        metrics, module = evaluate(outcome.trial, dataset, outcome.checkpoint_dir)
        said = io.StringIO()  # MLflow prints each registration to stderr; the study's log keeps it
        with mlflow.start_run(run_id=outcome.run_id), contextlib.redirect_stderr(said):
            mlflow.log_metrics(metrics)
            # A pyfunc model per task family, which `mlflow models serve` and `seqlab sample`
            # load.
            info = serving.log_champion(
                module.net, outcome.trial.params(), dataset, registered_model_name=name
            )
        for line in said.getvalue().splitlines():
            logging.getLogger("seqlab").info(line)
        version = int(info.registered_model_version)
    client.set_terminated(outcome.run_id, ended["status"], end_time=ended["end_time"])
    client.set_registered_model_alias(name, "champion", str(version))


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


@timed("report")
@task(name="suite-report")
def publish_suite_report(suite_run_id: str) -> Report:
    """Build the suite's report across its tasks from MLflow alone; publish it to the suite's
    parent run and as a Prefect artifact."""
    client = tracking.client()
    record = suite_report.collect_suite(client, suite_run_id)
    built = suite_report.build_suite(record)
    report.publish(client, suite_run_id, built)
    key = "".join(c if c.isalnum() else "-" for c in record.suite.lower()) + "-report"
    create_markdown_artifact(markdown=built.markdown, key=key, description=f"suite {record.suite}")
    return built
