"""Every task family trains through the trainable's own builders and reports its task's metric.

These run without Ray: the same `build_module`, DataModule and Trainer a trial uses, one epoch
on a tiny prepared dataset, then the test split. The headline metric a study compares is
`test/<Task.metric>`, so each family's LightningModule must log it under that name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from pipelines.data.store import prepare
from pipelines.spec import StudySpec, parse_spec
from pipelines.trial.trainable import build_module, evaluate, make_trainer
from seqmodels.data import NpzDataModule
from seqmodels.lit import SequenceRegression
from seqmodels.models import ModelConfig, build_model

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("adding", {"length": 8, "n_train": 64, "n_val": 16, "n_test": 16}, {"cell": "tanh"}),
    ("seq_digits", {"view": "rows"}, {"cell": "gru"}),
    (
        "copy",
        {"delay": 5, "n_train": 64, "n_val": 16, "n_test": 16},
        {"architecture": "recurrent", "cell": "lstm", "arch_options": {"embedding_size": 8}},
    ),
    (
        "charlm",
        {"window": 32, "max_chars": 20000},
        {"architecture": "recurrent", "cell": "gru", "arch_options": {"embedding_size": 8}},
    ),
    (
        "reverse",
        {"min_length": 3, "max_length": 6, "n_train": 64, "n_val": 16, "n_test": 16},
        {"architecture": "attention", "cell": "gru"},
    ),
    (
        "listops",
        {"max_length": 20, "max_depth": 3, "n_train": 64, "n_val": 16, "n_test": 16},
        {"architecture": "seq2one", "cell": "lstm", "arch_options": {"embedding_size": 8}},
    ),
    (
        "listops",
        {"max_length": 20, "max_depth": 3, "n_train": 64, "n_val": 16, "n_test": 16},
        {"architecture": "recursive", "cell": "tanh", "arch_options": {"embedding_size": 8}},
    ),
    (
        "addition",
        {"max_digits": 2, "n_train": 64, "n_val": 16, "n_test": 16},
        {"architecture": "encoder_decoder", "cell": "lstm"},
    ),
]


def _spec(task: str, options: dict[str, Any], variant: dict[str, Any]) -> StudySpec:
    return parse_spec(
        {
            "name": f"family-{task}",
            "task": {"name": task, "options": options},
            "variants": {"v": {**variant, "hidden_size": 8}},
            "fixed": {"max_epochs": 1, "batch_size": 16, "lr": 0.01},
        }
    )


@pytest.mark.parametrize(
    "task,options,variant",
    CASES,
    ids=[f"{c[0]}-{c[2].get('architecture', 'seq2one')}" for c in CASES],
)
def test_family_trains_and_reports_the_task_metric(
    tmp_path: Path, task: str, options: dict[str, Any], variant: dict[str, Any]
) -> None:
    spec = _spec(task, options, variant)
    dataset = prepare(task, spec.task.options.__dict__, 0, tmp_path)
    config = spec.trial("v")
    module = build_module(config, dataset)
    data = NpzDataModule(dataset.uri, batch_size=config.train.batch_size, seed=0)
    trainer = make_trainer(config.train)
    trainer.fit(module, datamodule=data)
    assert math.isfinite(float(trainer.callback_metrics["val/loss"]))
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    trainer.save_checkpoint(tmp_path / "ckpt" / "checkpoint")
    # The driver's path: reload from the checkpoint, test on the held-out split.
    metrics, reloaded = evaluate(config, dataset, str(tmp_path / "ckpt"))
    assert type(reloaded) is type(module)
    key = f"test/{dataset.metric}"
    assert key in metrics, sorted(metrics)
    assert math.isfinite(metrics[key])


class _EpochEnd(L.Callback):
    """What a callback, like the report to Tune, reads of `train/loss` at each epoch's end."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seen.append(float(trainer.callback_metrics["train/loss"]))


def test_train_loss_is_the_epochs_weighted_mean_and_callbacks_see_it() -> None:
    """The module sums `train/loss` itself and logs it once, at the epoch's last batch. With a
    learning rate of 0 the weights stay put, so the epoch's mean is known: batches of 4, 4 and 2
    sequences weigh 4, 4 and 2."""
    torch.manual_seed(0)
    x, y = torch.randn(10, 5, 2), torch.randn(10, 1)
    batches = [{"x": x[i : i + 4], "y": y[i : i + 4]} for i in (0, 4, 8)]
    module = SequenceRegression(build_model(ModelConfig(cell="tanh", hidden_size=3), 2, 1), lr=0.0)
    with torch.no_grad():
        expected = sum(F.mse_loss(module(b["x"]), b["y"]) * len(b["y"]) for b in batches) / 10
    clock = _EpochEnd()
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[clock],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))  # as they are
    assert clock.seen == pytest.approx([float(expected)] * 2, rel=1e-6)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(float(expected), rel=1e-6)
