"""Per-trial cost of logging to the MLflow tracking server against the embedded SQLite store.

A trial's logging is what `pipelines.tracking.runs.TrialRuns` sends for one Tune trial: a child run
with its tags, one batch of params, one batch of metrics per epoch (placement tags with the
first), and the end of the run. The baseline, timed in the same process, is the embedded
SQLite store that `seqlab run` uses without a stack; the other store is a real `mlflow server`
that this script starts with `seqlab up --only mlflow` on a free port in a temporary
SEQLAB_HOME, and stops with `seqlab down` (by the PID `up` recorded). The two stores take turns
over several rounds, in alternating order, so that drift in the machine's speed hits both.

    python benchmarks/tracking_overhead.py [--trials 30] [--rounds 5] [--epochs 10] [--json]
"""

from __future__ import annotations

import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

from common import argument_parser, machine

ROOT = Path(__file__).resolve().parents[1]
SEQLAB = [sys.executable, "-m", "pipelines.cli"]
STORES = ("sqlite", "server")


@dataclass(frozen=True)
class Shape:
    """How much one trial logs; the defaults are a quickstart trial's."""

    params: int = 10  # the trial's config: variant, seed, hidden size, lr, ...
    epochs: int = 10
    metrics: int = 3  # per epoch: train/loss, val/loss, val/<task metric>

    @property
    def requests(self) -> int:
        """Calls to the store per trial: create, params, one per epoch, end."""
        return 3 + self.epochs


def log_trial(
    client: MlflowClient, experiment_id: str, parent_run_id: str, index: int, shape: Shape
) -> None:
    """One trial's logging, call for call as `TrialRuns` sends it."""
    from mlflow.entities import Metric, Param, RunTag

    trial_id = f"bench_{index:05d}"
    run = client.create_run(
        experiment_id,
        run_name=trial_id,
        tags={
            "mlflow.parentRunId": parent_run_id,
            "variant": "lstm",
            "trial_id": trial_id,
            "seed": str(index),
            "kind": "trial",
        },
    )
    run_id = run.info.run_id
    config = {"variant": "lstm", "seed": index, "lr": 3e-3, "hidden_size": 64}
    config |= {f"option_{k}": k for k in range(shape.params - len(config))}
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(config.items())])
    names = ["train/loss", "val/loss", "val/accuracy", "train/accuracy"][: shape.metrics]
    for epoch in range(shape.epochs):
        now = int(time.time() * 1000)
        metrics = [Metric(name, 1.0 / (epoch + 1 + k), now, epoch) for k, name in enumerate(names)]
        # Where the trial runs is tagged with its first result (`TrialRuns._placement_tags`).
        tags = [RunTag("ray.node_id", "0" * 56)] if epoch == 0 else []
        client.log_batch(run_id, metrics=metrics, tags=tags)
    client.set_terminated(run_id, "FINISHED")


