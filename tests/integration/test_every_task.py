"""Every spec that validates runs: a real study of every registered task, and of every file in
`experiments/`, through the real stack (a Prefect flow run, a local Ray, an MLflow SQLite store).

The studies run through the CLI in-process (`pipelines.cli.app`), one after another in one home
with a study name each: the imports, Prefect's ephemeral API server and MLflow's database are
paid once for all of them instead of once a study (a `seqlab run` subprocess costs about a minute
of start-up on 2 cores), and one local Ray, started here, serves every study (`tuning.ray_session`
reuses an initialised Ray). Per-study homes would not isolate more in one process anyway: Prefect
reads its home once, when it is imported. What each study left is read back from MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from seqmodels.tasks import TASKS
from tests.conftest import ROOT
from tests.tiny import tiny_options, write_user_files

pytestmark = pytest.mark.slow

# One variant per task, which its family accepts; together they exercise most architectures
# and every cell. Token tasks read ids one-hot where a variant has no embedding_size.
VARIANTS: dict[str, dict[str, Any]] = {
    "adding": {"architecture": "seq2one", "cell": "gru", "cell_options": {"reset": "before"}},
    "addition": {
        "architecture": "attention",
        "cell": "lstm",
        "arch_options": {"embedding_size": 8},
    },
    "charlm": {"architecture": "recurrent", "cell": "lstm"},  # one-hot characters
    "copy": {
        "architecture": "deep",
        "cell": "relu",
        "arch_options": {"embedding_size": 4, "transition_layers": 1, "skip": True},
    },
    "dates": {
        "architecture": "encoder_decoder",
        "cell": "gru",
        "arch_options": {"embedding_size": 8},
    },
    "g2p": {
        "architecture": "attention",
        "cell": "tanh",
        "arch_options": {"embedding_size": 8, "attention_size": 8, "reverse_source": True},
    },
    "listops": {"architecture": "recursive", "cell": "tanh"},  # one-hot tokens, over the tree
    "pairs_jsonl": {
        "architecture": "encoder_decoder",
        "cell": "lstm",
        "arch_options": {"embedding_size": 8, "context": "initial"},
    },
    "reconstruct": {"architecture": "autoencoder", "cell": "gru"},
    "reverse": {
        "architecture": "encoder_decoder",
        "cell": "leaky",
        "arch_options": {"embedding_size": 8},
    },
    "seq_digits": {"architecture": "seq2one", "cell": "skip", "bidirectional": True},
    "series_csv": {"architecture": "seq2one", "cell": "leaky", "cell_options": {"alpha": 0.7}},
    "sort": {"architecture": "attention", "cell": "gru", "arch_options": {"embedding_size": 8}},
    "sunspots": {"architecture": "seq2one", "cell": "esn"},
    "text": {"architecture": "recurrent", "cell": "tanh"},  # one-hot characters, no embedding
}
HIDDEN = 8
SEEDS = 1


@dataclass(frozen=True)
class Lab:
    """The module's home, its MLflow client, and the user-data files the studies read."""

    home: Path
    specs: Path
    files: dict[str, str]
    client: Any  # mlflow.tracking.MlflowClient


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("every_task")
    saved = dict(os.environ)
    os.environ["SEQLAB_HOME"] = str(root / "home")
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL", "SEQLAB_STORE"):
        os.environ.pop(var, None)
    from pipelines.ops import settings

    settings.configure_environment()  # before Ray is imported: a single-machine Ray
    import ray
    from mlflow.tracking import MlflowClient

    ours = not ray.is_initialized()
    if ours:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    try:
        yield Lab(
            home=root / "home",
            specs=root / "specs",
            files=write_user_files(root / "data"),
            client=MlflowClient(tracking_uri=settings.tracking_uri()),
        )
    finally:
        if ours:
            ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def run_cli(*args: str) -> int:
    """`seqlab ARGS` in this process; its exit status."""
    from pipelines.cli.app import main

    started = time.perf_counter()
    code = main(list(args))
    print(f"seqlab {' '.join(args)}: exit {code} in {time.perf_counter() - started:.1f}s")
    return code


def assert_study_landed(lab: Lab, study: str, variants: list[str], trials: int, seeds: int) -> None:
    """MLflow holds the study: one FINISHED parent with its report, a FINISHED child run per
    trial and per repeat of each variant, and each variant's champion from one of its trials."""
    client = lab.client
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None, f"no MLflow experiment {study!r}"
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert_parent_landed(lab, runs, parents[0], study, variants, trials, seeds)


