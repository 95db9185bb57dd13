"""Training-step throughput of every cell, as a ratio to torch's `nn.LSTM` in the same run.

One step is forward + backward + SGD update of a `SeqToOne` model under MSE. Each row is timed
`--repeats` times, rows interleaved so that drift in the machine's speed hits them alike, and
the table reports medians. Run: `python benchmarks/cells.py [--batch 32 --steps 64 ...]`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seqmodels.models import ModelConfig, SeqToOne, build_recurrence

# (label, cell, options, fast_path); the first row is the baseline every ratio divides by
ROWS: list[tuple[str, str, dict[str, Any], bool]] = [
    ("torch nn.LSTM (baseline)", "lstm", {}, True),
    ("torch nn.GRU", "gru", {}, True),
    ("torch nn.RNN tanh", "tanh", {}, True),
    ("torch nn.RNN relu", "relu", {}, True),
    ("cells: tanh", "tanh", {}, False),
    ("cells: relu", "relu", {}, False),
    ("cells: leaky alpha=0.5", "leaky", {}, False),
    (
        "cells: leaky learned, 3 time scales",
        "leaky",
        {"learn_alpha": True, "time_scales": 3},
        False,
    ),
    ("cells: lstm tanh (torch form)", "lstm", {}, False),
    ("cells: lstm sigmoid (book, eq 10.41)", "lstm", {"cell_input": "sigmoid"}, False),
    (
        "cells: lstm sigmoid + peepholes",
        "lstm",
        {"cell_input": "sigmoid", "peepholes": True},
        False,
    ),
    ("cells: gru reset after (torch form)", "gru", {}, False),
    ("cells: gru reset before (book)", "gru", {"reset": "before"}, False),
    ("cells: esn (readout only)", "esn", {}, False),
    ("cells: skip delay=4", "skip", {"delay": 4}, False),
]


@dataclass(frozen=True)
class Sizes:
    batch: int
    steps: int
    input: int
    hidden: int


def make_step(cell: str, options: dict[str, Any], fast_path: bool, sizes: Sizes):
    """A closure running one training step on fixed random data."""
    opts = ModelConfig(cell=cell, cell_options=options).options()
    rec = build_recurrence(cell, opts, sizes.input, sizes.hidden, fast_path=fast_path)
    model = SeqToOne(rec, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(sizes.batch, sizes.steps, sizes.input)
    y = torch.randn(sizes.batch, 1)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step, iters: int) -> float:
    """Seconds per training step, averaged over `iters` consecutive steps."""
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64, help="sequence length T")
    parser.add_argument("--input", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3, help="training steps per timing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)  # the machine is shared; one thread also keeps it fair
    torch.manual_seed(0)
    sizes = Sizes(args.batch, args.steps, args.input, args.hidden)
    steps = [make_step(cell, opts, fast, sizes) for _, cell, opts, fast in ROWS]
    for step in steps:  # warm-up: allocator, autograd graph caches
        time_steps(step, 2)
    seconds: list[list[float]] = [[] for _ in ROWS]
    for _ in range(args.repeats):
        for i, step in enumerate(steps):
            seconds[i].append(time_steps(step, args.iters))

    tokens = sizes.batch * sizes.steps
    base = [tokens / s for s in seconds[0]]
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s); B={sizes.batch} T={sizes.steps} I={sizes.input} "
        f"H={sizes.hidden}; median of {args.repeats} repeats x {args.iters} steps"
    )
    print("| variant | tokens/s (median) | ms/step | ratio to nn.LSTM (median) |")
    print("|---|---:|---:|---:|")
    for (label, *_), secs in zip(ROWS, seconds, strict=True):
        rate = [tokens / s for s in secs]
        # the ratio of each repeat to the baseline's same repeat, then the median of those
        ratio = statistics.median(r / b for r, b in zip(rate, base, strict=True))
        ms = 1e3 * statistics.median(secs)
        print(f"| {label} | {statistics.median(rate):,.0f} | {ms:.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
