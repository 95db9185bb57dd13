"""Search phase against the number of variants: every variant in one Tuner, as studies search now,
against one Tuner per variant, one after another, as they searched before.

Both arms run `trials.tune_trials` (its function, without Prefect) in one Ray session, on the
same tiny study with 1, 2, 4, ... variants: the one-Tuner arm calls it once for all variants,
the per-variant arm once per variant (`variants=[v]`), which is what the per-variant search did.
For each count the arms take turns, in a rotated order every round. Each arm's figure is its
wall time, and its trial-slot utilisation: the trials' summed training time over the slots
(declared CPUs / CPUs per trial) times the wall time.

The default is the issue's tiny study: one one-epoch trial per variant on a small adding task.
`--cpus 8 --trials 6` with `--hidden 8,64` (trials of unequal lengths) is its simulated cluster.

    python benchmarks/variant_scaling.py [--counts 1,2,4,8,16] [--rounds 1] [--trials 1]
                                         [--epochs 1] [--cpus N] [--hidden 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common

RESULT = common.result_path("variant_scaling")
CELLS = ("tanh", "gru", "lstm", "leaky")  # the variants cycle through these
ARMS = ("one-tuner", "per-variant")


def study_spec(args: argparse.Namespace, count: int) -> Any:
    from pipelines.spec import parse_spec

    hidden = [int(h) for h in args.hidden.split(",")]
    space = {"lr": {"loguniform": [1e-3, 1e-2]}}
    if len(hidden) > 1:
        space["hidden_size"] = {"choice": hidden}
    fixed_size = {"hidden_size": hidden[0]} if len(hidden) == 1 else {}
    cells = [CELLS[i % len(CELLS)] for i in range(count)]
    raw = common.adding_study(
        f"scaling-{count}",
        args,
        variants={f"{cell}{i}": {"cell": cell, **fixed_size} for i, cell in enumerate(cells)},
        search={"space": space, "trials_per_variant": args.trials, "scheduler": {"name": "fifo"}},
        fixed={"max_epochs": args.epochs, "batch_size": args.batch},
    )
    return parse_spec(raw)


def run_arm(arm: str, spec: Any, dataset: Any, round_: int) -> dict[str, Any]:
    """One arm's search of the spec's variants, each Tuner under a fresh parent run (a parent
    run records one search Tuner, which a second call would restore)."""
    from pipelines import study, tracking

    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, spec.name)
    groups = [None] if arm == "one-tuner" else [[v] for v in spec.variants]
    began = time.perf_counter()
    outcomes = []
    for number, variants in enumerate(groups):
        name = f"{arm}-{round_}-{number}"
        parent_id = client.create_run(experiment_id, run_name=name, tags={"kind": "study"})
        with contextlib.redirect_stdout(io.StringIO()):
            searched = study.trials.tune_trials.fn(
                spec,
                dataset,
                experiment_id,
                parent_id.info.run_id,
                variants=variants,
                repeats=False,
            )
        client.set_terminated(parent_id.info.run_id, "FINISHED")
        if searched.left_out:
            raise RuntimeError(f"{arm}: {searched.left_out[0].reason}")
        outcomes += searched.outcomes
    wall = time.perf_counter() - began
    return {"wall_s": wall, "train_s": sum(o.train_seconds for o in outcomes)}


def measure(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    import ray

    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study
    from pipelines.data import store

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        with study.tuning.ray_session():
            for count in args.counts:
                spec = study_spec(args, count)
                options = spec.task.options.__dict__
                dataset = store.prepare(spec.task.name, options, spec.task.seed, home)
                runs[str(count)] = {arm: [] for arm in ARMS}
                for round_ in range(args.rounds):
                    order = ARMS[round_ % 2 :] + ARMS[: round_ % 2]
                    for arm in order:
                        run = run_arm(arm, spec, dataset, round_)
                        runs[str(count)][arm].append(run)
                        print(
                            f"{count} variants, round {round_ + 1}, {arm}: "
                            f"{run['wall_s']:.1f} s wall, {run['train_s']:.1f} s training",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        ray.shutdown()
    return runs


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]], slots: float) -> dict[str, Any]:
    """Per count and arm: the median wall time and utilisation; per count the ratio of the
    medians, one-tuner / per-variant; and each arm's wall time against one variant's."""
    rows: dict[str, Any] = {}
    for count, arms in runs.items():
        row: dict[str, Any] = {}
        for arm, arm_runs in arms.items():
            row[arm] = {
                "wall_s": statistics.median(r["wall_s"] for r in arm_runs),
                "utilisation": statistics.median(
                    r["train_s"] / (slots * r["wall_s"]) for r in arm_runs
                ),
            }
        row["ratio"] = row["one-tuner"]["wall_s"] / row["per-variant"]["wall_s"]
        rows[count] = row
    first = next(iter(rows.values()))
    for row in rows.values():
        for arm in ARMS:
            row[arm]["vs_first_count"] = row[arm]["wall_s"] / first[arm]["wall_s"]
    return rows


def markdown(report: dict[str, Any]) -> str:
    sizes = report["sizes"]
    lines = [
        "```",
        f"{report['machine']}; {report['versions']}",
        f"adding T={sizes['length']}, n_train {sizes['n_train']}; {sizes['trials']} trials per "
        f"variant, {sizes['epochs']} epochs each, hidden {sizes['hidden']}; {sizes['cpus']} "
        f"CPUs declared to Ray, 1 per trial; {report['rounds']} rounds",
        "load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.1f}" for x in report["load_average"]),
        "```",
        "",
        "| variants | one Tuner: wall s | x first count | slots busy | per variant: wall s "
        "| x first count | slots busy | one / per-variant |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, row in report["summary"].items():
        new, old = row["one-tuner"], row["per-variant"]
        lines.append(
            f"| {count} | {new['wall_s']:.1f} | {new['vs_first_count']:.2f} "
            f"| {new['utilisation']:.2f} | {old['wall_s']:.1f} | {old['vs_first_count']:.2f} "
            f"| {old['utilisation']:.2f} | {row['ratio']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--counts", default="1,2,4,8,16", help="variant counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each arm per count")
    parser.add_argument("--trials", type=int, default=1, help="trials per variant")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs declared to Ray")
    parser.add_argument("--hidden", default="8", help="hidden size, or sizes searched: 8,64")
    parser.add_argument("--json", type=Path, default=RESULT)
    common.add_adding_arguments(parser, length=10)
    parser.set_defaults(n_train=256, n_val=64)
    args = parser.parse_args()
    args.counts = [int(c) for c in args.counts.split(",")]
    began = time.perf_counter()
    with common.private_home("seqlab-scaling-") as home:
        runs = measure(args, home)
    report = {
        **common.report_head("variant_scaling"),
        "rounds": args.rounds,
        "sizes": {
            "length": args.length,
            "n_train": args.n_train,
            "trials": args.trials,
            "epochs": args.epochs,
            "hidden": args.hidden,
            "cpus": args.cpus,
        },
        "runs": runs,
        "summary": summarise(runs, float(args.cpus)),
    }
    common.publish(report, markdown, args.json, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