@dataclass
class Store:
    """A tracking store with the study's experiment and parent run already made."""

    name: str
    uri: str
    client: MlflowClient
    experiment_id: str
    parent_run_id: str

    @classmethod
    def open(cls, name: str, uri: str, artifact_location: str | None) -> Store:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)  # a fresh SQLite store migrates here
        experiment_id = client.create_experiment(
            "tracking-overhead", artifact_location=artifact_location
        )
        parent = client.create_run(experiment_id, run_name="study", tags={"kind": "study"})
        return cls(name, uri, client, experiment_id, parent.info.run_id)

    def trial(self, index: int, shape: Shape) -> float:
        """Seconds one trial's logging takes."""
        start = time.perf_counter()
        log_trial(self.client, self.experiment_id, self.parent_run_id, index, shape)
        return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seqlab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEQLAB_HOME": str(home)}
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"):
        env.pop(var, None)
    return subprocess.run(
        [*SEQLAB, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def measure(stores: dict[str, Store], shape: Shape, trials: int, rounds: int) -> dict:
    """Time `trials` trials per store per round; the order of the stores alternates."""
    times: dict[str, list[float]] = {name: [] for name in stores}
    per_round: dict[str, list[float]] = {name: [] for name in stores}
    index = 0
    for name in stores:  # warm-up: connections, the server's first requests, SQL caches
        stores[name].trial(index, shape)
        index += 1
    for round_ in range(rounds):
        order = list(stores) if round_ % 2 == 0 else list(reversed(stores))
        for name in order:
            batch = []
            for _ in range(trials):
                batch.append(stores[name].trial(index, shape))
                index += 1
            times[name] += batch
            per_round[name].append(statistics.median(batch))
    return {"times": times, "per_round": per_round}


def summarise(result: dict, shape: Shape) -> dict:
    times, per_round = result["times"], result["per_round"]
    rows = {}
    for name, values in times.items():
        median = statistics.median(values)
        rows[name] = {
            "median_ms": 1000 * median,
            "p90_ms": 1000 * statistics.quantiles(values, n=10)[-1],
            "ms_per_request": 1000 * median / shape.requests,
            "s_per_100_trials": 100 * median,
            "round_medians_ms": [1000 * v for v in per_round[name]],
            "trials": len(values),
        }
    round_ratios = [s / q for s, q in zip(per_round["server"], per_round["sqlite"], strict=True)]
    return {
        "rows": rows,
        "ratio": rows["server"]["median_ms"] / rows["sqlite"]["median_ms"],
        "round_ratios": round_ratios,
        "extra_ms_per_trial": rows["server"]["median_ms"] - rows["sqlite"]["median_ms"],
    }


def markdown(summary: dict, shape: Shape, trials: int, rounds: int, versions: str) -> str:
    rows = summary["rows"]
    lines = [
        "```",
        f"{machine()}; {versions}",
        f"{rounds} rounds x {trials} trials per store, order alternating; a trial = create_run, "
        f"{shape.params} params, {shape.epochs} epochs x {shape.metrics} metrics, "
        f"set_terminated ({shape.requests} calls)",
        "```",
        "",
        "| store | ms/trial (median) | p90 ms | ms/call | s per 100 trials "
        "| round medians ms | ratio to SQLite |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    labels = {
        "sqlite": "embedded SQLite (baseline)",
        "server": "MLflow server (`seqlab up`, SQLite behind it)",
    }
    for name in STORES:
        row = rows[name]
        ratio = row["median_ms"] / rows["sqlite"]["median_ms"]
        rounds_text = ", ".join(f"{v:.0f}" for v in row["round_medians_ms"])
        lines.append(
            f"| {labels[name]} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} "
            f"| {row['ms_per_request']:.2f} | {row['s_per_100_trials']:.1f} | {rounds_text} "
            f"| {ratio:.2f} |"
        )
    ratios = ", ".join(f"{r:.2f}" for r in summary["round_ratios"])
    lines += [
        "",
        f"server/SQLite: {summary['ratio']:.2f} (per round: {ratios}); "
        f"{summary['extra_ms_per_trial']:+.1f} ms per trial",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--trials", type=int, default=30, help="trials per store per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the order alternates")
    parser.add_argument("--epochs", type=int, default=10, help="metric batches per trial")
    parser.add_argument("--params", type=int, default=10, help="params per trial (at least 4)")
    parser.add_argument("--metrics", type=int, default=3, help="metrics per epoch (1-4)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead")
    args = parser.parse_args()
    if args.trials < 2 or args.rounds < 1 or args.epochs < 1:
        parser.error("--trials must be at least 2, --rounds and --epochs at least 1")
    if args.params < 4 or not 1 <= args.metrics <= 4:
        parser.error("--params must be at least 4 and --metrics between 1 and 4")
    shape = Shape(params=args.params, epochs=args.epochs, metrics=args.metrics)

    # As `settings.configure_environment` does for a study: no "View run" line (and no extra
    # get_run request) each time a run ends against the server.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating tables"
    from importlib import metadata

    versions = f"mlflow {metadata.version('mlflow')}"
    with tempfile.TemporaryDirectory(prefix="seqlab-tracking-") as tmp:
        base = Path(tmp)
        embedded = base / "embedded"
        embedded.mkdir()
        server_home = base / "server-home"
        port = free_port()
        started = seqlab(server_home, "up", "--only", "mlflow", "--mlflow-port", str(port))
        try:
            if started.returncode != 0:
                print(started.stdout + started.stderr, file=sys.stderr)
                return 1
            stores = {
                "sqlite": Store.open(
                    "sqlite",
                    f"sqlite:///{embedded / 'mlflow.db'}",
                    (embedded / "mlartifacts").as_uri(),
                ),
                "server": Store.open("server", f"http://127.0.0.1:{port}", None),
            }
            result = measure(stores, shape, args.trials, args.rounds)
        finally:
            stopped = seqlab(server_home, "down")
            if stopped.returncode != 0:
                print(stopped.stdout + stopped.stderr, file=sys.stderr)
    summary = summarise(result, shape)
    if args.json:
        report = {
            "machine": machine(),
            "versions": versions,
            "shape": asdict(shape),
            "trials_per_round": args.trials,
            "rounds": args.rounds,
            **summary,
        }
        print(json.dumps(report, indent=2))
    else:
        print(markdown(summary, shape, args.trials, args.rounds, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
