"""Checkpoint policy: what a trial's epoch costs when it checkpoints every epoch, and when only
the epochs that lower its validation loss (and its last one) do, as trials now do by default.

Two arms, one trial each, through the real stack: `trials.tune_trials` (its function, without
Prefect) inside `tuning.ray_session()`, the `trial_runs.TrialRuns` callback logging to an MLflow
SQLite store in a temporary SEQLAB_HOME.

- every-epoch: `search.checkpoint_every: 1`, what every trial did before.
- improvements: the default (`checkpoint_every: null`).

The arms take turns, in a rotated order every round, on the same data, model and seed, so they
train the same weights: the same epochs improve in both. Each epoch's time is Tune's
`time_this_iter_s`, the time between two reports in the trial: the checkpoint's write and its
copy into Tune's storage, the report, and the driver's handling of the previous result, which a
function trainable waits for. Tune's results say which epochs carried a checkpoint. The first
epoch is warm-up and not counted. Also timed, in the driver: its handling of each result
(`TuneController._process_trial_result`, the MLflow logging included).

The default size is the framework tax's GPU model (an LSTM of H=512, whose checkpoint with
Adam's state is 12 MiB) on a few examples of length 5: an epoch is then a few milliseconds of
compute, and what the stack does between two epochs shows above the machine's noise. With
an epoch of real work the same cost is there, but a smaller part of it.

    python benchmarks/checkpoint_policy.py [--rounds 6] [--epochs 40] [--hidden 512]
                                           [--length 5] [--n-train 64] [--device cpu|cuda]
                                           [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import common

RESULT = common.result_path("checkpoint_policy")
ARMS = {"every-epoch": 1, "improvements": None}  # arm -> search.checkpoint_every
VARIANT = "lstm"


def study_spec(args: argparse.Namespace, checkpoint_every: int | None) -> Any:
    """A one-variant, one-trial study spec whose trial runs every epoch (FIFO)."""
    from pipelines.spec import parse_spec

    raw = common.adding_study(
        "checkpoint-policy",
        args,
        variants={VARIANT: {"cell": args.cell, "hidden_size": args.hidden}},
        search={
            "trials_per_variant": 1,
            "scheduler": {"name": "fifo"},
            "checkpoint_every": checkpoint_every,
        },
        fixed={"batch_size": args.batch, "max_epochs": args.epochs, "lr": args.lr},
    )
    raw["resources"]["gpu"] = 1 if args.device == "cuda" else 0
    return parse_spec(raw, "checkpoint_policy.py")


@contextlib.contextmanager
def timed_result_handling() -> Iterator[list[float]]:
    """Time the driver's handling of each trial result, callbacks (MLflow) included."""
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController._process_trial_result
    seconds: list[float] = []

    def timed(self: TuneController, trial: Any, result: dict[str, Any]) -> Any:
        start = time.perf_counter()
        try:
            return original(self, trial, result)
        finally:
            seconds.append(time.perf_counter() - start)

    TuneController._process_trial_result = timed  # type: ignore[method-assign]
    try:
        yield seconds
    finally:
        TuneController._process_trial_result = original  # type: ignore[method-assign]


def run_arm(spec: Any, dataset: Any, experiment_id: str, index: int) -> dict[str, Any]:
    """One trial through `trials.tune_trials`, under a fresh parent run (a fresh Tuner)."""
    with timed_result_handling() as handling:
        run = common.one_trial(spec, VARIANT, dataset, experiment_id, index)
    checkpoint_bytes = sum(
        f.stat().st_size for f in run.experiment_dir.glob("*/checkpoint_*/**/*") if f.is_file()
    )
    return {
        "epoch_s": [float(row["time_this_iter_s"]) for row in run.results],
        "checkpointed": [row.get("checkpoint_dir_name") is not None for row in run.results],
        "val_loss": [float(row["val/loss"]) for row in run.results],
        "kept_checkpoint_bytes": checkpoint_bytes,
        "best_val": run.outcome.best_val,
        "driver_handling_s": handling,
    }


