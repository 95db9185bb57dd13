"""Training-step throughput of every cell, as a ratio to torch's `nn.LSTM` in the same run.

One step is forward + backward + SGD update of a `SeqToOne` model under MSE. Each row is timed
`--repeats` times, rows interleaved (in a rotated order each repeat) so that drift in the
machine's speed hits them alike, and the table reports medians.
Run: `python benchmarks/cells.py [--batch 32 --steps 64 ...]`.
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

from seqmodels.models import ModelConfig, SeqToOne, build_recurrence, load_torch_weights

BASELINE = "plain torch nn.LSTM + Linear (baseline)"
# (label, cell, options, fast_path); every ratio divides by the BASELINE row, timed alongside
ROWS: list[tuple[str, str, dict[str, Any], bool]] = [
    ("fast path: lstm", "lstm", {}, True),
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


class PlainLSTM(nn.Module):
    """The reference written with torch alone: `nn.LSTM`, then a linear head on the last step."""

    def __init__(self, sizes: Sizes) -> None:
        super().__init__()
        self.rnn = nn.LSTM(sizes.input, sizes.hidden, batch_first=True)
        self.head = nn.Linear(sizes.hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1])  # (B, 1)


def make_model(cell: str, options: dict[str, Any], fast_path: bool, sizes: Sizes) -> nn.Module:
    opts = ModelConfig(cell=cell, cell_options=options).options()
    rec = build_recurrence(cell, opts, sizes.input, sizes.hidden, fast_path=fast_path)
    return SeqToOne(rec, 1)


def make_step(model: nn.Module, sizes: Sizes, device: torch.device):
    """A closure running one training step on fixed random data."""
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(sizes.batch, sizes.steps, sizes.input, device=device)
    y = torch.randn(sizes.batch, 1, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step, iters: int, device: torch.device) -> float:
    """Seconds per training step, averaged over `iters` consecutive steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()  # a CPU-GPU sync point: time the kernels, not their launches
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def parity(sizes: Sizes, device: torch.device) -> dict[str, float]:
    """Max |fast path - cell by cell| on the device after `load_torch_weights`, per torch cell."""
    out = {}
    x = torch.randn(sizes.batch, sizes.steps, sizes.input, device=device)
    for cell in ("tanh", "lstm", "gru"):
        opts = ModelConfig(cell=cell).options()
        fast = build_recurrence(cell, opts, sizes.input, sizes.hidden).to(device)
        slow = build_recurrence(cell, opts, sizes.input, sizes.hidden, fast_path=False).to(device)
        load_torch_weights(slow, fast)
        with torch.no_grad():
            out[cell] = float((fast(x) - slow(x)).abs().max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64, help="sequence length T")
    parser.add_argument("--input", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3, help="training steps per timing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)  # the machine is shared; one thread also keeps it fair
    torch.manual_seed(0)
    device = torch.device(args.device)
    sizes = Sizes(args.batch, args.steps, args.input, args.hidden)
    labels = [BASELINE] + [label for label, *_ in ROWS]
    models = [PlainLSTM(sizes)] + [make_model(c, o, f, sizes) for _, c, o, f in ROWS]
    steps = [make_step(model, sizes, device) for model in models]
    for step in steps:  # warm-up: allocator, cuDNN plans, autograd graph caches
        time_steps(step, 2, device)
    seconds: list[list[float]] = [[] for _ in steps]
    for repeat in range(args.repeats):
        # Rotate the order every repeat: no row is always timed first, right after the
        # previous repeat's slowest rows have dirtied the caches.
        for k in range(len(steps)):
            i = (k + repeat) % len(steps)
            seconds[i].append(time_steps(steps[i], args.iters, device))

    tokens = sizes.batch * sizes.steps
    base = [tokens / s for s in seconds[0]]
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {args.threads} thread(s)"
    )
    print(
        f"torch {torch.__version__}, {where}; B={sizes.batch} T={sizes.steps} I={sizes.input} "
        f"H={sizes.hidden}; median of {args.repeats} repeats x {args.iters} steps"
    )
    diffs = ", ".join(f"{cell} {diff:.1e}" for cell, diff in parity(sizes, device).items())
    print(f"parity, max |fast path - cell by cell| on {device.type}: {diffs}")
    print("| variant | tokens/s (median) | ms/step | ratio to nn.LSTM (median) |")
    print("|---|---:|---:|---:|")
    for label, secs in zip(labels, seconds, strict=True):
        rate = [tokens / s for s in secs]
        # the ratio of each repeat to the baseline's same repeat, then the median of those
        ratio = statistics.median(r / b for r, b in zip(rate, base, strict=True))
        ms = 1e3 * statistics.median(secs)
        print(f"| {label} | {statistics.median(rate):,.0f} | {ms:.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
