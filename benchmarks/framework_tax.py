"""Framework tax: a training step under Lightning, Ray Tune and MLflow, against a bare PyTorch loop.

One model, one dataset, one process tree, six arms, timed per epoch and reported per step:

- bare: a hand-written loop over the same network (`trainable.build_net`) and the same batches
  (`NpzDataModule`, same seed): Adam, the trial's gradient clipping by norm, the epoch's mean
  training loss, then a validation pass, with torch's defaults. The baseline of the arms that
  run in this process.
- bare-worker: the same loop in a Ray worker with a trial's resources (`ray.remote`): the
  baseline of the two seqlab arms, whose trials run in such workers. The process matters: this
  benchmark's own process holds Ray's driver, MLflow and their threads, and on 2 cores a trial
  in a worker once ran faster than the same Trainer in this process.
- bare+deterministic: the same loop under `torch.use_deterministic_algorithms(True)`, which the
  trial's Trainer (`deterministic=True`) switches on for the whole process, without the NaN
  fill of new tensors, which `make_trainer` turns off.
- lightning: the trial's own Trainer (`trainable.make_trainer`) and LightningModule
  (`trainable.build_module`) in this process, without Tune or MLflow.
- seqlab: the real stack, as a study runs a trial (`deterministic: true`, the default):
  `trials.tune_trials` (its function, without Prefect) inside `tuning.ray_session()`, one trial
  of `trainable.train_trial` under a Tuner with the `trial_runs.TrialRuns` callback logging to an
  MLflow SQLite store in a temporary SEQLAB_HOME. Its epoch time is Tune's `time_this_iter_s`:
  the time between two reports in the trial, which includes the checkpoint, Tune's reporting,
  and the driver's handling of the previous result (MLflow logging included), because a function
  trainable waits for the driver after each report.
- seqlab-fast: the same with `deterministic: false` in the spec, so that torch runs with its
  defaults, as in the bare loop: the framework tax proper, without the price of reproducibility.

Every arm's first epoch is warm-up and not counted (Trainer set-up, sanity check, worker start).
The arms take turns, in a rotated order every round, and each run of another arm comes right
after a run of its baseline of its own: the machine's speed drifts (on a GPU machine the bare
loop's own runs differed by 18% within minutes), and a ratio to the bare run just before cancels
what the two runs share. Figures are medians over the timed epochs of all rounds, and the
verdict reads the median of the paired ratios. The in-process arms use as
many torch threads as a Ray trial with one CPU gets; a probe trial reads that number first.

The in-process arms' Python function calls per training step are also counted (under
cProfile, in extra runs: the calls of two more epochs, over their steps, validation's share
included): a count that the machine's noise does not move, for the loop around the model.

To attribute the tax, two parts are timed directly: `trainer.save_checkpoint` (what `Report`
does before it reports, at each epoch that checkpoints; timed after the Lightning arm's fit)
and the driver's MLflow logging per epoch (`TrialRuns.on_trial_result`, timed in the seqlab
arm). The in-process arms also record the training thread's CPU time, which other processes
on the machine disturb less than wall time.

With `--device cuda` every arm trains on the GPU: the trial asks Ray for one GPU, the bare loop
moves the network and each batch to it, and each epoch's clock waits for the GPU to finish.
With `--device cpu` (the default) the GPU, if any, is hidden from every arm.

    python benchmarks/framework_tax.py [--rounds 6] [--epochs 5] [--n-train 3000]
                                       [--device cpu|cuda] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import itertools
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.data.store import DatasetRef
    from pipelines.spec import StudySpec
    from seqmodels.config import TrialConfig

import common

RESULT = common.result_path("framework_tax")
ARMS = ("bare", "bare+deterministic", "lightning", "bare-worker", "seqlab", "seqlab-fast")
LABELS = {
    "bare": "bare PyTorch loop (baseline)",
    "bare-worker": "bare loop in a Ray worker (the seqlab arms' baseline)",
    "bare+deterministic": "bare loop + `torch.use_deterministic_algorithms(True)`",
    "lightning": "Lightning Trainer alone (`make_trainer`, in process)",
    "seqlab": "seqlab: Tune trial + `TrialRuns` to MLflow SQLite (`tune_trials`)",
    "seqlab-fast": "seqlab with `deterministic: false` (torch's defaults, as the bare loop)",
}
# Each arm's run is paired with a run of its baseline just before it: the same process kind.
BASELINE = {
    "bare+deterministic": "bare",
    "lightning": "bare",
    "bare-worker": "bare",
    "seqlab": "bare-worker",
    "seqlab-fast": "bare-worker",
}
CHECKPOINT_SAVES = 5  # direct timings of `trainer.save_checkpoint` after each Lightning run
TARGET = 1.05
VARIANT = "lstm"


@dataclass
class ArmRun:
    """One arm's run in one round: seconds per epoch (the first one is warm-up)."""

    epoch_s: list[float]
    cpu_s: list[float] | None  # the training thread's CPU seconds per epoch, in process only
    final_val_loss: float
    torch_threads: int
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def study_spec(args: argparse.Namespace, deterministic: bool = True) -> StudySpec:
    """A one-variant, one-trial study spec: the trial config every arm trains."""
    from pipelines.spec import parse_spec

    raw = common.adding_study(
        "framework-tax",
        args,
        variants={VARIANT: {"cell": args.cell, "hidden_size": args.hidden}},
        # one trial, nothing searched: a scheduler has nothing to choose between
        search={"trials_per_variant": 1, "scheduler": {"name": "fifo"}},
        fixed={
            "batch_size": args.batch,
            "max_epochs": args.epochs,
            "lr": args.lr,
            "deterministic": deterministic,
        },
    )
    raw["resources"]["gpu"] = 1 if args.device == "cuda" else 0
    return parse_spec(raw, "framework_tax.py")


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a clock read after it counts that work."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --- the bare arm -----------------------------------------------------------------------------


