"""How long `seqlab data prepare` takes end to end, and how much of it is importing.

Two measurements, each the median of `--repeats` fresh subprocesses:

1. Import time of the module that holds the `prepare-data` Prefect task, `pipelines.data.prepare`
   (Prefect and the store), against `pipelines.study.flows` (the whole training stack: torch,
   Lightning, Ray, MLflow), which held it before. Their ratio is the import share saved.
2. Wall time of `seqlab data prepare adding` as a user runs it, with Prefect's ephemeral API:
   into an empty store, then again on the store that now holds the dataset (a cache hit).
3. Wall time of `seqlab --help`, which loads the command groups and none of the heavy libraries
   (each command imports those itself); it should stay well under a second.

Run: `python benchmarks/cli_start.py [--repeats 3] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import embedded_env, machine, write_atomically

ROOT = Path(__file__).resolve().parents[1]
IMPORT = (
    "import time; from pipelines.ops import settings; settings.configure_environment(); "
    "t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
)


def import_seconds(module: str, home: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT.format(module=module)],
        cwd=ROOT,
        env=embedded_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def seqlab_seconds(home: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=embedded_env(home),
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - start


def prepare_seconds(home: Path) -> float:
    return seqlab_seconds(home, "data", "prepare", "adding")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = parser.parse_args()
    imports: dict[str, list[float]] = {"pipelines.data.prepare": [], "pipelines.study.flows": []}
    cold: list[float] = []
    cached: list[float] = []
    helps: list[float] = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            for module in imports:  # alternate, so that drifting load hits both alike
                imports[module].append(import_seconds(module, home))
            cold.append(prepare_seconds(home))
            cached.append(prepare_seconds(home))
            helps.append(seqlab_seconds(home, "--help"))
    medians = {module: statistics.median(times) for module, times in imports.items()}
    print(f"machine: {machine()}; load average at the end {os.getloadavg()}")
    print("| measurement | median s | runs s |")
    print("|---|---:|---|")
    for label, times in [
        *((f"import {module}", times) for module, times in imports.items()),
        ("seqlab data prepare adding, empty store", cold),
        ("seqlab data prepare adding, cached", cached),
        ("seqlab --help", helps),
    ]:
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(f"| {label} | {statistics.median(times):.1f} | {runs} |")
    ratio = medians["pipelines.data.prepare"] / medians["pipelines.study.flows"]
    print(f"import ratio data_flows / flows: {ratio:.2f}")
    if args.json:
        write_atomically(
            args.json,
            {
                "machine": machine(),
                "imports": imports,
                "prepare_cold": cold,
                "prepare_cached": cached,
                "help": helps,
                "import_ratio": ratio,
            },
        )


if __name__ == "__main__":
    main()
