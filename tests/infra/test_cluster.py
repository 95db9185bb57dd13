"""A study on a real two-node Ray cluster: where each trial ran, and fractional GPUs packing.

Two `ray start` nodes run on this machine, each declaring one GPU, a CPU count and a resource of
its own. `seqlab run` reaches them through `RAY_ADDRESS`, as it would a remote cluster. Each
trial reports its Ray node and the GPU ids Ray granted it, and `TrialRuns` tags its MLflow run.
Torch here may be a CPU build: a declared GPU is only a token Ray hands out, and a trial that
holds one still trains on the CPU.

The quick tests check the two halves of that hand-over without Ray.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pipelines.ops import settings
from tests.conftest import ROOT

STUDY, TRIALS, SEEDS = "cluster", 8, 2
CPU_PER_TRIAL, GPU_PER_TRIAL = 0.5, 0.25
# A node's CPUs would hold 8 trials, its GPU 4: so trials wait for a GPU, and a wrong GPU
# request (1.0, or none at all) changes what the test sees.
NODE_CPUS, NODE_GPUS = 4, 1
SPEC = f"""\
name: {STUDY}
description: Every trial asks for a quarter of a declared GPU; each node has one.
task:
  name: adding
  options: {{length: 20, n_train: 4096, n_val: 256, n_test: 256}}
variants:
  rnn: {{cell: tanh, hidden_size: 16}}
search:
  space:
    lr: {{loguniform: [0.001, 0.01]}}
  trials_per_variant: {TRIALS}
  scheduler: {{name: fifo}}  # every trial runs to the end, so they overlap
fixed:
  batch_size: 64
  max_epochs: 3
seeds: {SEEDS}
resources: {{cpu: {CPU_PER_TRIAL}, gpu: {GPU_PER_TRIAL}}}
"""


# -- quick: the trainable's report and the driver's tags ------------------------------------


def test_every_report_says_where_the_trial_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.tune

    from pipelines.trial.trainable import Report

    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(
        ray.tune, "report", lambda metrics, checkpoint=None: reports.append(metrics)
    )
    where = {"ray/node_id": "abc", "ray/gpu_ids": "0"}
    report = Report(where, checkpoints=False)
    losses = {"train/loss": torch.tensor(1.5), "val/loss": torch.tensor(2.5)}
    trainer = SimpleNamespace(
        sanity_checking=True, callback_metrics=losses, current_epoch=0, max_epochs=10
    )
    report.on_train_epoch_end(trainer, None)  # Lightning's sanity check: nothing is reported
    trainer.sanity_checking = False
    report.on_train_epoch_end(trainer, None)
    assert reports == [{"train/loss": 1.5, "val/loss": 2.5, **where}]


class FakeMlflow:
    """Records what `TrialRuns` writes."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> Any:
        return SimpleNamespace(info=SimpleNamespace(run_id=f"run-{run_name}"))

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()) -> None:
        self.batches.append({"metrics": list(metrics), "params": list(params), "tags": list(tags)})


def _trial_config(**train: float) -> dict:
    """A trial's config as Tune hands it to the callbacks: a `TrialConfig`, nested."""
    from seqmodels.config import ModelConfig, TrainConfig, TrialConfig

    return TrialConfig(ModelConfig(), TrainConfig(**train), "rnn", 0).nested()


def test_trial_runs_tag_the_placement_once_and_again_if_it_moves() -> None:
    from pipelines.tracking.trial_runs import TrialRuns

    mlflow = FakeMlflow()
    runs = TrialRuns(mlflow, "1", "parent", "trial")  # type: ignore[arg-type]
    trial = SimpleNamespace(trial_id="t1", config=_trial_config(lr=0.01))
    runs.on_trial_start(0, [], trial)

    def result(epoch: int, node: str) -> None:
        where = {"ray/node_id": node, "ray/gpu_ids": "0", "node_ip": "127.0.0.1"}
        runs.on_trial_result(0, [], trial, {"training_iteration": epoch, "val/loss": 1.0, **where})

    result(1, "a")
    result(2, "a")
    result(3, "b")  # restored from its checkpoint on another node
    runs.wait()  # the epochs are written in the background
    tags = [{t.key: t.value for t in batch["tags"]} for batch in mlflow.batches[1:]]
    assert tags == [
        {"ray.node_id": "a", "ray.gpu_ids": "0"},
        {},
        {"ray.node_id": "b", "ray.gpu_ids": "0"},
    ]
    assert all([m.key for m in b["metrics"]] == ["val/loss"] for b in mlflow.batches[1:])


# -- slow: a real two-node cluster --------------------------------------------------------------