def bare_arm(config: TrialConfig, dataset: DatasetRef, deterministic: bool, device: str) -> ArmRun:
    """Train with a hand-written loop: what the trial computes, with nothing around it."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from pipelines.trial.trainable import build_net
    from seqmodels.data import NpzDataModule

    began = time.perf_counter()
    # Set either way: the Lightning arm's Trainer (deterministic=True) sets it process-wide,
    # and `make_trainer` turns the NaN fill of new tensors off, as it is here.
    torch.use_deterministic_algorithms(deterministic)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.manual_seed(config.seed)  # what L.seed_everything does for the weights
    net = build_net(config, dataset).to(device)
    optimizer = torch.optim.Adam(
        net.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
    )
    data = NpzDataModule(
        dataset.uri,
        batch_size=config.train.batch_size,
        seed=config.seed,
        pin_memory=device == "cuda",  # as the DataModule pins under a Trainer on a GPU
    )
    data.setup("fit")
    train, val = data.train_dataloader(), data.val_dataloader()
    steps = len(train)
    # SequenceRegression passes x_len to a network whose forward takes it; so does this loop.
    takes_len = "x_len" in inspect.signature(net.forward).parameters

    def predict(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return net(batch["x"], batch["x_len"]) if takes_len else net(batch["x"])  # (B, O)

    def to_device(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # as Lightning moves it: a pinned batch's copy does not wait for the GPU
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}

    ends, cpu = [time.perf_counter()], [time.thread_time()]
    val_loss = train_loss = math.nan
    for _ in range(config.train.max_epochs):
        net.train()
        total, count = torch.zeros((), device=device), 0
        # Lightning stops after len(train) batches without asking for one more; exhausting the
        # loader would draw once more from its seeded generator and change later epochs' order.
        for batch in map(to_device, itertools.islice(train, steps)):
            loss = F.mse_loss(predict(batch), batch["y"])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), config.train.grad_clip)
            optimizer.step()
            total += loss.detach() * len(batch["y"])  # the epoch's mean, as Lightning logs it
            count += len(batch["y"])
        net.eval()
        with torch.no_grad():
            sums = [
                (F.mse_loss(predict(b), b["y"]) * len(b["y"]), len(b["y"]))
                for b in map(to_device, val)
            ]
        val_loss = float(sum(s for s, _ in sums) / sum(n for _, n in sums))
        train_loss = float(total / count)  # read once per epoch, as a loop would print it
        ends.append(time.perf_counter())
        cpu.append(time.thread_time())
    epochs, cpu_epochs = differences(ends), differences(cpu)
    epochs[0] += ends[0] - began  # set-up counts with the (untimed) warm-up epoch
    wall = time.perf_counter() - began
    extra = {"train_loss": train_loss}
    return ArmRun(epochs, cpu_epochs, val_loss, torch.get_num_threads(), wall, extra)


def differences(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def bare_in_worker(
    spec: StudySpec, config: TrialConfig, dataset: DatasetRef, device: str
) -> ArmRun:
    """The bare loop in a Ray worker process with the resources of the study's trials."""
    import ray

    resources = {"num_cpus": spec.resources.cpu, "num_gpus": spec.resources.gpu}
    return ray.get(ray.remote(**resources)(bare_arm).remote(config, dataset, False, device))


