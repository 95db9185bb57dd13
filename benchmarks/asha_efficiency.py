"""ASHA efficiency: the epochs ASHA needs to come within 2% of the best validation loss that an
exhaustive random search finds, as a share of the random search's epochs (target <= 35%).

Both searches run the same N configurations on the adding problem, drawn once from the study's
search space (`lr` log-uniform, `hidden_size` a choice) with a seeded generator, and handed to
Tune as a grid over a point index, so the two Tuners see the same configurations in the same
order. Each trial is the study's own: `trainable.train_trial` under `tuning.trainable`, with the
`trial_runs.TrialRuns` callback logging to an MLflow SQLite store in a temporary SEQLAB_HOME,
on a local Ray (`tuning.ray_session`). Every trial trains with the same seed, so a configuration
follows the same curve in both searches (the script checks this).

- random search: FIFO, every configuration for `max_t` epochs; its best val/loss B over all
  epochs of all trials, and its N * max_t epochs.
- ASHA: `space.scheduler` with grace period 1 and reduction factor 3 (`--grace-period` and
  `--reduction-factor` change them). Its results are counted in
  the order they reached the driver (a Tune callback records them); the count of epochs, summed
  over trials, at the first result with val/loss <= 1.02 B is ASHA's cost. Ratio = that count /
  (N * max_t). Also reported: ASHA's total epochs and whether its own best is within 2% of B.

ASHA's decisions depend on the order in which concurrent trials report, so a rerun on the same
configurations can differ; `--repeats` draws fresh configurations for each repeat.

    python benchmarks/asha_efficiency.py [--configs 9] [--max-t 9] [--repeats 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pipelines.data.store import DatasetRef
    from pipelines.spec import Distribution, StudySpec

from common import (
    add_adding_arguments,
    adding_sizes,
    adding_study,
    argument_parser,
    private_home,
    publish,
    report_head,
    result_path,
)

RESULT = result_path("asha_efficiency")
METRIC = "val/loss"
WITHIN = 1.02  # "within 2% of the best"
TARGET = 0.35
VARIANT = "lstm"


@dataclass
class Search:
    """One Tuner's results, in the order they reached the driver."""

    kind: str
    arrivals: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    def curves(self) -> dict[int, dict[int, float]]:
        """point -> {epoch: val/loss}."""
        out: dict[int, dict[int, float]] = {}
        for row in self.arrivals:
            out.setdefault(row["point"], {})[row["epoch"]] = row["val_loss"]
        return out

    def best(self) -> float:
        return min(row["val_loss"] for row in self.arrivals)

    def epochs_to(self, threshold: float) -> int | None:
        """Epochs completed, summed over trials, when a result first reached `threshold`."""
        for count, row in enumerate(self.arrivals, start=1):
            if row["val_loss"] <= threshold:
                return count
        return None


def study_spec(args: argparse.Namespace) -> StudySpec:
    """The study both searches share: its space, budget per trial and ASHA's settings."""
    from pipelines.spec import parse_spec

    raw = adding_study(
        "asha-efficiency",
        args,
        variants={VARIANT: {"cell": args.cell}},
        search={
            "space": {
                "lr": {"loguniform": [args.lr_low, args.lr_high]},
                "hidden_size": {"choice": args.hidden},
            },
            "trials_per_variant": args.configs,
            "scheduler": {
                "name": "asha",
                "grace_period": args.grace_period,
                "reduction_factor": args.reduction_factor,
            },
        },
        fixed={"batch_size": args.batch, "max_epochs": args.max_t},
    )
    return parse_spec(raw, "asha_efficiency.py")


def draw(dist: Distribution, rng: np.random.Generator) -> Any:
    """One value from a spec's search dimension, as Tune's samplers would draw it."""
    match dist.kind:
        case "loguniform":
            low, high = dist.args
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        case "uniform":
            return float(rng.uniform(*dist.args))
        case "randint":
            return int(rng.integers(dist.args[0], dist.args[1] + 1))
        case "choice":
            return dist.args[int(rng.integers(len(dist.args)))]
    raise ValueError(f"unhandled distribution {dist.kind!r}; choose from: loguniform, uniform, ...")


def sample_points(spec: StudySpec, seed: int) -> list[dict[str, Any]]:
    """N configurations of the search space, reproducible under `seed`."""
    rng = np.random.default_rng(seed)
    space = spec.search.space
    return [
        {key: draw(space[key], rng) for key in sorted(space)}
        for _ in range(spec.search.trials_per_variant)
    ]


