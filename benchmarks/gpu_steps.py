"""Each task family's training step on a GPU: where it waits for the device, and how long it takes.

A training step that reads a value back from the GPU (`.item()`, `int(tensor)`, `.cpu()`, a copy
from unpinned memory) makes the CPU wait until the GPU has finished everything queued so far, so
the CPU can no longer queue the next step's kernels while the GPU runs this one. This script
trains one network per family with the trial's own builders (`build_module`, `NpzDataModule`,
`make_trainer`) and counts those waits with `torch.cuda.set_sync_debug_mode("warn")`, which
warns at every synchronizing CUDA call; each warning's Python stack names the line.

Per case: epoch 0 is warm-up; in epoch 1 every step but the last is watched (batch transfer
included; the epoch's last step logs the epoch's means and the validation follows, both of
which read values back on purpose); the remaining epochs are timed, training batches only,
and reported as the median ms per step.

With `--device cpu` nothing is watched; the timings still run (a check of the script itself).

    python benchmarks/gpu_steps.py [--device cuda|cpu] [--epochs 4] [--only NAME ...]
                                   [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import machine, result_path, versions, write_atomically

ROOT = Path(__file__).resolve().parents[1]
RESULT = result_path("gpu_steps")
SYNC_WARNING = "synchronizing CUDA operation"


@dataclass(frozen=True)
class Case:
    """One family's network on one task, as a study's spec would name them."""

    name: str
    task: dict[str, Any]  # the spec's task section: name and options
    variant: dict[str, Any]
    batch_size: int = 128


CASES = (
    Case(
        "regression: adding, seq2one LSTM",
        {
            "name": "adding",
            "options": {"length": 200, "n_train": 5120, "n_val": 512, "n_test": 128},
        },
        {"cell": "lstm", "hidden_size": 512},
    ),
    Case(
        "language model: charlm, GRU",
        {"name": "charlm", "options": {"window": 128}},
        {
            "architecture": "recurrent",
            "cell": "gru",
            "hidden_size": 512,
            "arch_options": {"embedding_size": 64},
        },
    ),
    Case(
        "classification: seq_digits rows, GRU",
        {"name": "seq_digits", "options": {"view": "rows"}},
        {"cell": "gru", "hidden_size": 256},
    ),
    Case(
        "classification, padded: listops, bidirectional seq2one LSTM",
        {
            "name": "listops",
            "options": {
                "max_length": 60,
                "max_depth": 4,
                "n_train": 5120,
                "n_val": 512,
                "n_test": 128,
            },
        },
        {
            "cell": "lstm",
            "hidden_size": 256,
            "bidirectional": True,
            "arch_options": {"embedding_size": 32},
        },
    ),
    Case(
        "seq2seq: addition, encoder-decoder LSTM",
        {
            "name": "addition",
            "options": {"max_digits": 5, "n_train": 5120, "n_val": 512, "n_test": 128},
        },
        {"architecture": "encoder_decoder", "cell": "lstm", "hidden_size": 256},
    ),
    Case(
        "seq2seq, padded: reverse, attention, bidirectional GRU",
        {
            "name": "reverse",
            "options": {
                "min_length": 3,
                "max_length": 20,
                "n_train": 5120,
                "n_val": 512,
                "n_test": 128,
            },
        },
        {"architecture": "attention", "cell": "gru", "hidden_size": 256, "bidirectional": True},
    ),
    Case(
        "recursive: listops, tree of tanh units",
        {
            "name": "listops",
            "options": {
                "max_length": 30,
                "max_depth": 3,
                "n_train": 1280,
                "n_val": 128,
                "n_test": 128,
            },
        },
        {
            "architecture": "recursive",
            "cell": "tanh",
            "hidden_size": 128,
            "arch_options": {"embedding_size": 32},
        },
        batch_size=64,
    ),
)


def where(frame: traceback.FrameSummary) -> str:
    """A frame as `path:line (function)`, the path relative to the project or site-packages."""
    path = frame.filename
    for marker in (str(ROOT) + os.sep, "site-packages" + os.sep):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{frame.lineno} ({frame.name})"


def ours(stack: list[traceback.FrameSummary]) -> str | None:
    """The innermost frame in seqlab's own packages: the line to change."""
    for frame in reversed(stack):
        path = Path(frame.filename)
        if path.is_relative_to(ROOT) and path.parts[len(ROOT.parts)] in ("seqmodels", "pipelines"):
            return where(frame)
    return None


