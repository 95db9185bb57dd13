"""A study of many tiny trials on the local default: throughput, driver memory, lost results.

Runs `seqlab run` on a generated spec with `--trials` trials in all (split over two variants,
one epoch each, FIFO), in a fresh SEQLAB_HOME, and samples the driver's resident memory from
procfs while it runs. Afterwards it counts what MLflow holds: one FINISHED run per trial and
repeat, each with its epoch's metrics, and how many metric rows the store took per run (one
`log_batch` per result).

The baseline, in the same run: the same study with `--baseline-trials` trials (default 1/10),
so throughput and memory are read as ratios to a study ten times smaller.

    python benchmarks/scale.py [--trials 500] [--baseline-trials 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from common import machine, write_atomically

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"rnn": "tanh", "lstm": "lstm"}  # variant -> cell, each of 4 units


def spec(trials: int) -> dict:
    """Two variants sharing `trials`; tiny data and one epoch so the framework is what is timed."""
    return {
        "name": f"scale-{trials}",
        "task": {"name": "adding", "options": {"length": 5, "n_train": 64, "n_val": 32}},
        "variants": {name: {"cell": cell, "hidden_size": 4} for name, cell in VARIANTS.items()},
        "search": {
            "space": {"lr": {"loguniform": [0.001, 0.1]}},
            "trials_per_variant": trials // len(VARIANTS),
            "scheduler": {"name": "fifo"},
            "keep_checkpoints": 1,
        },
        "fixed": {"batch_size": 32, "max_epochs": 1},
        "seeds": 2,
    }


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def one_study(trials: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        path = Path(tmp) / "scale.yaml"
        path.write_text(yaml.safe_dump(spec(trials)))
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL")
        }
        env["SEQLAB_HOME"] = str(home)
        start = time.perf_counter()
        driver = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        peak = [0]

        def sample() -> None:
            while driver.poll() is None:
                peak[0] = max(peak[0], _rss_kib(driver.pid))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        output = driver.communicate()[0]
        wall = time.perf_counter() - start
        sampler.join()
        if driver.returncode != 0:
            raise SystemExit(f"study of {trials} trials failed:\n{output[-3000:]}")
        search = next(line for line in output.splitlines() if line.startswith("time: "))
        trials_s = float(search.split("trials ")[1].split("s")[0])
        counts = _counts(home / "mlflow.db")
    expected = trials + len(VARIANTS) * 2
    return {
        "trials": trials,
        "wall_s": wall,
        "search_s": trials_s,
        "trials_per_min": 60 * trials / trials_s,
        "driver_peak_mib": peak[0] / 1024,
        "runs": counts["runs"],
        "lost": expected - counts["finished_with_metrics"],
        "metric_rows_per_run": counts["metric_rows"] / max(counts["runs"], 1),
    }


def _counts(db: Path) -> dict[str, int]:
    """What the MLflow store holds for the study's child runs, read straight from SQLite."""
    with sqlite3.connect(db) as con:
        children = [
            row[0]
            for row in con.execute(
                "select r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid "
                "where t.key = 'mlflow.parentRunId' and r.lifecycle_stage = 'active'"
            )
        ]
        finished = con.execute(
            "select count(distinct r.run_uuid) from runs r "
            "join metrics m on m.run_uuid = r.run_uuid "
            "join tags t on t.run_uuid = r.run_uuid where t.key = 'mlflow.parentRunId' "
            "and r.status = 'FINISHED' and m.key = 'val/loss'"
        ).fetchone()[0]
        rows = con.execute(
            "select count(*) from metrics m join tags t on t.run_uuid = m.run_uuid "
            "where t.key = 'mlflow.parentRunId'"
        ).fetchone()[0]
    return {"runs": len(children), "finished_with_metrics": finished, "metric_rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--baseline-trials", type=int, default=0, help="default: trials / 10")
    parser.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = parser.parse_args()
    small = args.baseline_trials or max(len(VARIANTS), args.trials // 10)
    results = [one_study(small), one_study(args.trials)]
    base, big = results
    print(f"machine: {machine()}; load average at the end {os.getloadavg()}")
    print("| trials | search s | trials/min | driver peak MiB | runs | lost | metric rows/run |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['trials']} | {r['search_s']:.0f} | {r['trials_per_min']:.1f} "
            f"| {r['driver_peak_mib']:.0f} | {r['runs']} | {r['lost']} "
            f"| {r['metric_rows_per_run']:.1f} |"
        )
    print(
        f"throughput ratio {big['trials_per_min'] / base['trials_per_min']:.2f}x, "
        f"driver memory ratio {big['driver_peak_mib'] / base['driver_peak_mib']:.2f}x "
        f"for {big['trials'] / base['trials']:.0f}x the trials"
    )
    if args.json:
        write_atomically(args.json, {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