# --- the Lightning arm --------------------------------------------------------------------------


def lightning_arm(config: TrialConfig, dataset: DatasetRef, scratch: Path) -> ArmRun:
    """Train with the trial's Trainer and module in this process; no Tune, no MLflow.

    Afterwards, time `trainer.save_checkpoint` as the trial's `Report` calls it each epoch.
    """
    import lightning as L
    import torch

    from pipelines.trial.trainable import build_module, make_trainer
    from seqmodels.data import NpzDataModule

    class EpochClock(L.Callback):
        """The time at the end of each training epoch, validation included (as Tune's
        reports come at `train_epoch_end`, after the epoch's validation)."""

        def __init__(self) -> None:
            self.ends: list[float] = []
            self.cpu: list[float] = []
            self.threads = 0

        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            synchronize()
            self.ends.append(time.perf_counter())
            self.cpu.append(time.thread_time())
            self.threads = torch.get_num_threads()

    began, cpu_began = time.perf_counter(), time.thread_time()
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = build_module(config, dataset)
    data = NpzDataModule(dataset.uri, batch_size=config.train.batch_size, seed=config.seed)
    clock = EpochClock()
    trainer = make_trainer(config.train, [clock])
    trainer.fit(module, datamodule=data)
    wall = time.perf_counter() - began
    epochs, cpu = differences([began, *clock.ends]), differences([cpu_began, *clock.cpu])
    val_loss = float(trainer.callback_metrics["val/loss"])
    saves = []
    for _ in range(CHECKPOINT_SAVES):
        with tempfile.TemporaryDirectory(dir=scratch) as directory:  # as `Report` saves it
            path = Path(directory) / "checkpoint"
            start = time.perf_counter()
            trainer.save_checkpoint(path)
            saves.append(time.perf_counter() - start)
            size = path.stat().st_size
    extra = {"checkpoint_s": saves, "checkpoint_bytes": size}
    return ArmRun(epochs, cpu, val_loss, clock.threads, wall, extra)


# --- the seqlab arm -----------------------------------------------------------------------------


