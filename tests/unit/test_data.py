"""Data generation and the content-addressed store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest

from pipelines.data.store import dataset_digest, is_prepared, prepare
from seqmodels.data import NpzDataModule, load_split
from seqmodels.errors import ConfigError
from seqmodels.files import read_card
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


# -- the store behind an fsspec URL ---------------------------------------------------------------


@pytest.fixture
def memory_store() -> Iterator[str]:
    """A fresh root in fsspec's in-memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"memory://seqlab-{uuid.uuid4().hex}"
    yield root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_a_store_at_an_fsspec_url_holds_the_same_dataset(memory_store: str, tmp_path: Path) -> None:
    local = prepare("adding", OPTIONS, 0, tmp_path)
    ref = prepare("adding", OPTIONS, 0, memory_store)
    assert ref.uri == f"{memory_store}/data/adding-{local.digest}"
    assert ref.model_dump() == {**local.model_dump(), "uri": ref.uri}
    fs = fsspec.filesystem("memory")
    assert sorted(Path(p).name for p in fs.ls(ref.uri, detail=False)) == [
        "card.json",
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    for split in ("train", "val", "test"):  # byte for byte what the local store holds
        assert fs.cat(f"{ref.uri}/{split}.npz") == (Path(local.uri) / f"{split}.npz").read_bytes()
    assert read_card(ref.uri) == json.loads((Path(local.uri) / "card.json").read_text())

    # The DataModule reads the URL as it reads a path: the same batches in the same order.
    def batches(uri: str) -> list[float]:
        module = NpzDataModule(uri, batch_size=32, seed=0)
        module.setup()
        return [batch["y"].sum().item() for batch in module.train_dataloader()]

    assert batches(ref.uri) == batches(local.uri)


def test_a_url_store_is_a_cache_and_ignores_an_unfinished_dataset(
    memory_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    generate = AddingTask.generate

    def counted(self: AddingTask, seed: int) -> dict:
        calls.append(seed)
        return generate(self, seed)

    monkeypatch.setattr(AddingTask, "generate", counted)
    ref = prepare("adding", OPTIONS, 0, memory_store)
    assert prepare("adding", OPTIONS, 0, memory_store) == ref and calls == [0]  # a cache hit

    # A writer that died after the splits, before the card: not a dataset, so written again.
    fs = fsspec.filesystem("memory")
    fs.rm(f"{ref.uri}/card.json")
    fs.pipe_file(f"{ref.uri}/train.npz", b"truncated")
    assert not is_prepared(ref.uri)
    assert prepare("adding", OPTIONS, 0, memory_store) == ref and calls == [0, 0]
    assert is_prepared(ref.uri) and len(load_split(ref.uri, "train")) == OPTIONS["n_train"]


def test_a_generator_that_fails_writes_nothing_to_a_url_store(memory_store: str) -> None:
    with pytest.raises(ConfigError):
        prepare("text", {"path": "memory://nowhere/missing.txt"}, 0, memory_store)
    assert not fsspec.filesystem("memory").exists(memory_store)