def measure(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study, tracking
    from pipelines.data import store

    specs = {arm: study_spec(args, every) for arm, every in ARMS.items()}
    spec = specs["improvements"]
    dataset = store.prepare(spec.task.name, spec.task.options.__dict__, spec.task.seed, home)
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, spec.name)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    arms = list(ARMS)
    with study.tuning.ray_session():
        for round_ in range(args.rounds):
            for arm in arms[round_ % 2 :] + arms[: round_ % 2]:
                runs[arm].append(run_arm(specs[arm], dataset, experiment_id, round_))
                print(
                    f"round {round_ + 1}/{args.rounds} {arm}: "
                    f"{sum(runs[arm][-1]['epoch_s'][1:]):.2f} s in the timed epochs, "
                    f"{sum(runs[arm][-1]['checkpointed'])} checkpoints",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per arm: the median epoch with and without a checkpoint, the timed epochs' total per run,
    the checkpoints written; and the paired ratio of the totals, improvements / every-epoch."""

    def ms(values: list[float]) -> float | None:
        return 1000 * statistics.median(values) if values else None

    rows: dict[str, Any] = {}
    for arm, arm_runs in runs.items():
        timed = [  # each run's first epoch is warm-up
            pair
            for r in arm_runs
            for pair in list(zip(r["epoch_s"], r["checkpointed"], strict=True))[1:]
        ]
        with_ckpt = [seconds for seconds, checkpointed in timed if checkpointed]
        without = [seconds for seconds, checkpointed in timed if not checkpointed]
        rows[arm] = {
            "epoch_ms_with_checkpoint": ms(with_ckpt),
            "epoch_ms_without_checkpoint": ms(without),
            "timed_epochs_s": [sum(r["epoch_s"][1:]) for r in arm_runs],
            "checkpoints_per_run": [sum(r["checkpointed"]) for r in arm_runs],
            "kept_checkpoint_mib": [r["kept_checkpoint_bytes"] / 2**20 for r in arm_runs],
            "best_val": [r["best_val"] for r in arm_runs],
            "driver_handling_ms": ms([s for r in arm_runs for s in r["driver_handling_s"]]),
        }
    ratios = [
        new / old
        for new, old in zip(
            rows["improvements"]["timed_epochs_s"],
            rows["every-epoch"]["timed_epochs_s"],
            strict=True,
        )
    ]
    return {"rows": rows, "paired_ratios": ratios, "median_ratio": statistics.median(ratios)}


def markdown(report: dict[str, Any]) -> str:
    summary, sizes = report["summary"], report["sizes"]
    lines = [
        "```",
        f"{report['machine']}; {report['versions']}",
        f"adding T={sizes['length']}, n_train {sizes['n_train']}, batch {sizes['batch']}; "
        f"seq2one {sizes['cell']} H={sizes['hidden']}; {sizes['epochs']} epochs per run "
        f"(the first untimed), {report['rounds']} rounds; device: {sizes['device']}",
        "load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.1f}" for x in report["load_average"]),
        "```",
        "",
        "| arm | checkpoints per run | epoch with a checkpoint, ms | epoch without, ms "
        "| timed epochs per run, s | driver's handling of a result, ms |",
        "|---|---:|---:|---:|---|---:|",
    ]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for arm, row in summary["rows"].items():
        lines.append(
            f"| {arm} | {', '.join(map(str, row['checkpoints_per_run']))} "
            f"| {fmt(row['epoch_ms_with_checkpoint'])} | {fmt(row['epoch_ms_without_checkpoint'])} "
            f"| {', '.join(f'{s:.2f}' for s in row['timed_epochs_s'])} "
            f"| {fmt(row['driver_handling_ms'])} |"
        )
    lines += [
        "",
        "timed epochs, improvements / every-epoch, paired by round: "
        + ", ".join(f"{r:.3f}" for r in summary["paired_ratios"])
        + f" (median {summary['median_ratio']:.3f})",
        "best val/loss per run: "
        + "; ".join(
            f"{arm} " + ", ".join(f"{v:.6f}" for v in row["best_val"])
            for arm, row in summary["rows"].items()
        ),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = common.argument_parser(__doc__)
    common.add_round_arguments(parser, epochs=40, length=5, hidden=512)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, default=RESULT, help="where to write the figures")
    parser.set_defaults(n_train=64, n_val=64, batch=64)
    args = parser.parse_args()
    common.check_rounds(parser, args)
    began = time.perf_counter()
    with common.private_home("seqlab-ckpt-") as home:
        runs = measure(args, home)
    report = {
        **common.report_head("checkpoint_policy"),
        "rounds": args.rounds,
        "sizes": {
            "length": args.length,
            "n_train": args.n_train,
            "n_val": args.n_val,
            "batch": args.batch,
            "cell": args.cell,
            "hidden": args.hidden,
            "epochs": args.epochs,
            "device": args.device,
        },
        "summary": summarise(runs),
        "runs": runs,
    }
    common.publish(report, markdown, args.json, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
