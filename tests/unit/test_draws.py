"""A seeded repeat's own draw of the data (`repeats.vary: data`), for every registered task:
the study's test split kept byte for byte, the training data varied as the task declares
(`Task.resample`), the same seed giving the same draw, and the draw a dataset like any other."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.data import store
from seqmodels.config import ModelConfig, TrainConfig, TrialConfig
from seqmodels.files import SPLITS, read_arrays, read_card
from seqmodels.tasks import TASKS
from seqmodels.tasks.base import RESAMPLES
from seqmodels.tasks.resample import resampled
from tests.tiny import tiny_options, write_user_files


def _rows(split: dict[str, np.ndarray]) -> list[bytes]:
    """Each example as bytes, padding cut off, so that rows of splits padded to different
    widths compare equal."""
    n = split["x"].shape[0]
    rows = []
    for i in range(n):
        parts = []
        for key in sorted(split):
            row = split[key][i]
            if key in ("x", "x_parent") and "x_len" in split:
                row = row[: split["x_len"][i]]
            if key == "y" and "y_len" in split:
                row = row[: split["y_len"][i]]
            parts.append(key.encode() + np.ascontiguousarray(row).tobytes())
        rows.append(b"|".join(parts))
    return rows


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, store.DatasetRef]:
    root = tmp_path_factory.mktemp("store")
    files = write_user_files(root / "files")
    return {name: store.prepare(name, tiny_options(name, files), 0, root) for name in TASKS.names()}


@pytest.mark.parametrize("name", TASKS.names())
def test_a_draw_keeps_the_test_split_and_varies_training_as_the_task_declares(
    name: str, prepared: dict[str, store.DatasetRef]
) -> None:
    base = prepared[name]
    how = TASKS.get(name).resample
    assert how in RESAMPLES
    one, again, other = (store.prepare_draw(base, seed) for seed in (1, 1, 2))
    assert one.uri == again.uri and one.digest != base.digest and one.uri != other.uri
    assert Path(one.uri).parent == Path(base.uri).parent
    assert read_card(one.uri)["draw"] == {"of": base.digest, "seed": 1, "method": how}
    assert (one.input_size, one.output_size, one.metric, one.family, one.vocab_size) == (
        base.input_size,
        base.output_size,
        base.metric,
        base.family,
        base.vocab_size,
    )
    splits = {split: read_arrays(base.uri, split) for split in SPLITS}
    drawn = {split: read_arrays(one.uri, split) for split in SPLITS}
    for key, array in splits["test"].items():
        np.testing.assert_array_equal(drawn["test"][key], array)
    assert one.sizes == base.sizes or how == "redraw"
    base_train, base_val = _rows(splits["train"]), _rows(splits["val"])
    train, val = _rows(drawn["train"]), _rows(drawn["val"])
    assert train != base_train, "the draw trained on the study's own training data"
    if how == "bootstrap":
        assert set(train) <= set(base_train) and len(train) == len(base_train)
        assert val == base_val
    elif how == "resplit":
        assert sorted(train + val) == sorted(base_train + base_val)
        assert (len(train), len(val)) == (len(base_train), len(base_val))
    else:  # redrawn from the generator: as many fresh examples as the study's
        assert (len(train), len(val)) == (len(base_train), len(base_val))
        assert val != base_val


@pytest.mark.parametrize("name", [n for n in TASKS.names() if TASKS.get(n).resample == "redraw"])
def test_a_task_that_redraws_draws_other_examples_under_another_seed(
    name: str, prepared: dict[str, store.DatasetRef]
) -> None:
    """A task that declares `redraw` must generate from its seed: one whose seed changed
    nothing would give every repeat the same training data."""
    task = store.build_task(name, read_card(prepared[name].uri)["options"])
    first, second = task.generate(1), task.generate(2)
    assert _rows(first["train"]) != _rows(second["train"])


def test_resampling_names_an_unknown_method() -> None:
    split = {"x": np.zeros((3, 2)), "y": np.zeros(3)}
    with pytest.raises(ValueError, match="unknown resampling 'jackknife'"):
        resampled({s: split for s in SPLITS}, "jackknife", 0)  # type: ignore[arg-type]


def test_a_trials_weights_batches_and_data_follow_their_own_seeds(
    prepared: dict[str, store.DatasetRef],
) -> None:
    """`trainable.seeded` draws the weights with `init_seed`, the batches' order with
    `order_seed` and trains on the draw of `data_seed`: each held, the others varied."""
    from pipelines.trial.trainable import seeded

    dataset = prepared["adding"]
    base = TrialConfig(ModelConfig(), TrainConfig(batch_size=8), "rnn", seed=0)

    def drawn(**seeds: int) -> tuple[list[torch.Tensor], torch.Tensor, str]:
        module, data = seeded(dataclasses.replace(base, seed=5, **seeds), dataset)
        data.setup("fit")
        first = next(iter(data.train_dataloader()))["x"]
        return [p.detach().clone() for p in module.parameters()], first, data.root

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    weights, batch, root = drawn(init_seed=0, order_seed=0)
    other_weights, other_batch, other_root = drawn(init_seed=0, order_seed=1)
    assert same(weights, other_weights) and not torch.equal(batch, other_batch)
    assert root == other_root == dataset.uri
    other_weights, other_batch, _ = drawn(init_seed=1, order_seed=0)
    assert not same(weights, other_weights) and torch.equal(batch, other_batch)
    _, _, root = drawn(init_seed=0, order_seed=0, data_seed=5)
    assert root == store.prepare_draw(dataset, 5).uri != dataset.uri