def run_search(
    kind: str,
    spec: StudySpec,
    dataset: DatasetRef,
    points: list[dict[str, Any]],
    experiment_id: str,
    label: str,
) -> Search:
    """One Tuner over the points: FIFO ("random") or the study's ASHA ("asha")."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study, tracking
    from pipelines.tracking import trial_runs
    from pipelines.trial.trainable import train_trial

    search = Search(kind)

    class Arrivals(tune.Callback):
        """Records every result as the driver receives it."""

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
            search.arrivals.append(
                {
                    "point": int(trial.config["point"]),
                    "epoch": int(result["training_iteration"]),
                    "val_loss": float(result[METRIC]),
                    "received": time.time(),
                    "timestamp": int(result["timestamp"]),
                }
            )

    def follow(key: str) -> Any:
        return tune.sample_from(lambda config: points[config.config["point"]][key])

    param_space = {
        **spec.trial(VARIANT).nested(),
        "point": tune.grid_search(list(range(len(points)))),
        **{key: follow(key) for key in points[0]},
    }
    client = tracking.client()
    parent_id = client.create_run(experiment_id, run_name=label, tags={"kind": "study"}).info.run_id
    runs = trial_runs.TrialRuns(client, experiment_id, parent_id, "trial")
    run_config = study.tuning.run_config(
        label,
        [runs, Arrivals()],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=study.space.keep_checkpoints(spec),
            checkpoint_score_attribute=METRIC,
            checkpoint_score_order="min",
        ),
    )
    tune_config = tune.TuneConfig(
        metric=METRIC,
        mode="min",
        num_samples=1,  # the grid over `point` makes the N trials
        scheduler=study.space.scheduler(spec) if kind == "asha" else FIFOScheduler(),
        max_concurrent_trials=spec.search.max_concurrent,
        reuse_actors=study.tuning.reuse_workers(),  # as a study runs its trials
    )
    tuner = tune.Tuner(
        study.tuning.trainable(train_trial, spec, dataset),
        param_space=param_space,
        tune_config=tune_config,
        run_config=run_config,
    )
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        results = study.tuning.fit(tuner, parent_id, "trial", None)
    search.wall_s = time.perf_counter() - began
    client.set_terminated(parent_id, "FINISHED")
    failed = [r.error for r in results if r.error is not None]
    if failed:
        raise RuntimeError(f"{kind}: {len(failed)} trials failed: {failed[0]}")
    return search


def analyse(
    spec: StudySpec, points: list[dict[str, Any]], random: Search, asha: Search
) -> dict[str, Any]:
    """The efficiency figures of one repeat."""
    n, max_t = len(points), spec.fixed.max_epochs
    best = random.best()
    threshold = WITHIN * best
    asha_count = asha.epochs_to(threshold)
    random_curves, asha_curves = random.curves(), asha.curves()
    # the same configuration and seed give the same curve in both searches
    same = [
        abs(random_curves[p][e] - loss)
        for p, curve in asha_curves.items()
        for e, loss in curve.items()
    ]
    best_point = min(random_curves, key=lambda p: min(random_curves[p].values()))
    reached = min(e for e, loss in random_curves[best_point].items() if loss <= threshold)
    # ASHA's rungs: grace period times powers of the reduction factor, and the end
    factor = spec.search.scheduler.reduction_factor
    grace = spec.search.scheduler.grace_period
    rungs = sorted({*(grace * factor**k for k in range(20) if grace * factor**k < max_t), max_t})
    # Does a configuration's val/loss after k epochs rank it as its best val/loss does? ASHA's
    # premise at a rung k, checked on the random search's full curves.
    finals = [min(random_curves[p].values()) for p in range(n)]
    epoch_correlation = {
        str(k): spearman([random_curves[p][k] for p in range(n)], finals) for k in range(1, max_t)
    }
    return {
        "configs": n,
        "max_t": max_t,
        "best_val_loss": best,
        "threshold": threshold,
        "random_epochs": len(random.arrivals),
        "random_epochs_expected": n * max_t,
        "random_epochs_to_threshold": random.epochs_to(threshold),
        "asha_epochs_to_threshold": asha_count,
        "ratio": None if asha_count is None else asha_count / (n * max_t),
        "asha_epochs": len(asha.arrivals),
        "asha_total_ratio": len(asha.arrivals) / (n * max_t),
        "asha_best_val_loss": asha.best(),
        "asha_within": asha.best() <= threshold,
        "asha_trials_reaching": {
            f"{r:g}": sum(max(c) >= r for c in asha_curves.values()) for r in rungs
        },
        "best_point": best_point,
        "best_config": points[best_point],
        "best_point_within_at_epoch": reached,
        "best_point_asha_epochs": max(asha_curves.get(best_point, {0: 0.0})),
        "max_curve_difference": max(same) if same else math.nan,
        "epoch_rank_correlation": epoch_correlation,
        "wall_s": {"random": random.wall_s, "asha": asha.wall_s},
        "points": points,
        "arrivals": {"random": random.arrivals, "asha": asha.arrivals},
    }


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (no ties expected among real-valued losses)."""
    rx, ry = np.argsort(np.argsort(xs)), np.argsort(np.argsort(ys))
    return float(np.corrcoef(rx, ry)[0, 1])