def run_case(case: Case, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    import lightning as L
    import torch

    from pipelines.data.store import prepare
    from pipelines.spec import parse_spec
    from pipelines.trial.trainable import build_module, make_trainer
    from seqmodels.data import NpzDataModule

    cuda = args.device == "cuda"
    spec = parse_spec(
        {
            "name": "gpu-steps",
            "task": case.task,
            "variants": {"v": case.variant},
            "fixed": {"max_epochs": args.epochs, "batch_size": case.batch_size, "lr": 0.001},
        },
        "gpu_steps.py",
    )
    dataset = prepare(spec.task.name, spec.task.options.__dict__, 0, scratch)
    config = spec.trial("v")

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    class Watch(L.Callback):
        """Watches epoch 1's steps for synchronizing calls; times the later epochs' steps."""

        def __init__(self) -> None:
            self.syncs: list[list[traceback.FrameSummary]] = []
            self.watched_steps = 0
            self.step_ms: list[float] = []
            self.steps = 0
            self.began = 0.0
            self._catcher: Any = None

        def _record(self, message: Any, *rest: Any, **more: Any) -> None:
            if SYNC_WARNING in str(message):
                self.syncs.append(traceback.extract_stack()[:-2])

        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.steps = trainer.num_training_batches
            if trainer.current_epoch == 1 and cuda:
                self._catcher = warnings.catch_warnings()
                self._catcher.__enter__()
                warnings.simplefilter("always")
                warnings.showwarning = self._record
                torch.cuda.set_sync_debug_mode("warn")
            synchronize()
            self.began = time.perf_counter()

        def on_train_batch_start(
            self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int
        ) -> None:
            if self._catcher is not None and batch_idx == self.steps - 1:
                torch.cuda.set_sync_debug_mode("default")
                self._catcher.__exit__(None, None, None)
                self._catcher = None
                self.watched_steps = batch_idx  # the steps 0 .. batch_idx - 1

        def on_train_batch_end(
            self,
            trainer: L.Trainer,
            module: L.LightningModule,
            outputs: Any,
            batch: Any,
            batch_idx: int,
        ) -> None:
            if batch_idx == self.steps - 1 and trainer.current_epoch >= 2:
                synchronize()
                self.step_ms.append((time.perf_counter() - self.began) * 1e3 / self.steps)

    L.seed_everything(0, workers=True, verbose=False)
    module = build_module(config, dataset)
    data = NpzDataModule(dataset.uri, batch_size=config.train.batch_size, seed=0)
    watch = Watch()
    trainer = make_trainer(config.train, [watch])
    trainer.fit(module, datamodule=data)
    places = collections.Counter((ours(s), where(s[-1])) for s in watch.syncs)
    steps = watch.watched_steps
    return {
        "case": case.name,
        "task": case.task["name"],
        "variant": case.variant,
        "batch_size": case.batch_size,
        "steps_per_epoch": watch.steps,
        "parameters": sum(p.numel() for p in module.parameters()),
        "pinned_batches": data.pinned,
        "ms_per_step": statistics.median(watch.step_ms),
        "epoch_ms_per_step": watch.step_ms,
        "watched_steps": steps if cuda else None,
        "syncs_per_step": len(watch.syncs) / steps if cuda and steps else None,
        "sync_sites": [
            {"ours": mine, "call": call, "per_step": n / steps}
            for (mine, call), n in places.most_common()
        ]
        if cuda and steps
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--epochs", type=int, default=4, help="at least 3: warm-up, watch, time")
    parser.add_argument("--only", nargs="*", help="cases whose name contains one of these")
    parser.add_argument("--json", type=Path, default=RESULT)
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs: at least 3 (warm-up, watched, timed)")
    sys.path.insert(0, str(ROOT))
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU")
    from pipelines.ops import settings

    settings.quiet_known_warnings()
    cases = [c for c in CASES if not args.only or any(k in c.name for k in args.only)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-steps-") as tmp:
        for i, case in enumerate(cases):
            row = run_case(case, args, Path(tmp) / str(i))
            rows.append(row)
            syncs = row["syncs_per_step"]
            print(
                f"{case.name}: {row['ms_per_step']:.2f} ms/step, "
                f"{'-' if syncs is None else f'{syncs:.2f}'} syncs/step",
                flush=True,
            )
            for site in row["sync_sites"] or []:
                print(f"    {site['per_step']:.2f}/step  {site['ours']}  <- {site['call']}")
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    write_atomically(
        args.json,
        {
            "benchmark": "gpu_steps",
            "machine": machine(),
            "versions": versions(("torch", "lightning")),
            "device": device,
            "epochs": args.epochs,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
