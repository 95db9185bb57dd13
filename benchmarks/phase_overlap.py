"""Whole studies through `seqlab run`, the search and the repeats in one Tuner with no barrier
between them, against a baseline tree of seqlab (a git worktree of an earlier commit) run in the
same session.

Each study runs as a user runs it, `seqlab run SPEC` in a fresh `SEQLAB_HOME`, once per round in
each tree, the trees taking turns. The studies:
- `experiments/quickstart.yaml`;
- the tiny study: N variants (cycling through tanh, GRU, LSTM, leaky), one one-epoch trial
  each, 2 seeds, for each N of `--variants` (default 1 and 11): the ratio of its wall time at 11
  variants to that at 1 says whether orchestration grows with the number of variants.

For each run the figures are the CLI's wall time (from `seqlab run` to its exit), the
`trials` phase (the one Tuner; in a baseline tree with a Tuner per phase, `trials` + `repeats`)
and the phases the parent run logged.

With `--cluster-cpus N` it measures a simulated cluster instead: a local Ray with N logical CPUs
declared (on however few cores this machine has; the trials share them, and each counts its own
time), and the study of 4 variants x 6 trials whose durations differ by the hidden size each
draws (32 or 256), 2 seeds. The study runs through the flow (`run_study`) of each tree, in a
process that started that Ray first, so the study's trials reuse their workers as on the local
default. The figure is the share of the trial-slots busy over the Tuners' wall time: the
trials' summed training time (`timing/train_s`) over N x that time.

    python benchmarks/phase_overlap.py --baseline /tmp/old-tree [--rounds 2] [--variants 1,11]
    python benchmarks/phase_overlap.py --baseline /tmp/old-tree --cluster-cpus 8
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import yaml
from mlflow.tracking import MlflowClient

RESULT = common.result_path("phase_overlap")
CELLS = ("tanh", "gru", "lstm", "leaky")
QUICKSTART = common.ROOT / "experiments" / "quickstart.yaml"


def tiny_study(count: int) -> dict[str, Any]:
    """The tiny study of `count` variants: one one-epoch trial each, 2 seeds."""
    cells = [CELLS[i % len(CELLS)] for i in range(count)]
    return {
        "name": f"tiny-{count}",
        "task": {"name": "adding", "options": {"length": 10, "n_train": 512, "n_val": 128}},
        "variants": {f"{c}{i}": {"cell": c, "hidden_size": 8} for i, c in enumerate(cells)},
        "search": {
            "space": {"lr": {"loguniform": [1e-3, 1e-2]}},
            "trials_per_variant": 1,
            "scheduler": {"name": "fifo"},
        },
        "fixed": {"max_epochs": 1, "batch_size": 64},
        "seeds": 2,
        "resources": {"cpu": 1, "gpu": 0},
    }


def cluster_study() -> dict[str, Any]:
    """The simulated cluster's study: 4 variants x 6 trials of unequal durations, 2 seeds."""
    return {
        "name": "cluster",
        "task": {"name": "adding", "options": {"length": 50, "n_train": 2048, "n_val": 256}},
        "variants": {cell: {"cell": cell} for cell in CELLS},
        "search": {
            "space": {"lr": {"loguniform": [1e-3, 1e-2]}, "hidden_size": {"choice": [32, 256]}},
            "trials_per_variant": 6,
            "scheduler": {"name": "fifo"},
        },
        "fixed": {"max_epochs": 4, "batch_size": 64},
        "seeds": 2,
        "resources": {"cpu": 1, "gpu": 0},
    }


# `run_study` in a process whose local Ray declares N CPUs: `tuning.ray_session` uses a Ray that
# is already running, and the local default's reused workers stay on.
CLUSTER_DRIVER = """
import sys, ray
from pipelines.ops import settings
settings.configure_environment()
ray.init(address="local", num_cpus=int(sys.argv[2]), include_dashboard=False, log_to_driver=False)
from pipelines.spec.load import load_spec
from pipelines.study.flows import run_study
run_study(load_spec(sys.argv[1]), source=sys.argv[1])
"""
CLI = "import sys; from pipelines.cli.app import entry; sys.argv[0] = 'seqlab'; entry()"