@contextlib.contextmanager
def timed_mlflow_logging() -> Iterator[list[float]]:
    """Time `TrialRuns.on_trial_result` (the driver's MLflow `log_batch` for each epoch).

    `trials.tune_trials` builds its callback from `trial_runs.TrialRuns` when called, so a subclass
    put there for the duration times the real calls; it changes nothing else.
    """
    from pipelines.tracking import trial_runs

    original = trial_runs.TrialRuns
    seconds: list[float] = []

    class TimedTrialRuns(original):  # type: ignore[misc, valid-type]
        def on_trial_result(self, *args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            super().on_trial_result(*args, **kwargs)
            seconds.append(time.perf_counter() - start)

    trial_runs.TrialRuns = TimedTrialRuns
    try:
        yield seconds
    finally:
        trial_runs.TrialRuns = original


def seqlab_arm(spec: StudySpec, dataset: DatasetRef, experiment_id: str, index: int) -> ArmRun:
    """One trial through `trials.tune_trials`, under a fresh parent run (a fresh Tuner)."""
    with timed_mlflow_logging() as logging_s:
        run = common.one_trial(spec, VARIANT, dataset, experiment_id, index)
    epochs = [float(row["time_this_iter_s"]) for row in run.results]
    extra = {
        "mlflow_log_s": logging_s,
        "time_total_s": run.outcome.train_seconds,
        "outside_epochs_s": run.wall_s - sum(epochs),
    }
    return ArmRun(epochs, None, float(run.results[-1]["val/loss"]), -1, run.wall_s, extra)


def probe_trial(spec: StudySpec, dataset: DatasetRef) -> dict[str, Any]:
    """What a trial's process gets: torch threads, OMP_NUM_THREADS, Ray's CPUs, CPU affinity."""
    from ray import tune

    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study
    from pipelines.ops import settings

    def probe(config: dict[str, Any], dataset: DatasetRef) -> None:
        import os

        import ray
        import torch
        from ray import tune

        tune.report(
            {
                "torch_threads": torch.get_num_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "(unset)"),
                "ray_cpus": ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0),
                "affinity": len(os.sched_getaffinity(0)),
                "gpus": torch.cuda.device_count(),
            }
        )

    tuner = tune.Tuner(
        study.tuning.trainable(probe, spec, dataset),  # the study's resources per trial
        run_config=tune.RunConfig(
            name="probe", storage_path=str(settings.seqlab_home() / "ray_results"), verbose=0
        ),
    )
    (result,) = tuner.fit()
    keys = ("torch_threads", "omp_num_threads", "ray_cpus", "affinity", "gpus")
    return {key: result.metrics[key] for key in keys}


# --- the measurement --------------------------------------------------------------------------


def measure(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """Prepare the data, start Ray, probe a trial, then run the arms round by round."""
    import torch

    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study, tracking
    from pipelines.data import store
    from pipelines.trial.trainable import build_net

    spec, fast = study_spec(args), study_spec(args, deterministic=False)
    options = spec.task.options.__dict__
    dataset = store.prepare(spec.task.name, options, spec.task.seed, home)
    config = spec.trial(VARIANT)
    net = build_net(config, dataset)
    sizes = {
        **common.adding_sizes(args.length, dataset.sizes, config.train.batch_size),
        "model": f"seq2one {args.cell} H={args.hidden} (torch fast path)",
        "device": gpu_name() if args.device == "cuda" else "cpu",
        "parameters": sum(p.numel() for p in net.parameters()),
        "epochs_per_run": args.epochs,
        "lr": config.train.lr,
        "grad_clip": config.train.grad_clip,
    }
    steps = sizes["steps_per_epoch"]
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, spec.name)
    runs: dict[str, list[ArmRun]] = {arm: [] for arm in ARMS}
    arms: dict[str, Callable[[int], ArmRun]] = {
        "bare": lambda i: bare_arm(config, dataset, False, args.device),
        "bare-worker": lambda i: bare_in_worker(spec, config, dataset, args.device),
        "bare+deterministic": lambda i: bare_arm(config, dataset, True, args.device),
        "lightning": lambda i: lightning_arm(config, dataset, home),
        "seqlab": lambda i: seqlab_arm(spec, dataset, experiment_id, i),
        "seqlab-fast": lambda i: seqlab_arm(fast, dataset, experiment_id, i),
    }
    # partners[arm][k]: the index in runs[BASELINE[arm]] of the baseline's run just before
    # runs[arm][k]
    partners: dict[str, list[int]] = {arm: [] for arm in BASELINE}
    others = list(BASELINE)
    with study.tuning.ray_session():
        probe = probe_trial(spec, dataset)
        threads = args.threads or int(probe["torch_threads"])
        torch.set_num_threads(threads)  # the in-process arms get what a trial gets
        for round_ in range(args.rounds):
            for arm in others[round_ % len(others) :] + others[: round_ % len(others)]:
                for name in (BASELINE[arm], arm):
                    runs[name].append(arms[name](round_))
                    print(
                        f"round {round_ + 1}/{args.rounds} {name}: "
                        f"{median_ms(runs[name][-1:], steps):.2f} ms/step",
                        file=sys.stderr,
                        flush=True,
                    )
                partners[arm].append(len(runs[BASELINE[arm]]) - 1)
        calls = python_calls_per_step(
            {
                "bare+deterministic": lambda c: bare_arm(c, dataset, True, args.device),
                "lightning": lambda c: lightning_arm(c, dataset, home),
            },
            config,
            steps,
        )
    return {
        "python_calls_per_step": calls,
        "sizes": sizes,
        "probe": probe,
        "threads": threads,
        "runs": runs,
        "partners": partners,
    }


