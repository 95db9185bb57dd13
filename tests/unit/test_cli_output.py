"""What `seqlab run` and `seqlab report` print at the end: where the time went, where to browse."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.cli.summary import browse_lines, time_summary, training_share
from tests.conftest import ROOT, embedded_env, free_port

PHASES = {
    "imports": 3.0,
    "prefect_start": 1.0,
    "data": 0.5,
    "mlflow": 0.5,
    "ray_start": 2.0,
    "trials": 15.0,
    "register": 1.0,
    "report": 1.0,
}


def test_parallel_training_is_a_share_of_the_cpu_seconds_not_a_negative_overhead() -> None:
    # Two trials at a time on 2 CPUs for most of the 15 s: 27 s of training in 15 s of wall.
    first, training = time_summary(PHASES, 24.0, 27.0, 1.0, 2)
    assert first.startswith("time: imports 3.0s, prefect_start 1.0s,") and "total 24.0s" in first
    assert "orchestration" not in first + training and not re.search(r"-\d", first + training)
    assert training == (
        "training 27.0s summed over trials and repeats, in 15.0s of wall time: on average 1.80 "
        "trials at a time, holding 90% of the 30.0 CPU-seconds of 2 CPUs (1 per trial)"
    )
    assert training_share(27.0, 15.0, 2.0, 4) == pytest.approx(0.9)  # 2 CPUs per trial on 4
    # What the benchmarks read from the first line (quickstart_wall.py, scale.py).
    printed = dict(re.findall(r"(\w+) ([\d.]+)s", first.split(";")[0]))
    assert printed["imports"] == "3.0" and printed["prefect_start"] == "1.0"
    assert float(first.split("trials ")[1].split("s")[0]) == 15.0


def test_the_overlapping_phases_each_say_their_span_and_their_work() -> None:
    from pipelines.study.timings import PhaseSpan

    spans = {"search": PhaseSpan(12.0, 20.0), "repeats": PhaseSpan(6.5, 7.0)}
    *_, overlap = time_summary(PHASES, 24.0, 27.0, 1.0, 2, spans)
    assert overlap == (
        "overlapping in that time: search from its first trial's start to its last one's end "
        "12.0s, training 20.0s summed; repeats from its first trial's start to its last one's "
        "end 6.5s, training 7.0s summed"
    )


def test_on_a_cluster_of_unknown_size_only_the_concurrency_is_shown() -> None:
    _, training = time_summary(PHASES, 24.0, 27.0, 1.0, None)
    assert training.endswith("in 15.0s of wall time: on average 1.80 trials at a time")
    (only,) = time_summary({"imports": 1.0}, 1.0, 0.0, 1.0, 2)  # a study that trained nothing
    assert only == "time: imports 1.0s; total 1.0s"


def test_links_open_the_studys_runs_and_its_parent_run() -> None:
    embedded = browse_lines("sqlite:////tmp/home/mlflow.db", "3", "abc123")
    assert embedded == [
        "mlflow ui --backend-store-uri sqlite:////tmp/home/mlflow.db --port 5000",
        "then open:",
        "http://127.0.0.1:5000/#/experiments/3/runs  (the study's runs)",
        "http://127.0.0.1:5000/#/experiments/3/runs/abc123  (this parent run)",
    ]
    server = browse_lines("http://mlflow.lab:8080/", "7", "def456")
    assert server == [
        "http://mlflow.lab:8080/#/experiments/7/runs  (the study's runs)",
        "http://mlflow.lab:8080/#/experiments/7/runs/def456  (this parent run)",
    ]


@pytest.mark.slow
def test_the_printed_command_serves_the_runs_routes_of_the_study(tmp_path: Path) -> None:
    """Start `mlflow ui` as printed, on a free port: the run exists, and the UI bundle it
    serves routes both links (the hash part is routed in the browser, by that bundle)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("links", artifact_location=tmp_path.as_uri())
    run_id = client.create_run(experiment_id).info.run_id
    command, _, runs, parent = browse_lines(uri, experiment_id, run_id, port=free_port())
    args = shlex.split(command)
    assert args[:2] == ["mlflow", "ui"]
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen(
        [mlflow_bin, *args[1:]],
        cwd=ROOT,
        env=embedded_env(tmp_path / "home"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = runs.split("/#/")[0]
        found = _get_json(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}", server)
        assert found["run"]["info"]["experiment_id"] == experiment_id
        index = _get(f"{base}/", server).decode()
        (main,) = re.findall(r'src="/?([\w/-]*static/js/main\.[0-9a-f]+\.js)"', index)
        bundle = _get(f"{base}/{main}", server).decode()
        assert "createHashRouter" in bundle  # routes live after the '#'
        for route in (
            "/experiments/:experimentId/runs",
            "/experiments/:experimentId/runs/:runUuid",
        ):
            assert f'"{route}"' in bundle, route
        assert runs.endswith(f"/#/experiments/{experiment_id}/runs  (the study's runs)")
        assert parent.endswith(f"/#/experiments/{experiment_id}/runs/{run_id}  (this parent run)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers, by our own PID
        server.wait(timeout=30)


def _get(url: str, server: subprocess.Popen, timeout_s: float = 180) -> bytes:
    """GET `url` once the server answers; its start took 77 s on 2 busy cores."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.read()
        except OSError:
            assert server.poll() is None, "the MLflow UI exited"
            assert time.monotonic() < deadline, f"the MLflow UI did not answer in {timeout_s} s"
            time.sleep(0.5)


def _get_json(url: str, server: subprocess.Popen) -> dict:
    return json.loads(_get(url, server))