def assert_suite_landed(
    lab: Lab, suite: str, labels: list[str], variants: list[str], trials: int, seeds: int
) -> None:
    """MLflow holds the suite: one FINISHED parent run with the suite's report, a FINISHED
    child run per task (its study's parent), and under each, the study as a study lands."""
    client = lab.client
    experiment = client.get_experiment_by_name(suite)
    assert experiment is not None, f"no MLflow experiment {suite!r}"
    runs = client.search_runs([experiment.experiment_id], max_results=2000)
    (top,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert (top.info.status, top.data.tags["kind"]) == ("FINISHED", "suite")
    studies = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == top.info.run_id]
    assert sorted(r.data.tags["suite.task"] for r in studies) == sorted(labels)
    for study in studies:
        label = study.data.tags["suite.task"]
        assert study.info.status == "FINISHED" and study.data.tags["kind"] == "study"
        assert_parent_landed(lab, runs, study, f"{suite}.{label}", variants, trials, seeds)
    report = Path(client.download_artifacts(top.info.run_id, "report.md")).read_text()
    assert report.splitlines()[0] == f"# {suite}", report[:300]
    assert "### Per task" in report and "### Across the tasks" in report, report
    for label in labels:
        assert f"| {label} |" in report, report  # its row in the per-task table


def assert_parent_landed(
    lab: Lab, runs: list, parent: Any, study: str, variants: list[str], trials: int, seeds: int
) -> None:
    """The study of `parent` holds a FINISHED child run per trial and per repeat of each
    variant, each variant's champion from one of its trials, and its report."""
    client = lab.client
    parent_id = parent.info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    unfinished = [(c.info.run_name, c.info.status) for c in children if c.info.status != "FINISHED"]
    assert children and not unfinished, unfinished  # none RUNNING, none FAILED or KILLED
    for variant in variants:
        mine = [c for c in children if c.data.tags["variant"] == variant]
        kinds = sorted(c.data.tags["kind"] for c in mine)
        assert kinds == ["repeat"] * seeds + ["trial"] * trials, (variant, kinds)
        version = client.get_model_version_by_alias(f"{study}-{variant}", "champion")
        trial_ids = {c.info.run_id for c in mine if c.data.tags["kind"] == "trial"}
        assert version.run_id in trial_ids, f"{study}-{variant}@champion is no trial of it"
        metric = f"test/{parent.data.tags['dataset.metric']}"  # the task's headline metric
        for repeat in (c for c in mine if c.data.tags["kind"] == "repeat"):
            assert math.isfinite(repeat.data.metrics[metric]), (variant, repeat.data.metrics)
    report = Path(client.download_artifacts(parent_id, "report.md")).read_text()
    assert report.splitlines()[0] == f"# {study}", report[:300]
    assert "## Result" in report and "## Reproduce" in report, report
    for variant in variants:
        assert f"| {variant} | {seeds} |" in report, report  # its row: the variant, its repeats


@pytest.mark.parametrize("task", TASKS.names())
def test_a_tiny_study_of_every_task_runs(lab: Lab, task: str) -> None:
    variant = VARIANTS[task]  # a task registered without a variant here fails, never skips
    study = f"task-{task}"
    spec = {
        "name": study,
        "task": {"name": task, "options": tiny_options(task, lab.files)},
        "variants": {"only": {**variant, "hidden_size": HIDDEN}},
        "search": {"space": {"lr": {"loguniform": [0.003, 0.01]}}, "trials_per_variant": 1},
        "fixed": {"max_epochs": 1, "batch_size": 16},
        "seeds": SEEDS,
        "resources": {"cpu": 1, "gpu": 0},
    }
    lab.specs.mkdir(exist_ok=True)
    path = lab.specs / f"{task}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    assert run_cli("run", str(path)) == 0
    assert_study_landed(lab, study, ["only"], trials=1, seeds=SEEDS)


EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))
# Every experiment runs shrunk, with no table of its own: one epoch, one trial, one seed, and its
# task at the tiny options of the per-task studies (a task without them fails). One seed means
# no pairwise tests in the report; test_study_integration runs those, on smoke.yaml at 2 seeds.
SHRINK = {"fixed.max_epochs": 1, "search.trials_per_variant": 1, "seeds": 1, "fixed.batch_size": 16}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_smoke_runs(lab: Lab, path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    study = f"experiment-{raw['name']}"
    variants = list(raw["variants"])
    if "tasks" in raw:  # a suite: each task at its tiny options, in a copy of the spec
        for task in raw["tasks"]:
            task["options"] = {**task.get("options", {}), **tiny_options(task["name"], lab.files)}
        lab.specs.mkdir(exist_ok=True)
        path = lab.specs / path.name
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        shrink = dict(SHRINK)
    else:
        shrink = {
            **SHRINK,
            **{
                f"task.options.{k}": v
                for k, v in tiny_options(raw["task"]["name"], lab.files).items()
            },
        }
    overrides = [f"name={study}"] + [f"{k}={json.dumps(v)}" for k, v in shrink.items()]
    args = [item for override in overrides for item in ("--set", override)]
    assert run_cli("run", str(path), *args) == 0
    if "tasks" in raw:
        labels = [t["name"] for t in raw["tasks"]]  # each task named once in the shipped suite
        assert_suite_landed(lab, study, labels, variants, trials=1, seeds=SHRINK["seeds"])
    else:
        assert_study_landed(lab, study, variants, trials=1, seeds=SHRINK["seeds"])