def python_calls_per_step(
    arms: dict[str, Callable[[TrialConfig], ArmRun]], config: TrialConfig, steps: int
) -> dict[str, float]:
    """The Python function calls per training step of each arm, from two runs under cProfile
    that differ by two epochs (so set-up and warm-up cancel)."""
    import cProfile
    import pstats

    counts = {}
    for arm, run in arms.items():
        totals = []
        for epochs in (2, 4):
            profile = cProfile.Profile()
            profile.runcall(run, replace(config, train=replace(config.train, max_epochs=epochs)))
            totals.append(pstats.Stats(profile).total_calls)
        counts[arm] = (totals[1] - totals[0]) / (2 * steps)
    return counts


def gpu_name() -> str:
    import torch

    return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"


def median_ms(runs: list[ArmRun], steps: int, cpu: bool = False) -> float:
    """Median ms per step over the timed epochs (all but the first) of `runs`."""
    epochs = [s for run in runs for s in ((run.cpu_s or []) if cpu else run.epoch_s)[1:]]
    return 1000 * statistics.median(epochs) / steps if epochs else math.nan


def summarise(measured: dict[str, Any]) -> dict[str, Any]:
    """Per-arm medians and ratios, and the tax taken apart."""
    runs: dict[str, list[ArmRun]] = measured["runs"]
    steps = measured["sizes"]["steps_per_epoch"]
    rows = {}
    for arm, arm_runs in runs.items():
        rows[arm] = {
            "ms_per_step": median_ms(arm_runs, steps),
            "cpu_ms_per_step": median_ms(arm_runs, steps, cpu=True),
            "epoch_s": statistics.median(s for run in arm_runs for s in run.epoch_s[1:]),
            "run_ms_per_step": [median_ms([run], steps) for run in arm_runs],
            "first_epoch_s": statistics.median(run.epoch_s[0] for run in arm_runs),
            "final_val_loss": [run.final_val_loss for run in arm_runs],
        }
    for arm, row in rows.items():
        row["baseline"] = BASELINE.get(arm, arm)
        base = rows[row["baseline"]]
        row["ratio"] = row["ms_per_step"] / base["ms_per_step"]
        row["cpu_ratio"] = row["cpu_ms_per_step"] / base["cpu_ms_per_step"]
        # each run against its baseline's run just before it
        row["paired_ratios"] = [
            row["run_ms_per_step"][k] / base["run_ms_per_step"][i]
            for k, i in enumerate(measured["partners"].get(arm, []))
        ] or [1.0]
        row["median_paired_ratio"] = statistics.median(row["paired_ratios"])
    lightning, seqlab = runs["lightning"], runs["seqlab"]
    checkpoint_ms = 1000 * statistics.median(s for r in lightning for s in r.extra["checkpoint_s"])
    # one call per epoch; each is paid inside the next epoch's `time_this_iter_s`
    mlflow_ms = 1000 * statistics.median(s for r in seqlab for s in r.extra["mlflow_log_s"])
    ms = {arm: rows[arm]["ms_per_step"] for arm in ARMS}
    # what Tune and MLflow add beyond Lightning: each arm net of its own process's bare loop
    beyond = (ms["seqlab"] - ms["bare-worker"]) - (ms["lightning"] - ms["bare"])
    rest = beyond - (checkpoint_ms + mlflow_ms) / steps
    cpu = {arm: rows[arm]["cpu_ms_per_step"] for arm in ARMS}
    breakdown = {
        "worker_minus_bare_ms_per_step": ms["bare-worker"] - ms["bare"],
        "deterministic_ms_per_step": ms["bare+deterministic"] - ms["bare"],
        "deterministic_cpu_ms_per_step": cpu["bare+deterministic"] - cpu["bare"],
        "lightning_ms_per_step": ms["lightning"] - ms["bare+deterministic"],
        "lightning_cpu_ms_per_step": cpu["lightning"] - cpu["bare+deterministic"],
        "checkpoint_ms_per_epoch": checkpoint_ms,
        "checkpoint_bytes": lightning[0].extra["checkpoint_bytes"],
        "mlflow_log_ms_per_epoch": mlflow_ms,
        "tune_rest_ms_per_step": rest,
        "seqlab_minus_lightning_ms_per_epoch": beyond * steps,
        "seqlab_outside_epochs_s": [run.extra["outside_epochs_s"] for run in seqlab],
        "seqlab_wall_s": [run.wall_s for run in seqlab],
        "python_calls_per_step": measured["python_calls_per_step"],
    }
    return {
        "rows": rows,
        "ratio": rows["seqlab"]["ratio"],
        "median_paired_ratio": rows["seqlab"]["median_paired_ratio"],
        # the same stack with torch's defaults, as the bare loop has them
        "fast_ratio": rows["seqlab-fast"]["ratio"],
        "fast_median_paired_ratio": rows["seqlab-fast"]["median_paired_ratio"],
        "target": TARGET,
        "breakdown": breakdown,
    }


