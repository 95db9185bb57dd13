"""On a CUDA device: a trial trains there, on the fast path and cell by cell, and the driver's
path (reload its checkpoint, test it) works on its weights.

Marked `gpu`: skipped on a machine without CUDA (`tests/conftest.py`).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipelines.data.store import prepare
from pipelines.spec import parse_spec
from pipelines.trial.trainable import evaluate, make_trainer, seeded

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("cell", ["lstm", "leaky"], ids=["fast-path", "cell-by-cell"])
def test_a_trial_trains_on_the_gpu_and_its_checkpoint_is_tested(tmp_path: Path, cell: str) -> None:
    spec = parse_spec(
        {
            "name": "gpu",
            "task": {"name": "adding", "options": {"length": 20, "n_train": 256, "n_val": 64}},
            "variants": {"v": {"cell": cell, "hidden_size": 32}},
            "fixed": {"max_epochs": 2, "batch_size": 64},
        }
    )
    dataset = prepare("adding", spec.task.options.__dict__, 0, tmp_path)
    trial = spec.trial("v")
    module, data = seeded(trial, dataset)
    trainer = make_trainer(trial.train)
    trainer.fit(module, datamodule=data)
    assert trainer.strategy.root_device.type == "cuda"
    assert next(module.net.parameters()).is_cuda
    assert math.isfinite(float(trainer.callback_metrics["val/loss"]))
    trainer.save_checkpoint(tmp_path / "ckpt" / "checkpoint")
    metrics, reloaded = evaluate(trial, dataset, str(tmp_path / "ckpt"))
    assert math.isfinite(metrics[f"test/{dataset.metric}"])
    assert type(reloaded) is type(module)
