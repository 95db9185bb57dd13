"""A tiny study through the real stack: a local Ray, a Prefect flow run, an MLflow SQLite store.

The study runs once, as a user would run it (`seqlab run`), and the tests read what it left.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, free_port, seqlab

pytestmark = pytest.mark.slow

SPEC = "experiments/smoke.yaml"
STUDY, VARIANTS, TRIALS, EPOCHS, SEEDS = "smoke", ("rnn", "lstm"), 2, 2, 2


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


def _study_data(study: dict) -> Path:
    """The study's dataset: the one its parent run names, not a repeat's draw beside it."""
    _, parents, _ = _runs(study)
    return study["home"] / "data" / f"adding-{parents[0].data.tags['dataset.digest']}"


def _best_val(client: MlflowClient, run) -> float:
    return min(m.value for m in client.get_metric_history(run.info.run_id, "val/loss"))


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
    children = [c for c in children if c.data.tags["kind"] == "trial"]
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


def test_seeded_repeats_of_each_best_config(study: dict) -> None:
    client: MlflowClient = study["client"]
    _, parents, children = _runs(study)
    trials = [c for c in children if c.data.tags["kind"] == "trial"]
    repeats = [c for c in children if c.data.tags["kind"] == "repeat"]
    assert len(repeats) == SEEDS * len(VARIANTS)
    for variant in VARIANTS:
        mine = [r for r in repeats if r.data.tags["variant"] == variant]
        assert sorted(r.data.tags["seed"] for r in mine) == ["1", "2"]  # fresh seeds, not 0
        best = min(
            (t for t in trials if t.data.tags["variant"] == variant),
            key=lambda t: _best_val(client, t),
        )
        for r in mine:
            assert r.info.status == "FINISHED"
            assert r.data.params["lr"] == best.data.params["lr"]  # the best config, repeated
            assert r.data.params["hidden_size"] == best.data.params["hidden_size"]
            assert r.data.metrics["test/mse"] > 0
            assert len(client.get_metric_history(r.info.run_id, "val/loss")) == EPOCHS
            # each seed drew the weights, the batches' order and the training data afresh
            assert r.data.tags["varied"] == "init,order,data"
            seed = r.data.tags["seed"]
            assert [r.data.params[f"{k}_seed"] for k in ("init", "order", "data")] == [seed] * 3
    digest = parents[0].data.tags["dataset.digest"]
    draws = {
        card["draw"]["seed"]: card["draw"]
        for path in (study["home"] / "data").glob("adding-*/card.json")
        if "draw" in (card := json.loads(path.read_text()))
    }
    assert draws == {seed: {"of": digest, "seed": seed, "method": "redraw"} for seed in (1, 2)}


def test_champion_of_each_variant_is_registered_with_test_metrics(study: dict) -> None:
    client: MlflowClient = study["client"]
    _, _, children = _runs(study)
    children = [c for c in children if c.data.tags["kind"] == "trial"]
    by_id = {c.info.run_id: c for c in children}
    for variant in VARIANTS:
        version = client.get_model_version_by_alias(f"{STUDY}-{variant}", "champion")
        run = by_id[version.run_id]  # the model came from one of this variant's trials
        assert run.data.tags["variant"] == variant
        assert math.isfinite(run.data.metrics["test/mse"]) and run.data.metrics["test/mse"] > 0
        # The best trial by validation loss is the one registered.
        best = min(
            (c for c in children if c.data.tags["variant"] == variant),
            key=lambda c: _best_val(client, c),
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
    data_dir = _study_data(study)
    with np.load(data_dir / "test.npz") as test:
        x, y = test["x"], test["y"]
    prediction = np.asarray(model.predict(x))
    assert prediction.shape == y.shape
    # The served model is the tested one: its test MSE is the one logged on its run.
    run = study["client"].get_run(model.metadata.run_id)
    assert float(np.mean((prediction - y) ** 2)) == pytest.approx(
        run.data.metrics["test/mse"], rel=1e-4
    )


def test_comparison_table_is_printed_and_stored(study: dict) -> None:
    client: MlflowClient = study["client"]
    _, parents, _ = _runs(study)
    out = study["result"].stdout
    assert "| variant |" in out and "baseline mse" in out
    for variant in VARIANTS:
        assert f"| {variant} | {SEEDS} |" in out
    assert "rnn vs lstm" in out or "lstm vs rnn" in out  # the pairwise test
    local = client.download_artifacts(parents[0].info.run_id, "comparison.md")
    table = Path(local).read_text()
    assert table in out
    assert "mlflow ui --backend-store-uri sqlite:///" in out


def test_report_and_plots_on_the_parent_run(study: dict) -> None:
    client: MlflowClient = study["client"]
    _, parents, _ = _runs(study)
    run_id = parents[0].info.run_id
    names = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert names == {
        "plots/learning_curves.png",
        "plots/final_metric.png",
        "plots/search_best_so_far.png",
        "plots/budget_curves.png",
    }
    for name in names:
        assert Path(client.download_artifacts(run_id, name)).read_bytes()[:4] == b"\x89PNG"
    report = Path(client.download_artifacts(run_id, "report.md")).read_text()
    sections = ("## Result", "### Pairwise", "### Method", "## Search budget", "## Reproduce")
    for section in sections:
        assert section in report
    assert "seqlab run experiments/smoke.yaml" in report
    assert (
        "the initial weights, the order of the training batches and the training and "
        "validation data (drawn again from the task's generator) varied between repeats, the "
        "test set did not" in report
    )


def test_report_rebuilds_from_mlflow_alone(study: dict, tmp_path: Path) -> None:
    client: MlflowClient = study["client"]
    _, parents, _ = _runs(study)
    stored = Path(client.download_artifacts(parents[0].info.run_id, "report.md")).read_text()
    out = tmp_path / "rebuilt"
    result = seqlab("report", STUDY, "--out", str(out), env={"SEQLAB_HOME": str(study["home"])})
    assert result.returncode == 0, result.stderr
    assert (out / "report.md").read_text() == stored
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "budget_curves.png",
        "final_metric.png",
        "learning_curves.png",
        "search_best_so_far.png",
    ]


def test_report_of_an_unknown_study_is_a_one_line_error(study: dict) -> None:
    result = seqlab("report", "no-such-study", env={"SEQLAB_HOME": str(study["home"])})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no-such-study" in result.stderr


def test_terminal_is_clean(study: dict) -> None:
    result = study["result"]
    both = result.stdout + result.stderr
    assert "Traceback" not in both
    assert " ERROR " not in both and "ERROR:" not in both
    assert "[rnn] trial 1/2 started" in result.stdout
    assert "best so far" in result.stdout
    # A repeat's test report is not one more epoch; it shows on the line that ends the repeat.
    assert f"epoch {EPOCHS + 1}/" not in result.stdout and f"/{EPOCHS + 1}," not in result.stdout
    # Each variant's repeats are counted and labelled apart from its search trials.
    lines = result.stdout.splitlines()
    for variant in VARIANTS:
        ended = [line for line in lines if line.startswith(f"[{variant} repeats] trial ")]
        ended = [line for line in ended if " finished: " in line]
        assert len(ended) == SEEDS and all(", test/mse " in e for e in ended), ended
    # Trials overlap on 2 CPUs: the summary gives a share of the CPU-seconds, never a negative.
    (training,) = [line for line in result.stdout.splitlines() if line.startswith("training ")]
    assert "summed over trials and repeats" in training and "orchestration" not in result.stdout


PREFECT_PROBE = """
import json, sys
from pipelines.ops import settings
settings.configure_environment()
from prefect import flow
from prefect.client.orchestration import get_client
from pipelines.data.prepare import prepare_data

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
    data_dir = _study_data(study)
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
    assert "smoke-report" in found["artifacts"]