def run_study(tree: Path, spec: Path, cluster_cpus: int | None = None) -> dict[str, float]:
    """`seqlab run SPEC` with the code of `tree`, in a fresh SEQLAB_HOME (or, with
    `cluster_cpus`, its flow in a process with that Ray): its wall time and the phases its
    parent run logged (`timing/<phase>_s`)."""
    with tempfile.TemporaryDirectory(prefix="seqlab-overlap-") as home:
        env = {**os.environ, "SEQLAB_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("PREFECT_API_URL", None)
        env.pop("RAY_ADDRESS", None)
        command = [CLI, "run", str(spec)]
        if cluster_cpus:
            command = [CLUSTER_DRIVER, str(spec), str(cluster_cpus)]
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", *command],
            cwd=tree,  # the tree's `pipelines` comes first on the path
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"{tree}: {spec.name} failed:\n{done.stderr[-3000:]}")
        client = MlflowClient(tracking_uri=f"sqlite:///{home}/mlflow.db")
        experiment = client.get_experiment_by_name(yaml.safe_load(spec.read_text())["name"])
        (parent,) = client.search_runs([experiment.experiment_id], "tags.kind = 'study'")
        phases = {
            key.removeprefix("timing/").removesuffix("_s"): value
            for key, value in parent.data.metrics.items()
            if key.startswith("timing/")
        }
        verdict = next(
            (line for line in done.stdout.splitlines() if line.startswith("## ")), ""
        ).split("**")[1:2]
        tuners = phases.get("trials", 0.0) + phases.get("repeats", 0.0)
        busy = phases["train"] / (cluster_cpus * tuners) if cluster_cpus else math.nan
        return {
            "wall": wall,
            "tuners": tuners,
            "slots_busy": busy,
            **phases,
            "verdict": (verdict or [""])[0],
        }


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--baseline", type=Path, required=True, help="a tree of earlier seqlab")
    parser.add_argument("--new", type=Path, default=common.ROOT, help="the tree measured")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="1,11", help="variant counts of the tiny study")
    parser.add_argument("--no-quickstart", action="store_true")
    parser.add_argument("--cluster-cpus", type=int, help="measure the simulated cluster instead")
    parser.add_argument(
        "--json",
        type=Path,
        help=f"default: {RESULT}, or with --cluster-cpus benchmarks/phase_overlap_cluster.json",
    )
    args = parser.parse_args()
    began = time.perf_counter()
    trees = {"baseline": args.baseline.resolve(), "new": args.new.resolve()}
    with tempfile.TemporaryDirectory(prefix="seqlab-overlap-specs-") as folder:
        specs = {} if args.no_quickstart or args.cluster_cpus else {"quickstart": QUICKSTART}
        studies = {f"tiny-{c}": tiny_study(int(c)) for c in args.variants.split(",")}
        if args.cluster_cpus:
            studies = {f"cluster-{args.cluster_cpus}": cluster_study()}
        for name, raw in studies.items():
            path = Path(folder) / f"{name}.yaml"
            path.write_text(yaml.safe_dump(raw))
            specs[name] = path
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            study: {arm: [] for arm in trees} for study in specs
        }
        for round_ in range(args.rounds):
            for study, spec in specs.items():
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for arm in order:
                    figures = run_study(trees[arm], spec, args.cluster_cpus)
                    runs[study][arm].append(figures)
                    print(
                        f"round {round_} {study} {arm}: wall {figures['wall']:.1f}s, "
                        f"Tuners {figures['tuners']:.1f}s, slots busy "
                        f"{figures['slots_busy']:.2f}, {figures['verdict']}",
                        flush=True,
                    )
    medians = {
        study: {
            arm: {
                key: statistics.median(r[key] for r in done)
                for key in ("wall", "tuners", "slots_busy")
            }
            for arm, done in arms.items()
        }
        for study, arms in runs.items()
    }
    report = {
        "machine": common.machine(),
        "baseline": str(args.baseline),
        "rounds": args.rounds,
        "runs": runs,
        "medians": medians,
    }
    default = RESULT.with_name("phase_overlap_cluster.json") if args.cluster_cpus else RESULT
    common.publish(report, markdown, args.json or default, began)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"machine: {report['machine']}; {report['rounds']} rounds; baseline {report['baseline']}",
        "",
        "| study | baseline wall s | new wall s | new / baseline | baseline Tuners s "
        "| new Tuner s | slots busy, baseline | slots busy, new |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for study, arms in report["medians"].items():
        old, new = arms["baseline"], arms["new"]
        lines.append(
            f"| {study} | {old['wall']:.1f} | {new['wall']:.1f} | {new['wall'] / old['wall']:.2f} "
            f"| {old['tuners']:.1f} | {new['tuners']:.1f} | {old['slots_busy']:.2f} "
            f"| {new['slots_busy']:.2f} |"
        )
    tiny = sorted((int(s.split("-")[1]), s) for s in report["medians"] if s.startswith("tiny-"))
    if len(tiny) > 1:
        (small, first), (large, last) = tiny[0], tiny[-1]
        for arm in ("baseline", "new"):
            ratio = report["medians"][last][arm]["wall"] / report["medians"][first][arm]["wall"]
            lines.append(f"\n{arm}: tiny study, {large} variants against {small}: {ratio:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
