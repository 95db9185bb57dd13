"""Where the wall time of `seqlab run experiments/quickstart.yaml` goes.

Runs the quickstart N times, each in a fresh SEQLAB_HOME (cold MLflow database, cold data
cache), reads the phase timings the run logged on its MLflow parent run, and prints medians.
The baseline, measured in the same session, is the summed training time of the trials
(Ray Tune's `time_total_s`). Trials run in parallel, so that sum is set against the CPU-seconds
of the Tuners' phases (their wall time x the CPUs of the local Ray), as `seqlab run` prints it,
and what is outside the Tuners is a difference of wall times: wall - (trials + repeats).

    python benchmarks/quickstart_wall.py [--repeats 3] [--spec experiments/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.cli.summary import training_share
from pipelines.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def one_run(spec: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "SEQLAB_HOME": str(home)}
        for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"):
            env.pop(var, None)
        start = time.perf_counter()
        done = subprocess.run(
            [str(Path(sys.executable).with_name("seqlab")), "run", spec],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"quickstart failed:\n{done.stderr[-2000:]}")
        # The CLI's own summary holds the phases outside the flow (imports, Prefect start).
        line = next(line for line in done.stdout.splitlines() if line.startswith("time: "))
        printed = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)s", line.split(";")[0])}
        client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
        experiment = client.get_experiment_by_name(Path(spec).stem)
        (parent,) = client.search_runs(
            [experiment.experiment_id], filter_string="tags.kind = 'study'"
        )
        phases = {
            key.removeprefix("timing/").removesuffix("_s"): value
            for key, value in parent.data.metrics.items()
            if key.startswith("timing/")
        }
        outside = {k: printed[k] for k in ("imports", "prefect_start")}
        return {"wall": wall, **outside, **phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spec", default="experiments/quickstart.yaml")
    args = parser.parse_args()
    runs = [one_run(args.spec) for _ in range(args.repeats)]
    keys = list(runs[0])
    medians = {k: statistics.median(r[k] for r in runs) for k in keys}
    cpus = os.cpu_count() or 1  # what study.tuning.ray_session gives the local Ray
    per_trial = load_spec(args.spec).resources.cpu
    tuners = [r["trials"] + r.get("repeats", 0.0) for r in runs]  # one Tuner, or two before
    outside = [r["wall"] - t for r, t in zip(runs, tuners, strict=True)]
    shares = [
        training_share(r["train"], t, per_trial, cpus) for r, t in zip(runs, tuners, strict=True)
    ]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"spec: {args.spec}; {args.repeats} runs, each in a fresh SEQLAB_HOME")
    print("| phase | median s | runs |")
    print("|---|---|---|")
    for key in keys:
        print(f"| {key} | {medians[key]:.1f} | {', '.join(f'{r[key]:.1f}' for r in runs)} |")
    print(
        f"| outside the Tuners (wall - trials [- repeats]) | {statistics.median(outside):.1f} "
        f"| {', '.join(f'{o:.1f}' for o in outside)} |"
    )
    print(
        f"training's share of the Tuners' CPU-seconds ({cpus} CPUs, {per_trial:g} per trial): "
        f"median {statistics.median(shares):.0%} ({', '.join(f'{x:.0%}' for x in shares)})"
    )


if __name__ == "__main__":
    main()
