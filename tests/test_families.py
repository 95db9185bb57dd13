"""Every task family trains through the trainable's own builders and reports its task's metric.

These run without Ray: the same `build_module`, DataModule and Trainer a trial uses, one epoch
on a tiny prepared dataset, then the test split. The headline metric a study compares is
`test/<Task.metric>`, so each family's LightningModule must log it under that name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pipelines.spec import StudySpec, parse_spec
from pipelines.store import prepare
from pipelines.trainable import build_module, evaluate, make_trainer
from seqmodels.data import NpzDataModule

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
    config = spec.trial_base("v")
    module = build_module(config, dataset)
    data = NpzDataModule(dataset.uri, batch_size=config["batch_size"], seed=0)
    trainer = make_trainer(config)
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