@dataclass
class Cluster:
    address: str
    nodes: dict[str, str]  # "head" / "second" -> Ray node id
    env: dict[str, str]  # what a process needs to join it as a driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(name: str, temp_dir: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """`ray start --block` for one node, in a process group of its own, logging to temp_dir.

    Every port is picked free, so that neither node collides with the other, nor with any
    other Ray on this machine.
    """
    ports = [
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    ]
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={NODE_CPUS}",
        f"--num-gpus={NODE_GPUS}",
        f"--resources={json.dumps({f'seqlab_{name}': 1})}",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir / name}",
        *(f"{flag}={_free_port()}" for flag in ports),
        *args,
    ]
    log = (temp_dir / f"{name}.log").open("w")
    # A new session: the node's processes share a group we can signal without touching others.
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def _stop(process: subprocess.Popen) -> None:
    """Stop a `ray start --block` node: SIGTERM stops its processes; then its group, to be sure."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever of the node outlived it
    except ProcessLookupError:
        pass
    process.wait()


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the head exited:\n{log.read_text()[-3000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"no GCS on port {port} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


# A short-lived driver: waits until both nodes are alive, then prints their ids by role.
NODE_IDS = textwrap.dedent(
    """
    import json, sys, time
    import ray
    ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        nodes = {
            role: n["NodeID"]
            for n in ray.nodes() if n["Alive"]
            for role in ("head", "second") if f"seqlab_{role}" in n["Resources"]
        }
        if len(nodes) == 2:
            break
        time.sleep(0.5)
    print(json.dumps(nodes))
    """
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and a second node on this machine; both stopped, by process, whatever happens."""
    # Short: Ray's Unix sockets live under it, and their paths may not exceed 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="seqlab-ray-"))
    # Ray started by `ray start` requires a token; this cluster gets one of its own.
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        settings.RAY_SINGLE_MACHINE: "1",  # a cluster of two nodes, whatever seqlab's default
    }
    port = _free_port()
    address = f"127.0.0.1:{port}"
    started: list[subprocess.Popen] = []
    try:
        head_args = ["--head", f"--port={port}", "--include-dashboard=false"]
        head_args.append(f"--ray-client-server-port={_free_port()}")
        started.append(_ray_start("head", temp_dir, env, *head_args))
        _wait_for_port(port, started[0], temp_dir / "head.log", timeout=120)
        started.append(_ray_start("second", temp_dir, env, f"--address={address}"))
        found = subprocess.run(
            [sys.executable, "-c", NODE_IDS, address, "120"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        logs = "".join(
            f"\n--- {name}.log:\n{(temp_dir / f'{name}.log').read_text()[-3000:]}"
            for name in ("head", "second")
        )
        assert found.returncode == 0, found.stderr[-3000:] + logs
        nodes = json.loads(found.stdout.strip().splitlines()[-1])
        assert set(nodes) == {"head", "second"}, f"nodes alive: {nodes}{logs}"
        yield Cluster(address=address, nodes=nodes, env=env)
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _concurrency(intervals: list[tuple[int, int]]) -> int:
    """The most intervals [start, end) that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = running = 0
    for _, step in events:  # at a tie, an end (-1) sorts before a start (+1)
        running += step
        most = max(most, running)
    return most


@pytest.mark.slow
def test_study_on_a_two_node_cluster(cluster: Cluster, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    home = tmp_path / "home"
    spec = tmp_path / "cluster.yaml"
    spec.write_text(SPEC)
    env = {
        k: v
        for k, v in cluster.env.items()
        if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "CUDA_VISIBLE_DEVICES")
    }
    env |= {
        "SEQLAB_HOME": str(home),
        "RAY_ADDRESS": cluster.address,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    began = time.monotonic()
    result = subprocess.run(
        [str(Path(sys.executable).with_name("seqlab")), "run", str(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.monotonic() - began
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == TRIALS + SEEDS
    assert all(r.info.status == "FINISHED" for r in children)  # trained, on the CPU

    # Where each trial ran: one of the two nodes, both used; each holds GPU 0 of its node.
    nodes = {r.data.tags.get("ray.node_id") for r in children}
    assert nodes == set(cluster.nodes.values()), f"{nodes} vs {cluster.nodes}"
    assert {r.data.tags.get("ray.gpu_ids") for r in children} == {"0"}

    # Packing: at 0.25 GPU a trial, up to 4 trials share one declared GPU, and never more.
    # A trial is counted from its run's start (the driver saw its actor start) to its last
    # metric (the driver received its last result): within the time it held its resources, so
    # overlaps are never overcounted. Not to the run's end: registering a model ends it again.
    trials = [r for r in children if r.data.tags["kind"] == "trial"]
    by_gpu: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for r in trials:
        gpu = (r.data.tags["ray.node_id"], r.data.tags["ray.gpu_ids"])
        last = max(m.timestamp for m in client.get_metric_history(r.info.run_id, "val/loss"))
        by_gpu.setdefault(gpu, []).append((r.info.start_time, last))
    shared = {gpu: _concurrency(spans) for gpu, spans in by_gpu.items()}
    per_gpu = round(1 / GPU_PER_TRIAL)
    assert max(shared.values()) <= per_gpu, shared
    assert max(shared.values()) > per_gpu // 2, shared  # more than 0.5 GPU a trial would allow
    print(f"study took {took:.0f} s; most trials at once on one GPU: {shared}")
