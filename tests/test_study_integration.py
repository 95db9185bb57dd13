"""A tiny study through the real stack: a local Ray, a Prefect flow run, an MLflow SQLite store.

The study runs once, as a user would run it (`seqlab run`), and the tests read what it left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, seqlab

pytestmark = pytest.mark.slow

SPEC = "experiments/smoke.yaml"
STUDY, VARIANTS, TRIALS, EPOCHS = "smoke", ("rnn", "lstm"), 2, 2


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("study") / "home"
    env = {"SEQLAB_HOME": str(home), "MLFLOW_TRACKING_URI": "", "RAY_ADDRESS": ""}
    env = {k: v for k, v in env.items() if v} | {"PYTHONWARNINGS": "default"}
    clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", SPEC],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    return {"home": home, "env": {**clean, **env}, "result": result, "client": client}


def _runs(study: dict) -> tuple[object, list, list]:
    client: MlflowClient = study["client"]
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None, "one MLflow experiment per study, named after it"
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return experiment, parents, children


def test_state_lives_under_seqlab_home(study: dict) -> None:
    home: Path = study["home"]
    assert (home / "mlflow.db").is_file()
    assert any((home / "data").glob("adding-*/card.json"))
    assert any((home / "ray_results").iterdir())
    assert any((home / "mlartifacts").rglob("comparison.md"))


def test_one_parent_run_with_provenance(study: dict) -> None:
    _, parents, _ = _runs(study)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert len(tags["spec.hash"]) == 16 and len(tags["dataset.digest"]) == 16
    assert tags["version.torch"] and tags["version.ray"] and tags["version.mlflow"]
    assert tags["prefect.flow_run_id"]
    assert {"timing/trials_s", "timing/train_s"} <= set(parent.data.metrics)


def test_one_child_run_per_trial_with_epoch_metrics(study: dict) -> None:
    client: MlflowClient = study["client"]
    _, parents, children = _runs(study)
    assert len(children) == TRIALS * len(VARIANTS)
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert tags["variant"] in VARIANTS and tags["trial_id"]
        assert child.data.params["cell"] == {"rnn": "tanh", "lstm": "lstm"}[tags["variant"]]
        assert {"lr", "hidden_size", "batch_size", "max_epochs"} <= set(child.data.params)
        for key in ("train/loss", "val/loss"):
            history = client.get_metric_history(child.info.run_id, key)
            steps = sorted(m.step for m in history)
            # ASHA may stop a trial after its grace period of one epoch.
            assert steps in ([0], [0, 1]), (key, steps)
            assert all(m.value > 0 for m in history)
    trial_ids = {c.data.tags["trial_id"] for c in children}
    assert len(trial_ids) == len(children)


def test_champion_of_each_variant_is_registered_with_test_metrics(study: dict) -> None:
    client: MlflowClient = study["client"]
    _, _, children = _runs(study)
    by_id = {c.info.run_id: c for c in children}
    for variant in VARIANTS:
        version = client.get_model_version_by_alias(f"{STUDY}-{variant}", "champion")
        run = by_id[version.run_id]  # the model came from one of this variant's trials
        assert run.data.tags["variant"] == variant
        assert 0 < run.data.metrics["test/mse"] < 1.0
        # The best trial by validation loss is the one registered.
        best = min(
            (c for c in children if c.data.tags["variant"] == variant),
            key=lambda c: min(
                m.value for m in client.get_metric_history(c.info.run_id, "val/loss")
            ),
        )
        assert best.info.run_id == run.info.run_id


def test_registered_model_loads_and_predicts(study: dict) -> None:
    import mlflow.pyfunc
    import numpy as np

    mlflow.set_tracking_uri(f"sqlite:///{study['home'] / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{STUDY}-lstm@champion")
    signature = model.metadata.signature
    assert signature is not None
    (tensor,) = signature.inputs.inputs
    assert tuple(tensor.shape) == (-1, 10, 2)  # any batch of length-10 sequences of 2 channels
    x = np.random.default_rng(0).uniform(size=(3, 10, 2)).astype(np.float32)
    assert np.asarray(model.predict(x)).shape == (3, 1)


def test_comparison_table_is_printed_and_stored(study: dict) -> None:
    client: MlflowClient = study["client"]
    _, parents, _ = _runs(study)
    out = study["result"].stdout
    assert "| variant |" in out and "baseline mse" in out
    for variant in VARIANTS:
        assert f"| {variant} |" in out
    local = client.download_artifacts(parents[0].info.run_id, "comparison.md")
    table = Path(local).read_text()
    assert table in out
    assert "mlflow ui --backend-store-uri sqlite:///" in out


def test_terminal_is_clean(study: dict) -> None:
    result = study["result"]
    both = result.stdout + result.stderr
    assert "Traceback" not in both
    assert " ERROR " not in both and "ERROR:" not in both
    assert "[rnn] trial 1/2 started" in result.stdout
    assert "best so far" in result.stdout


PREFECT_PROBE = """
import json, sys
from pipelines import settings
settings.configure_environment()
from prefect import flow
from prefect.client.orchestration import get_client
from pipelines.flows import prepare_data

@flow
def again():
    return prepare_data(sys.argv[1], json.loads(sys.argv[2]), 0, sys.argv[3], return_state=True)

state = again()
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs()
    artifacts = client.read_artifacts()
print(json.dumps({
    "cached": state.name,
    "uri": state.result().uri,
    "flows": sorted((r.name, r.state_name) for r in runs if r.flow_id),
    "artifacts": [a.key for a in artifacts],
}))
"""


def test_prefect_recorded_the_flow_and_caches_the_data(study: dict) -> None:
    home: Path = study["home"]
    (data_dir,) = (home / "data").glob("adding-*")
    mtime = (data_dir / "train.npz").stat().st_mtime_ns
    options = {"length": 10, "n_train": 256, "n_val": 64, "n_test": 64}
    probe = subprocess.run(
        [sys.executable, "-c", PREFECT_PROBE, "adding", json.dumps(options), str(home)],
        cwd=ROOT,
        env=study["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["cached"] == "Cached", "same task, options and seed must not regenerate"
    assert found["uri"] == str(data_dir)
    assert (data_dir / "train.npz").stat().st_mtime_ns == mtime
    states = [state for _, state in found["flows"]]
    assert states.count("Completed") >= 1, found["flows"]  # run_study itself, on the same API
    assert "smoke-comparison" in found["artifacts"]


def test_dry_run_starts_nothing(home: Path) -> None:
    result = seqlab("run", SPEC, "--dry-run")
    assert result.returncode == 0
    assert "nothing was started" in result.stdout
    assert not home.exists()
