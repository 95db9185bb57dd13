"""Data generation and the content-addressed store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.store import dataset_digest, prepare
from seqmodels.data import NpzDataModule
from seqmodels.tasks import AddingOptions, AddingTask

OPTIONS = {"length": 12, "n_train": 300, "n_val": 50, "n_test": 50}


def test_adding_problem_follows_its_definition() -> None:
    splits = AddingTask(
        options=AddingOptions(length=20, n_train=500, n_val=10, n_test=10)
    ).generate(3)
    x, y = splits["train"]["x"], splits["train"]["y"]
    assert x.shape == (500, 20, 2) and y.shape == (500, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0.0 and values.max() <= 1.0
    # Exactly one marker in each half.
    assert np.all(markers[:, :10].sum(axis=1) == 1)
    assert np.all(markers[:, 10:].sum(axis=1) == 1)
    # The target is the sum of the two marked values.
    np.testing.assert_allclose(y[:, 0], (values * markers).sum(axis=1), rtol=1e-6)


def test_adding_baseline_is_the_variance_of_the_target() -> None:
    task = AddingTask(options=AddingOptions(length=10, n_train=40000, n_val=1, n_test=1))
    y = task.generate(0)["train"]["y"]
    assert task.baseline == pytest.approx(1 / 6)
    # Predicting the mean 1 scores Var(U1 + U2) = 1/6 up to sampling noise.
    assert float(np.mean((y - 1.0) ** 2)) == pytest.approx(1 / 6, abs=0.005)


def test_generation_is_deterministic_under_a_seed() -> None:
    task = AddingTask(options=AddingOptions(**OPTIONS))
    a, b, c = task.generate(1), task.generate(1), task.generate(2)
    np.testing.assert_array_equal(a["test"]["x"], b["test"]["x"])
    assert not np.array_equal(a["test"]["x"], c["test"]["x"])
    assert not np.array_equal(a["train"]["x"][:50], a["val"]["x"])  # splits are distinct draws


def test_digest_changes_with_task_options_and_seed() -> None:
    base = dataset_digest("adding", OPTIONS, 0)
    assert base == dataset_digest("adding", dict(OPTIONS), 0)
    assert base != dataset_digest("adding", {**OPTIONS, "length": 13}, 0)
    assert base != dataset_digest("adding", OPTIONS, 1)


def test_prepare_writes_splits_and_card_once(tmp_path: Path) -> None:
    ref = prepare("adding", OPTIONS, 0, tmp_path)
    root = Path(ref.uri)
    assert root.is_absolute() and root.parent == tmp_path / "data"
    assert sorted(p.name for p in root.iterdir()) == [
        "card.json",
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    card = json.loads((root / "card.json").read_text())
    assert card["splits"]["train"]["size"] == 300
    assert card["baseline"]["value"] == pytest.approx(1 / 6)
    assert card["metric"] == "mse" and card["digest"] == ref.digest
    assert ref.sizes == {"train": 300, "val": 50, "test": 50}

    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    again = prepare("adding", OPTIONS, 0, tmp_path)
    assert again == ref
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == before  # not regenerated
    # Nothing half-written is left beside it.
    assert [p.name for p in (tmp_path / "data").iterdir()] == [root.name]


def test_datamodule_reads_only_from_the_store(tmp_path: Path) -> None:
    ref = prepare("adding", OPTIONS, 0, tmp_path)
    data = NpzDataModule(ref.uri, batch_size=32, seed=0)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["x"].shape == (32, 12, 2) and batch["y"].shape == (32, 1)
    assert batch["x_len"].tolist() == [12] * 32

    def shuffled(seed: int) -> list[float]:
        module = NpzDataModule(ref.uri, batch_size=32, seed=seed)
        module.setup()
        return [batch["y"].sum().item() for batch in module.train_dataloader()]

    assert shuffled(0) == shuffled(0)  # a trial's seed fixes its shuffle order
    assert shuffled(0) != shuffled(1)