# --- output -----------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    s, p, summary = report["sizes"], report["probe"], report["summary"]
    rows, b, steps = summary["rows"], summary["breakdown"], s["steps_per_epoch"]
    calls = b["python_calls_per_step"]
    load = ", ".join(f"{v:.1f}" for v in report["load_average"])
    lines = [
        "```",
        f"{report['machine']}; {report['versions']}",
        f"{s['task']}, n_train {s['n_train']}, n_val {s['n_val']}, batch {s['batch_size']}: "
        f"{steps} steps/epoch; {s['model']}, {s['parameters']:,} parameters; "
        f"device: {s.get('device', 'cpu')}",
        f"{report['rounds']} rounds x {s['epochs_per_run']} epochs per arm, order rotating, each "
        "arm's run right after a run of its baseline; first epoch of each run not counted; "
        "medians over the other epochs",
        f"a Ray trial (1 CPU) gets: torch threads {p['torch_threads']}, OMP_NUM_THREADS "
        f"{p['omp_num_threads']}, Ray CPUs {p['ray_cpus']:g}, CPU affinity {p['affinity']} cores, "
        f"GPUs {p.get('gpus', 0)}; "
        f"in-process arms ran with {report['threads']} torch thread(s)",
        f"load average (1, 5, 15 min) at the end: {load}",
        "```",
        "",
        "| arm | ms/step (median) | ratio to its baseline | median of paired ratios "
        "| paired ratios "
        "| CPU ms/step | first epoch s |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for arm in ARMS:
        row = rows[arm]
        paired = ", ".join(f"{v:.3f}" for v in row["paired_ratios"]) if arm in BASELINE else "-"
        cpu = "-" if math.isnan(row["cpu_ms_per_step"]) else f"{row['cpu_ms_per_step']:.2f}"
        lines.append(
            f"| {LABELS[arm]} | {row['ms_per_step']:.2f} | {row['ratio']:.3f} "
            f"| {row['median_paired_ratio']:.3f} | {paired} | {cpu} "
            f"| {row['first_epoch_s']:.2f} |"
        )
    bare_runs, worker_runs = (
        ", ".join(f"{v:.2f}" for v in rows[arm]["run_ms_per_step"])
        for arm in ("bare", "bare-worker")
    )
    verdict = "meets" if summary["median_paired_ratio"] <= TARGET else "misses"
    fast_verdict = "meets" if summary["fast_median_paired_ratio"] <= TARGET else "misses"
    vals = ", ".join(f"{arm} {rows[arm]['final_val_loss'][0]:.6f}" for arm in ARMS)
    lines += [
        "",
        "seqlab / the bare loop in a Ray worker, median of paired ratios: "
        f"{summary['median_paired_ratio']:.3f} "
        f"({verdict} the target <= {TARGET:.2f}); with `deterministic: false`: "
        f"{summary['fast_median_paired_ratio']:.3f} ({fast_verdict} it)",
        f"the bare loop's runs, in order, ms/step: {bare_runs}; in a Ray worker: {worker_runs}",
        "per step, wall (CPU time of the training thread): the bare loop in a Ray worker "
        f"{b['worker_minus_bare_ms_per_step']:+.2f} ms against this process, deterministic flag "
        f"{b['deterministic_ms_per_step']:+.2f} ms ({b['deterministic_cpu_ms_per_step']:+.2f}), "
        f"Lightning beyond it {b['lightning_ms_per_step']:+.2f} ms "
        f"({b['lightning_cpu_ms_per_step']:+.2f})",
        "seqlab - Lightning, each net of its own process's bare loop: "
        f"{b['seqlab_minus_lightning_ms_per_epoch']:.0f} ms/epoch; timed "
        f"directly: save_checkpoint {b['checkpoint_ms_per_epoch']:.1f} ms/epoch "
        f"({b['checkpoint_bytes'] / 1024:.0f} KiB), the driver's MLflow log_batch "
        f"{b['mlflow_log_ms_per_epoch']:.1f} ms/epoch; the rest (Tune's reporting, persisting "
        f"and driver loop, the Ray worker) {b['tune_rest_ms_per_step'] * steps:.0f} ms/epoch"
        + (" (below the noise between arms)" if b["tune_rest_ms_per_step"] < 0 else ""),
        "Python calls per training step (validation's share included): bare loop "
        f"{calls['bare+deterministic']:.0f}, Lightning {calls['lightning']:.0f} "
        f"({calls['lightning'] - calls['bare+deterministic']:+.0f})",
        "seqlab trial outside its epochs (worker start, Tuner set-up and end), s: "
        + ", ".join(f"{v:.1f}" for v in b["seqlab_outside_epochs_s"]),
        f"final val/loss, round 1 (same model, same batches): {vals}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = common.argument_parser(__doc__)
    common.add_round_arguments(parser, epochs=5, length=50, hidden=64)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads in process; 0: what a trial gets"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where every arm trains"
    )
    parser.add_argument("--json", type=Path, default=RESULT, help="where to write the figures")
    args = parser.parse_args()
    common.check_rounds(parser, args)
    if args.device == "cuda":
        # What Lightning sets for `deterministic=True` on a GPU (cuBLAS's reproducible
        # workspace); set once for the whole process, so the bare arms run under it too.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no GPU")

    began = time.perf_counter()
    with common.private_home("seqlab-tax-") as home:
        measured = measure(args, home)
    report = {
        **common.report_head("framework_tax"),
        "rounds": args.rounds,
        "sizes": measured["sizes"],
        "probe": measured["probe"],
        "threads": measured["threads"],
        "summary": summarise(measured),
        "runs": {arm: [asdict(run) for run in runs] for arm, runs in measured["runs"].items()},
        "partners": measured["partners"],
    }
    common.publish(report, markdown, args.json, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
