"""Data preparation: time to prepare each task, the cached re-run, and whether loading keeps up.

Three measurements, all through `pipelines.data.store.prepare`, the function the Prefect task
`prepare_data` calls (Prefect's own start-up is not counted; `quickstart_wall.py` measures it):

1. preparation time of every built-in task at its default size, median of `--repeats` runs, each
   in a fresh store (the generator, the npz files and the data card);
2. a cached re-run: `prepare` again on a store that holds the dataset (target <= 2 s);
3. the ratio of the DataModule's throughput (samples/s drawn from the train loader) to a training
   step's consumption (samples/s of forward + backward + Adam on a small model, batches already
   in memory), both timed in this process: seq2one LSTM on `adding`, attention on `g2p`. A ratio
   >= 10 means loading costs under a tenth of the step.

Run: `python benchmarks/data_prep.py [--repeats 3 --batch 64 --threads 1]`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

from pipelines.data.store import prepare
from seqmodels.data import NpzDataModule
from seqmodels.lit import Seq2Seq, SequenceRegression
from seqmodels.models import ModelConfig, build_model
from seqmodels.tasks import TASKS

USER_FILE_TASKS = ("text", "series_csv", "pairs_jsonl")  # no default data: they need a path
# (task, label, model config, LightningModule) for the throughput ratio
PAIRS = [
    ("adding", "seq2one LSTM H=64", ModelConfig("seq2one", "lstm", 64), SequenceRegression),
    ("g2p", "attention LSTM H=64", ModelConfig("attention", "lstm", 64), Seq2Seq),
]


def timed_prepare(name: str, root: str) -> float:
    start = time.perf_counter()
    prepare(name, {}, 0, Path(root))
    return time.perf_counter() - start


def preparation(repeats: int) -> list[tuple[str, list[float], float]]:
    """(task, seconds of each fresh-store run, seconds of the cached re-run) per task."""
    rows = []
    for name in TASKS.names():
        if name in USER_FILE_TASKS:
            continue
        runs, cached = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as root:
                runs.append(timed_prepare(name, root))
                cached.append(timed_prepare(name, root))  # the store now holds it
        rows.append((name, runs, statistics.median(cached)))
    return rows


def loader_rate(root: str, batch: int, max_batches: int) -> float:
    """Samples per second drawn from the train loader (collate and bucketing included)."""
    dm = NpzDataModule(root, batch_size=batch, seed=0)
    dm.setup("fit")
    start, samples = time.perf_counter(), 0
    for b in islice(dm.train_dataloader(), max_batches):
        samples += b["x"].shape[0]
    return samples / (time.perf_counter() - start)


def step_rate(root: str, config: ModelConfig, module_type: type, batch: int, steps: int) -> float:
    """Samples per second consumed by training steps on batches already in memory."""
    from pipelines.data.store import read_ref

    ref = read_ref(Path(root))
    module = module_type(build_model(config, ref.input_size, ref.output_size))
    optimizer = module.configure_optimizers()
    dm = NpzDataModule(root, batch_size=batch, seed=0)
    dm.setup("fit")
    batches = list(islice(dm.train_dataloader(), steps + 2))

    def step(b: dict) -> None:
        loss = module.model_step(b)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for b in batches[:2]:  # warm-up
        step(b)
    start = time.perf_counter()
    for b in batches[2:]:
        step(b)
    return sum(b["x"].shape[0] for b in batches[2:]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="training steps timed per model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a trial has 1 CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.machine()}, {args.threads} thread(s); "
        f"median of {args.repeats} runs, each in a fresh store"
    )
    print()
    print("| task | prepare s (median) | runs s | cached re-run s |")
    print("|---|---:|---|---:|")
    for name, runs, cached in preparation(args.repeats):
        listed = ", ".join(f"{r:.2f}" for r in runs)
        print(f"| {name} | {statistics.median(runs):.2f} | {listed} | {cached:.3f} |")
    print()
    print("| task | model | loader samples/s | step samples/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for name, label, config, module_type in PAIRS:
        with tempfile.TemporaryDirectory() as root:
            ref = prepare(name, {}, 0, Path(root))
            loads = [loader_rate(ref.uri, args.batch, 300) for _ in range(args.repeats)]
            steps = [
                step_rate(ref.uri, config, module_type, args.batch, args.steps)
                for _ in range(args.repeats)
            ]
        load, consume = statistics.median(loads), statistics.median(steps)
        print(f"| {name} | {label} | {load:,.0f} | {consume:,.0f} | {load / consume:.1f} |")


if __name__ == "__main__":
    main()
