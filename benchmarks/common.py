"""What the benchmarks share: the parser, the report's heading (the machine and versions), an
atomic write, and the set-up of the in-process studies (a private home, the adding task's size,
the rounds of trials).

The benchmarks run as scripts (`python benchmarks/NAME.py`), so their own folder is on the path
and they import this module as `common`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def result_path(benchmark: str) -> Path:
    """Where a benchmark writes its figures unless told otherwise: benchmarks/NAME.json."""
    return ROOT / "benchmarks" / f"{benchmark}.json"


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser: its module docstring's first paragraph, and every default shown."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def report_head(benchmark: str) -> dict[str, Any]:
    """The first keys of a benchmark's JSON: its name, the machine, versions and load."""
    return {
        "benchmark": benchmark,
        "machine": machine(),
        "versions": versions(),
        "load_average": list(os.getloadavg()),
    }


def machine() -> str:
    """The CPU, core count and OS, for the report's heading."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()}-core {platform.machine()} ({model}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def versions(names: tuple[str, ...] = ("torch", "lightning", "ray", "mlflow")) -> str:
    """The installed versions of the packages a figure depends on."""
    return ", ".join(f"{name} {metadata.version(name)}" for name in names)


# What points seqlab at servers or a bucket; without them it runs the embedded default.
SERVER_VARS = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL", "SEQLAB_STORE")


def embedded_env(home: Path) -> dict[str, str]:
    """This process's environment for a `seqlab` subprocess on the embedded default in `home`."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    return {**env, "SEQLAB_HOME": str(home)}


@contextmanager
def private_home(prefix: str) -> Iterator[Path]:
    """A temporary SEQLAB_HOME with the embedded default (no tracking server, Ray cluster or
    Prefect server from the environment), configured before Prefect is imported."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        home = Path(tmp) / "home"
        os.environ["SEQLAB_HOME"] = str(home)
        for var in SERVER_VARS:
            os.environ.pop(var, None)
        from pipelines.ops import settings

        settings.configure_environment()  # before flows imports Prefect
        settings.quiet_known_warnings()
        yield home


def add_adding_arguments(parser: argparse.ArgumentParser, length: int) -> None:
    """The options `adding_study` reads: the adding problem's size, the batch and the cell."""
    parser.add_argument("--length", type=int, default=length, help="adding problem's T")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--cell", default="lstm", help="a cell name (see `seqlab catalogue`)")


def add_round_arguments(
    parser: argparse.ArgumentParser, epochs: int, length: int, hidden: int
) -> None:
    """The options of a benchmark whose arms train the adding task in interleaved rounds."""
    parser.add_argument("--rounds", type=int, default=6, help="runs of each arm, interleaved")
    parser.add_argument("--epochs", type=int, default=epochs, help="epochs per run (first untimed)")
    add_adding_arguments(parser, length=length)
    parser.add_argument("--hidden", type=int, default=hidden)
    parser.add_argument("--lr", type=float, default=3e-3)


def check_rounds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a run too short to time; with `--device cpu`, hide any GPU before torch or Ray
    look, so that no arm sees one."""
    if args.rounds < 1 or args.epochs < 2:
        parser.error("--rounds must be at least 1 and --epochs at least 2")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def adding_study(name: str, args: Any, **sections: Any) -> dict[str, Any]:
    """A raw one-variant study spec on the adding task, sized by `args.length`, `args.n_train`
    and `args.n_val` (100 test examples), with one CPU per trial; `sections` adds `variants`,
    `search` and `fixed`."""
    task_options = {"length": args.length, "n_train": args.n_train, "n_val": args.n_val}
    return {
        "name": name,
        "task": {"name": "adding", "options": {**task_options, "n_test": 100}},
        "resources": {"cpu": 1, "gpu": 0},
        **sections,
    }


def adding_sizes(length: int, split_sizes: dict[str, int], batch_size: int) -> dict[str, Any]:
    """The report's sizes of an adding dataset trained in batches of `batch_size`."""
    return {
        "task": f"adding T={length}",
        "n_train": split_sizes["train"],
        "n_val": split_sizes["val"],
        "batch_size": batch_size,
        "steps_per_epoch": math.ceil(split_sizes["train"] / batch_size),
    }


@dataclass
class TrialRun:
    """One trial of the real stack: the variant's outcome, Tune's experiment directory, the
    trial's results in epoch order, and the seconds `tune_trials` took."""

    outcome: Any
    experiment_dir: Path
    results: list[dict[str, Any]]
    wall_s: float


def one_trial(spec: Any, variant: str, dataset: Any, experiment_id: str, index: int) -> TrialRun:
    """The spec's one trial of `variant` through `trials.tune_trials` (its function, without
    Prefect), under a fresh parent run: `tune_trials` would restore, not rerun, a Tuner that the
    same parent run already recorded.

    Raises:
        RuntimeError: the trial failed or stopped before `max_epochs`.
    """
    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study, tracking

    client = tracking.client()
    parent = client.create_run(experiment_id, run_name=f"round-{index}", tags={"kind": "study"})
    parent_id = parent.info.run_id
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        searched = study.trials.tune_trials.fn(
            spec, dataset, experiment_id, parent_id, variants=[variant], repeats=False
        )
    if not searched.outcomes:
        raise RuntimeError(f"the trial cannot be used: {searched.left_out[0].reason}")
    (outcome,) = searched.outcomes
    wall = time.perf_counter() - began
    client.set_terminated(parent_id, "FINISHED")
    experiment_dir = Path(client.get_run(parent_id).data.tags["seqlab.tune.trials"])
    (result_file,) = experiment_dir.glob("*/result.json")
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda row: row["training_iteration"])
    if outcome.failed or len(rows) != spec.fixed.max_epochs:
        raise RuntimeError(f"the trial failed or stopped early: {len(rows)} results")
    return TrialRun(outcome, experiment_dir, rows, wall)


def publish(
    report: dict[str, Any], markdown: Callable[[dict[str, Any]], str], path: Path, began: float
) -> None:
    """Record the seconds since `began` in the report, print its Markdown and running time, and
    write its figures to `path`."""
    report["seconds"] = time.perf_counter() - began
    print(markdown(report))
    print(f"\n{report['seconds']:.0f} s in all; figures in {path}")
    write_atomically(path, report)


def write_atomically(path: Path, report: dict[str, Any]) -> None:
    """Write JSON to a temporary sibling, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(json.dumps(report, indent=1) + "\n")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