def test_printed_mlflow_ui_command_serves_the_study(study: dict) -> None:
    experiment, parents, _ = _runs(study)
    runs = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
    lines = [line.strip() for line in study["result"].stdout.splitlines()]
    assert f"{runs}  (the study's runs)" in lines
    assert f"{runs}/{parents[0].info.run_id}  (this parent run)" in lines
    line = next(line for line in lines if "mlflow ui" in line)
    command = shlex.split(line.split("#")[0])
    assert command[:2] == ["mlflow", "ui"]
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen(
        [mlflow_bin, *command[1:], "--host", "127.0.0.1"],
        cwd=ROOT,
        env=study["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name={STUDY}"
        deadline = time.monotonic() + 180  # its start took 77-90 s on 2 busy cores
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    found = json.load(answer)
                break
            except OSError:
                assert server.poll() is None, "the MLflow UI exited"
                assert time.monotonic() < deadline, "the MLflow UI did not answer in 180 s"
                time.sleep(0.5)
        assert found["experiment"]["name"] == STUDY
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers, by our own PID
        server.wait(timeout=30)


def test_dry_run_starts_nothing(home: Path) -> None:
    result = seqlab("run", SPEC, "--dry-run")
    assert result.returncode == 0
    assert "nothing was started" in result.stdout
    assert not home.exists()


@pytest.mark.parametrize("kind", ["trial", "repeat"])
def test_rerun_reproduces_a_recorded_run(study: dict, kind: str) -> None:
    _, _, children = _runs(study)
    run = next(r for r in children if r.data.tags["kind"] == kind)
    result = seqlab("rerun", run.info.run_id, env=study["env"], timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "metrics match: largest difference 0" in result.stdout
    epochs = len(study["client"].get_metric_history(run.info.run_id, "val/loss"))
    rows = [
        line for line in result.stdout.splitlines() if line.startswith("| ") and "|---" not in line
    ]
    assert len(rows) == 1 + epochs  # the header and one row per recorded epoch


def test_rerun_of_a_parent_or_unknown_run_is_a_one_line_error(study: dict) -> None:
    _, parents, _ = _runs(study)
    # Without the fixture's PYTHONWARNINGS=default, which shows libraries' deprecation warnings.
    env = {k: v for k, v in study["env"].items() if k != "PYTHONWARNINGS"}
    for run_id, says in (
        (parents[0].info.run_id, "not a trial or a repeat"),
        ("0123abc", "not found"),
    ):
        result = seqlab("rerun", run_id, env=env, timeout=300)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr


def test_registered_model_serves_over_http(study: dict, tmp_path: Path) -> None:
    """`mlflow models serve` on the champion answers as the pyfunc loaded in-process does."""
    import mlflow.pyfunc
    import numpy as np

    uri, tracking = f"models:/{STUDY}-lstm@champion", f"sqlite:///{study['home'] / 'mlflow.db'}"
    data_dir = _study_data(study)
    with np.load(data_dir / "test.npz") as test:
        x, y = test["x"], test["y"]
    port, bin_dir = free_port(), Path(sys.executable).parent
    # The scoring server runs `uvicorn` from PATH: the virtualenv's own.
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(bin_dir / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local"]
            + ["-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env={**study["env"], "MLFLOW_TRACKING_URI": tracking, "PATH": path},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the model server did not answer /ping in 120 s"
            time.sleep(0.5)
        request = urllib.request.Request(
            f"{base}/invocations",
            data=json.dumps({"inputs": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            served = np.asarray(json.load(answer)["predictions"], dtype=np.float32)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers, by our own PID
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert served.shape == y.shape
    previous = os.environ.get("MLFLOW_TRACKING_URI")  # MLflow sets the variable too
    mlflow.set_tracking_uri(tracking)
    try:
        expected = mlflow.pyfunc.load_model(uri).predict(x)
    finally:
        mlflow.set_tracking_uri(previous)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


def test_sample_predicts_with_the_registered_regressor(study: dict) -> None:
    uri = f"models:/{STUDY}-lstm@champion"
    result = seqlab("sample", uri, env=study["env"], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2  # the model's input example: the first two test sequences
    assert all(len(json.loads(line)) == 1 for line in lines)  # one sum per sequence
    import mlflow

    from pipelines import serving

    previous = os.environ.get("MLFLOW_TRACKING_URI")  # MLflow sets the variable too
    mlflow.set_tracking_uri(f"sqlite:///{study['home'] / 'mlflow.db'}")
    try:
        with pytest.raises(serving.SampleError, match="is a regression model: it draws no"):
            serving.sample(uri, None, {"stop": "eos"})
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize("cut", ["after-the-version", "before-the-version"])
def test_a_registration_cut_short_is_finished_by_the_next(
    study: dict, monkeypatch: pytest.MonkeyPatch, cut: str
) -> None:
    """A driver killed while it registers a champion (its run reopened for the model) leaves
    the run RUNNING and no alias; the next driver's registration ends the run as its trial
    had, and sets the alias: on the version registered already, or on one it registers."""
    import mlflow

    from pipelines.data import store
    from pipelines.study import rerun
    from pipelines.study.register import evaluate_and_register, registered
    from pipelines.study.search import VariantOutcome
    from seqmodels.config import TrialConfig

    store_uri = f"sqlite:///{study['home'] / 'mlflow.db'}"
    monkeypatch.setenv("SEQLAB_HOME", str(study["home"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    mlflow.set_tracking_uri(store_uri)
    client: MlflowClient = study["client"]
    name = f"{STUDY}-lstm"
    champion = client.get_model_version_by_alias(name, "champion")
    run = client.get_run(champion.run_id)
    (trial_dir,) = (study["home"] / "ray_results").rglob(f"*{run.data.tags['trial_id']}*")
    (checkpoint,) = sorted(trial_dir.glob("checkpoint_*"))[-1:]
    outcome = VariantOutcome(
        variant="lstm",
        trial=TrialConfig.from_params(rerun.load(client, run.info.run_id)[0]),
        best_val=_best_val(client, run),
        checkpoint_dir=str(checkpoint),
        run_id=run.info.run_id,
        trials=TRIALS,
        stopped_early=0,
        failed=0,
        train_seconds=0.0,
    )
    versions = {v.version for v in client.search_model_versions(f"name = '{name}'")}

    # What the killed driver left: the run reopened, no alias yet, and the version or not.
    client.update_run(run.info.run_id, status="RUNNING")
    client.delete_registered_model_alias(name, "champion")
    if cut == "before-the-version":
        client.delete_model_version(name, champion.version)
    assert not registered(STUDY, outcome)

    evaluate_and_register.fn(STUDY, outcome, store.read_ref(_study_data(study)))

    assert registered(STUDY, outcome)
    again = client.get_run(run.info.run_id).info
    assert (again.status, again.end_time) == (run.info.status, run.info.end_time)
    now = {v.version for v in client.search_model_versions(f"name = '{name}'")}
    if cut == "after-the-version":
        assert now == versions, "the version registered already is the champion"
    else:
        assert len(now) == len(versions) and now != versions  # one registered in its place
