"""How long `seqlab up` takes until all three services are healthy, and `seqlab down` to stop.

Each round starts the stack on free ports: first in a fresh SEQLAB_HOME (Prefect migrates a new
database, Ray makes its session), then again in the same home (what a user's second `up` costs).
Prints medians over the rounds, and the machine.

    .venv/bin/python benchmarks/stack_up.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEQLAB = [sys.executable, "-m", "pipelines.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cycle(home: Path) -> tuple[float, float, float]:
    """One `up` then `down`: (wall seconds of up, seconds `up` reported healthy, down seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env |= {"SEQLAB_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    ports = []
    for option in ("--mlflow-port", "--prefect-port", "--ray-port", "--dashboard-port"):
        ports += [option, str(_free_port())]
    ports += ["--ray-client-port", str(_free_port())]
    began = time.perf_counter()
    up = subprocess.run([*SEQLAB, "up", *ports], cwd=ROOT, env=env, capture_output=True, text=True)
    up_wall = time.perf_counter() - began
    if up.returncode != 0:
        raise SystemExit(f"seqlab up failed:\n{up.stdout}\n{up.stderr}")
    healthy = float(re.search(r"healthy after ([0-9.]+)s", up.stdout).group(1))
    began = time.perf_counter()
    subprocess.run([*SEQLAB, "down"], cwd=ROOT, env=env, capture_output=True, check=True)
    return up_wall, healthy, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float, float]]] = {"fresh home": [], "same home": []}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="seqlab-up-") as tmp:
            home = Path(tmp) / "home"
            rows["fresh home"].append(_cycle(home))
            rows["same home"].append(_cycle(home))
    machine = f"{os.cpu_count()} CPUs, {platform.machine()}, {platform.system()}"
    medians = {
        case: {
            "up_wall_s": statistics.median(r[0] for r in runs),
            "healthy_s": statistics.median(r[1] for r in runs),
            "down_s": statistics.median(r[2] for r in runs),
            "up_wall_all_s": [round(r[0], 1) for r in runs],
        }
        for case, runs in rows.items()
    }
    if args.json:
        print(json.dumps({"machine": machine, "rounds": args.rounds, "medians": medians}))
        return
    print(f"machine: {machine}; {args.rounds} rounds, medians")
    print("| case | `seqlab up` wall | all healthy after | `seqlab down` | each `up` |")
    print("|---|---|---|---|---|")
    for case, m in medians.items():
        each = ", ".join(f"{s}" for s in m["up_wall_all_s"])
        print(
            f"| {case} | {m['up_wall_s']:.1f} s | {m['healthy_s']:.1f} s | {m['down_s']:.1f} s "
            f"| {each} |"
        )


if __name__ == "__main__":
    main()