def measure(args: argparse.Namespace, home: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study, tracking
    from pipelines.data import store

    spec = study_spec(args)
    dataset = store.prepare(spec.task.name, spec.task.options.__dict__, spec.task.seed, home)
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, spec.name)
    sizes = {
        **adding_sizes(args.length, dataset.sizes, spec.fixed.batch_size),
        "model": f"seq2one {args.cell}",
        "space": {k: v.model_dump(exclude_none=True) for k, v in spec.search.space.items()},
        "configs": args.configs,
        "max_t": args.max_t,
        "grace_period": spec.search.scheduler.grace_period,
        "reduction_factor": spec.search.scheduler.reduction_factor,
    }
    repeats = []
    with study.tuning.ray_session():
        for repeat in range(args.repeats):
            seed = args.seed + repeat
            points = sample_points(spec, seed)
            searches = {}
            # alternate which search goes first; only wall times could depend on it
            order = ("random", "asha") if repeat % 2 == 0 else ("asha", "random")
            for kind in order:
                label = f"{kind}-seed{seed}"
                searches[kind] = run_search(kind, spec, dataset, points, experiment_id, label)
                print(
                    f"repeat {repeat + 1}/{args.repeats} {kind}: "
                    f"{len(searches[kind].arrivals)} epochs in {searches[kind].wall_s:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            row = analyse(spec, points, searches["random"], searches["asha"])
            repeats.append({"seed": seed, **row})
    return sizes, repeats


# --- output -----------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    s, repeats = report["sizes"], report["repeats"]
    space = ", ".join(
        f"{k} {next(iter(v))} {next(iter(v.values()))}" for k, v in s["space"].items()
    )
    lines = [
        "```",
        f"{report['machine']}; {report['versions']}",
        f"{s['task']}, n_train {s['n_train']}, n_val {s['n_val']}, batch {s['batch_size']}: "
        f"{s['steps_per_epoch']} steps/epoch; {s['model']}; space: {space}",
        f"{s['configs']} configurations x {s['max_t']} epochs; ASHA grace period "
        f"{s['grace_period']}, reduction factor {s['reduction_factor']:g}; 2 trials at a time",
        "```",
        "",
        "| seed | best val/loss B (random) | random epochs | ASHA epochs to <= 1.02 B | ratio "
        "| ASHA epochs in all | ASHA best | within 2% | best config | wall s random / ASHA |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in repeats:
        count = "never" if r["asha_epochs_to_threshold"] is None else r["asha_epochs_to_threshold"]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        config = r["best_config"]
        best_config = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items()
        )
        lines.append(
            f"| {r['seed']} | {r['best_val_loss']:.4f} | {r['random_epochs']} | {count} "
            f"| {ratio} | {r['asha_epochs']} ({r['asha_total_ratio']:.2f}) "
            f"| {r['asha_best_val_loss']:.4f} | {'yes' if r['asha_within'] else 'no'} "
            f"| {best_config}: within 2% from epoch {r['best_point_within_at_epoch']}; "
            f"ASHA ran it {r['best_point_asha_epochs']} epoch(s) | "
            f"{r['wall_s']['random']:.0f} / {r['wall_s']['asha']:.0f} |"
        )
    summary = report["summary"]
    ratio = summary["median_ratio"]
    verdict = "meets" if ratio <= TARGET else "misses"
    lines += [
        "",
        f"ratio (median over {len(repeats)} repeat(s); a repeat where ASHA never came within 2% "
        f"counts as 1.0): {ratio:.2f}; {verdict} the target <= {TARGET:.2f}",
        "ASHA trials reaching each rung (per repeat): "
        + "; ".join(
            ", ".join(f"{k}: {v}" for k, v in r["asha_trials_reaching"].items()) for r in repeats
        ),
        "Spearman correlation, over the random search's configurations, of val/loss after "
        "epoch 1, 2, ... with the best val/loss (per repeat): "
        + "; ".join(
            " ".join(f"{v:+.2f}" for v in r["epoch_rank_correlation"].values()) for r in repeats
        ),
        "same configuration, same curve in both searches: max |val/loss difference| "
        + ", ".join(f"{r['max_curve_difference']:.1e}" for r in repeats),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argument_parser(__doc__)
    add_adding_arguments(parser, length=30)
    parser.add_argument("--configs", type=int, default=9, help="configurations, N")
    parser.add_argument("--max-t", type=int, default=9, help="epochs per trial (ASHA's max_t)")
    parser.add_argument("--repeats", type=int, default=1, help="fresh configurations each")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the first repeat")
    parser.add_argument("--lr-low", type=float, default=3e-3)
    parser.add_argument("--lr-high", type=float, default=3e-2)
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--grace-period", type=int, default=1, help="ASHA's, in epochs")
    parser.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA's")
    parser.add_argument("--json", type=Path, default=RESULT, help="where to write the figures")
    args = parser.parse_args()
    if args.configs < 2 or args.max_t < 1 or args.repeats < 1:
        parser.error("--configs must be at least 2, --max-t and --repeats at least 1")

    began = time.perf_counter()
    with private_home("seqlab-asha-") as home:
        sizes, repeats = measure(args, home)
    ratios = [1.0 if r["ratio"] is None else r["ratio"] for r in repeats]
    report = {
        **report_head("asha_efficiency"),
        "sizes": sizes,
        "summary": {
            "median_ratio": statistics.median(ratios),
            "ratios": [r["ratio"] for r in repeats],
            "target": TARGET,
            "asha_within": [r["asha_within"] for r in repeats],
        },
        "repeats": repeats,
    }
    publish(report, markdown, args.json, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
