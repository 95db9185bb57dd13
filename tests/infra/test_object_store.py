"""The data store in an S3 bucket (`SEQLAB_STORE=s3://...`), as a cluster shares it, and
Ray Tune's state beside it.

A real S3-compatible server (moto's, over HTTP on a loopback port) holds the bucket; s3fs,
fsspec's S3 backend, talks to it as it would to AWS. `seqlab data prepare` writes a dataset
there, and a study's Ray workers train from it: nothing of the data lands in the local home.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, embedded_env, foreground, free_port, seqlab

pytestmark = pytest.mark.slow
s3fs = pytest.importorskip("s3fs")

BUCKET = "seqlab-data"
OPTIONS = {"length": 8, "n_train": 96, "n_val": 32, "n_test": 32}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3 server on a free loopback port with one empty bucket; stopped by its PID."""
    port = free_port()
    log = tmp_path_factory.mktemp("s3") / "server.log"
    env = {
        "AWS_ACCESS_KEY_ID": "seqlab-test",
        "AWS_SECRET_ACCESS_KEY": "seqlab-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the S3 server did not listen in 60 s"
                time.sleep(0.2)
        fs = s3fs.S3FileSystem(
            key=env["AWS_ACCESS_KEY_ID"],
            secret=env["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=env["AWS_ENDPOINT_URL"],
        )
        fs.mkdir(BUCKET)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _bucket(env: dict[str, str]):
    fs = s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
    )
    fs.invalidate_cache()
    return fs


def _env(s3: dict[str, str], home: Path, store: str) -> dict[str, str]:
    return {**embedded_env(home), **s3, "SEQLAB_STORE": store}


def test_data_prepare_writes_to_the_bucket_and_finds_it_again(s3: dict, tmp_path: Path) -> None:
    env = _env(s3, tmp_path / "home", f"s3://{BUCKET}/prepare")
    args = ["data", "prepare", "adding", "--json"]
    args += [f"--set={key}={value}" for key, value in OPTIONS.items()]
    first = seqlab(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    ref = json.loads(first.stdout)
    assert ref["uri"] == f"s3://{BUCKET}/prepare/data/adding-{ref['digest']}"
    assert ref["cached"] is False and ref["sizes"] == {"train": 96, "val": 32, "test": 32}
    fs = _bucket(s3)
    assert sorted(Path(p).name for p in fs.ls(ref["uri"])) == [
        "card.json",
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    assert json.loads(fs.cat(f"{ref['uri']}/card.json"))["digest"] == ref["digest"]
    assert not (tmp_path / "home" / "data").exists()

    again = seqlab(*args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout) == {**ref, "cached": True}


def test_tunes_saved_state_is_found_in_the_bucket(
    s3: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `seqlab resume` asks of an experiment in the bucket before `Tuner.restore`."""
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study

    experiment = f"s3://{BUCKET}/resume/ray_results/study-rnn-20261127-120000"
    assert not study.tuning.saved_state(experiment)
    _bucket(s3).pipe(f"{experiment}/experiment_state-2026-11-27_12-00-00.json", b"{}")
    assert study.tuning.saved_state(experiment)


def _trial_runs(client: MlflowClient, variant: str) -> list:
    experiment = client.get_experiment_by_name("s3-store")
    if experiment is None:
        return []
    query = f"tags.kind = 'trial' and tags.variant = '{variant}'"
    return client.search_runs([experiment.experiment_id], query)


def _epochs(client: MlflowClient, run_id: str) -> list[tuple[int, float, int]]:
    return sorted(
        (m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "val/loss")
    )


def test_a_study_trains_from_the_bucket_and_resumes_from_it(s3: dict, tmp_path: Path) -> None:
    """The study is stopped by Ctrl-C while the second of the rnn variant's trials (one at a
    time) trains, and `seqlab resume` restores that Tuner from the state Tune kept in the
    bucket: the finished trial is not trained again, and the stopped one goes on in its run.

    One variant: a second one's Tuner, started by the resume, is `test_resume.py`'s; here each
    of its 40-epoch trials and repeats would cost half a minute more."""
    epochs = 40  # a trial of several seconds: time to stop the second one halfway
    spec = {
        "name": "s3-store",
        "task": {"name": "adding", "options": OPTIONS},
        "variants": {"rnn": {"cell": "tanh", "hidden_size": 4}},
        "search": {
            "space": {"lr": {"loguniform": [0.001, 0.01]}},
            "trials_per_variant": 2,
            "max_concurrent": 1,
            "scheduler": {"name": "fifo"},
        },
        "fixed": {"batch_size": 32, "max_epochs": epochs},
        "seeds": 2,
    }
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump(spec))
    home = tmp_path / "home"
    store = f"s3://{BUCKET}/study"
    env = _env(s3, home, store)
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    first = foreground(["run", str(path)], env)

    def second_trial_halfway() -> bool:
        runs = _trial_runs(client, "rnn")
        running = [r for r in runs if r.info.status == "RUNNING"]
        return any(r.info.status == "FINISHED" for r in runs) and any(
            len(_epochs(client, r.info.run_id)) >= 5 for r in running
        )

    try:
        deadline = time.monotonic() + 600
        while not second_trial_halfway():
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the study made no progress in time"
            time.sleep(0.5)
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C, to the whole foreground group
        assert first.wait(timeout=90) == 130, first.stdout.read()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        first.stdout.close()
    (done,) = [r for r in _trial_runs(client, "rnn") if r.info.status == "FINISHED"]
    (stopped,) = [r for r in _trial_runs(client, "rnn") if r.info.status == "KILLED"]
    history = _epochs(client, done.info.run_id)

    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "resume", "s3-store"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming parent run" in result.stdout + result.stderr
    # Ctrl-C let Tune save its state last: no checkpoint it names was gone (`RestorableCheckpoints`
    # would say so), as when a driver stopped between Tune's saves
    assert "no longer on storage" not in result.stderr, result.stderr[-3000:]
    # one run per trial: the finished one was not trained again; the stopped one went on, in
    # its own run, from its last checkpoint, and logged each epoch once
    rnn = _trial_runs(client, "rnn")
    assert sorted(r.info.run_id for r in rnn) == sorted([done.info.run_id, stopped.info.run_id])
    statuses = {r.info.run_id: r.info.status for r in rnn}
    assert set(statuses.values()) == {"FINISHED"}, (statuses, result.stdout[-3000:])
    assert _epochs(client, done.info.run_id) == history
    assert [step for step, _, _ in _epochs(client, stopped.info.run_id)] == list(range(epochs))
    assert not (home / "data").exists()  # the Ray workers read the splits from the bucket
    bucket = _bucket(s3)
    # the study's dataset, and beside it each repeat's draw of its training data, in the bucket
    stored = bucket.ls(f"{store}/data")
    cards = {path: json.loads(bucket.cat(f"{path}/card.json")) for path in stored}
    (dataset,) = [path for path, card in cards.items() if "draw" not in card]
    digest = cards[dataset]["digest"]
    assert sorted(c["draw"]["seed"] for c in cards.values() if "draw" in c) == [1, 2]
    assert all(c["draw"]["of"] == digest for c in cards.values() if "draw" in c)
    # Tune kept its state, results and checkpoints in the bucket too, where every node of a
    # cluster reaches them: one experiment for the study's trials, search and repeats.
    assert not (home / "ray_results").exists()
    states = bucket.glob(f"{store}/ray_results/*/experiment_state-*.json")
    experiments = sorted({Path(state).parent.name for state in states})
    assert [name.rsplit("-", 2)[0] for name in experiments] == ["s3-store"], experiments
    assert bucket.glob(f"{store}/ray_results/s3-store-*/*/checkpoint_*/checkpoint")

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("s3-store")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 + 2 and all(r.info.status == "FINISHED" for r in children)
    repeats = [r for r in children if r.data.tags["kind"] == "repeat"]
    assert len(repeats) == 2 and all(r.data.metrics["test/mse"] > 0 for r in repeats)
    (logged,) = parent.inputs.dataset_inputs
    assert logged.dataset.source_type == "s3"
    assert json.loads(logged.dataset.source)["uri"] == f"s3://{dataset}"
    # the driver tested and registered the champion from a local copy
    assert parent.data.tags["seqlab.tune.trials"].startswith(f"{store}/ray_results/")
    assert client.get_model_version_by_alias("s3-store-rnn", "champion")
    assert (home / "checkpoints" / parent.info.run_id).is_dir()
