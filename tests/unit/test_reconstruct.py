"""The `reconstruct` task (y = x at every step) and what `Task.per_step` lets the spec check:
the architectures that emit per step train on it, `seq2one` is refused, and truncated BPTT is
refused on a task with one target per sequence before any trial starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch.nn import functional as F

from pipelines.cli.app import main
from pipelines.data.store import DatasetRef, _sha256, prepare
from pipelines.spec import SpecError, load_spec, parse_spec
from pipelines.trial.trainable import build_module, make_trainer
from seqmodels.data import NpzDataModule
from seqmodels.errors import ConfigError
from seqmodels.models import OutputRecurrent, SequenceAutoencoder
from seqmodels.tasks import TASKS, ReconstructTask
from seqmodels.tasks.reconstruct import AMPLITUDE, FREQUENCY
from tests.conftest import ROOT

SMALL = {"length": 12, "features": 2, "components": 2, "n_train": 96, "n_val": 32, "n_test": 32}
EXAMPLE = ROOT / "experiments" / "autoencoder.yaml"
PER_STEP = ["autoencoder", "recurrent", "output_recurrent", "bidirectional", "deep"]


def _task(**options: Any) -> ReconstructTask:
    return TASKS.get("reconstruct").from_options({**SMALL, **options})


def _digest(splits: dict[str, dict[str, np.ndarray]]) -> str:
    return "".join(_sha256(splits[split]) for split in ("train", "val", "test"))


def _spec(task: str, options: dict[str, Any], variant: dict[str, Any], **fixed: Any) -> dict:
    return {
        "name": "reconstruct",
        "task": {"name": task, "options": options},
        "variants": {"a": {"hidden_size": 8, **variant}},
        "fixed": {"max_epochs": 1, "batch_size": 16, "lr": 0.01, **fixed},
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetRef:
    return prepare("reconstruct", SMALL, 0, tmp_path_factory.mktemp("store"))


# --- the generator --------------------------------------------------------------------------


def test_registered_as_per_step_regression() -> None:
    task = _task()
    assert isinstance(task, ReconstructTask) and task.name == "reconstruct"
    assert (task.family, task.metric, task.metrics) == ("regression", "mse", ("mse", "mae"))
    assert task.per_step
    assert task.input_size == task.output_size == SMALL["features"]


def test_per_step_is_declared_truthfully_by_every_task() -> None:
    """lm targets are per step by definition; classes and target sequences never are; of the
    regression tasks only `reconstruct` (adding, sunspots, series_csv: one per sequence)."""
    for name in TASKS.names():
        task_type = TASKS.get(name)
        expected = task_type.family == "lm" or name == "reconstruct"
        assert task_type.per_step is expected, name
    for name, options in (("adding", {"length": 6}), ("copy", {"delay": 3}), ("reconstruct", {})):
        split = TASKS.get(name).from_options({**options, "n_train": 4}).generate(0)["train"]
        x, y = split["x"], split["y"]
        aligned = y.ndim >= 2 and y.shape[:2] == x.shape[:2]
        assert aligned is TASKS.get(name).per_step, name


def test_deterministic_under_the_seed() -> None:
    first = _task().generate(3)
    assert _digest(first) == _digest(_task().generate(3))
    assert _digest(first) != _digest(_task().generate(4))


def test_the_target_is_the_input() -> None:
    for split, n in (("train", 96), ("val", 32), ("test", 32)):
        arrays = _task().generate(0)[split]
        assert set(arrays) == {"x", "y"}
        assert arrays["x"].shape == (n, SMALL["length"], SMALL["features"])
        assert arrays["x"].dtype == arrays["y"].dtype == np.float32
        np.testing.assert_array_equal(arrays["y"], arrays["x"])


def test_follows_the_documented_generator() -> None:
    """Redraw the train split from the same seed as the module docstring says."""
    o = _task(noise=0.1).options
    rng = np.random.default_rng(5)
    shape = (o.n_train, o.features, o.components)
    a, nu = rng.uniform(*AMPLITUDE, size=shape), rng.uniform(*FREQUENCY, size=shape)
    phi = rng.uniform(0.0, 2 * math.pi, size=shape)
    eps = rng.standard_normal((o.n_train, o.length, o.features))
    x = np.zeros((o.n_train, o.length, o.features))
    for t in range(o.length):
        x[:, t] = (a * np.sin(2 * math.pi * nu * t + phi)).sum(-1) / math.sqrt(o.components)
    x += o.noise * eps
    np.testing.assert_allclose(_task(noise=0.1).generate(5)["train"]["x"], x, atol=1e-5)


def test_baseline_is_the_mean_predictor_mse() -> None:
    task = _task(n_train=3000, n_test=3000, features=1, noise=0.2)
    splits = task.generate(0)
    mean = splits["train"]["x"].reshape(-1).astype(np.float64).mean()  # the one feature's mean
    measured = float(np.mean((splits["test"]["x"].astype(np.float64) - mean) ** 2))
    assert task.baseline_on(splits) == pytest.approx(measured, rel=1e-6)
    # and, in expectation, the signal's variance: E[a^2] / 2 = 13/24, plus the noise's
    assert task.baseline == pytest.approx(13 / 24 + 0.2**2)
    assert measured == pytest.approx(task.baseline, rel=0.04)


BAD_OPTIONS = [
    ({"length": 0}, "length", ">= 1"),
    ({"features": 0}, "features", ">= 1"),
    ({"components": 0}, "components", ">= 1"),
    ({"noise": -0.1}, "noise", ">= 0"),
    ({"noise": math.inf}, "noise", "finite"),
    ({"n_val": 0}, "n_val", ">= 1"),
    ({"lenght": 5}, "lenght", "unknown option; choose from: length, features"),
]


@pytest.mark.parametrize("options,field,fragment", BAD_OPTIONS, ids=lambda v: str(v)[:18])
def test_bad_options_name_the_field(options: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as caught:
        TASKS.get("reconstruct").from_options(options)
    assert caught.value.field == field


def test_data_prepare_refuses_a_bad_option_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "prepare", "reconstruct", "--set", "length=0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line == "seqlab: error: --set length=0: task.options.length: must be >= 1"
    assert not home.exists()


# --- the store and the DataModule -----------------------------------------------------------


def test_round_trips_the_store_and_datamodule(dataset: DatasetRef) -> None:
    card = json.loads((Path(dataset.uri) / "card.json").read_text())
    assert (dataset.family, dataset.metric) == ("regression", "mse")
    assert card["metrics"] == ["mse", "mae"]
    assert dataset.input_size == dataset.output_size == SMALL["features"]
    assert card["splits"]["train"]["y_shape"] == [96, SMALL["length"], SMALL["features"]]
    assert dataset.baseline == pytest.approx(_task().baseline_on(_task().generate(0)))
    assert card["task_details"]["expected_baseline"] == pytest.approx(13 / 24 + 0.05**2)
    assert prepare("reconstruct", SMALL, 0, Path(dataset.uri).parents[1]) == dataset  # cached
    data = NpzDataModule(dataset.uri, batch_size=16, seed=0)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["x"].shape == (16, SMALL["length"], SMALL["features"])
    assert batch["x"].dtype == torch.float32
    assert torch.equal(batch["y"], batch["x"])
    assert torch.equal(batch["x_len"], torch.full((16,), SMALL["length"]))
    assert sum(len(b["x"]) for b in data.train_dataloader()) == 96


# --- the architectures that emit per step train on it ---------------------------------------


@pytest.mark.parametrize("architecture", PER_STEP)
def test_per_step_architecture_trains_and_its_loss_falls(
    architecture: str, dataset: DatasetRef
) -> None:
    epochs = 40 if architecture == "autoencoder" else 12  # its code is a bottleneck: slower
    spec = parse_spec(
        _spec("reconstruct", SMALL, {"architecture": architecture}, max_epochs=epochs, lr=0.03)
    )
    config = spec.trial("a")
    L.seed_everything(0, verbose=False)
    module = build_module(config, dataset)
    data = NpzDataModule(dataset.uri, batch_size=config.train.batch_size, seed=0)
    data.setup()
    batch = data.datasets["train"].tensors
    module.train()
    with torch.no_grad():
        before = float(module.model_step(batch)[0])
    make_trainer(config.train).fit(module, datamodule=data)
    module.train()
    with torch.no_grad():
        after = float(module.model_step(batch)[0])
    assert after < 0.8 * before, (before, after)
    assert after < dataset.baseline, "it beats predicting the train mean"


def test_output_recurrent_is_teacher_forced_with_the_targets(dataset: DatasetRef) -> None:
    """SequenceRegression hands y to the network: in training it feeds y(t-1), not o(t-1)."""
    config = parse_spec(_spec("reconstruct", SMALL, {"architecture": "output_recurrent"}))
    module = build_module(config.trial("a"), dataset)
    assert isinstance(module.net, OutputRecurrent)
    assert module.net.training_mode == "teacher_forcing"
    data = NpzDataModule(dataset.uri, batch_size=16, seed=0)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    x, y = batch["x"], batch["y"]
    module.train()
    loss, pred, _ = module.model_step(batch)
    torch.testing.assert_close(pred, module.net(x, y=y))
    torch.testing.assert_close(loss, F.mse_loss(module.net(x, y=y), y))
    assert (pred - module.net(x, y=y + 1)).abs().max() > 1e-3, "y(t-1) is what it reads"
    module.eval()  # at test time it runs free, whatever y says
    torch.testing.assert_close(module.model_step(batch)[1], module.net(x))


def test_the_autoencoder_rebuilds_from_its_code_alone(dataset: DatasetRef) -> None:
    config = parse_spec(_spec("reconstruct", SMALL, {"architecture": "autoencoder"}))
    net = build_module(config.trial("a"), dataset).net
    assert isinstance(net, SequenceAutoencoder)
    x = torch.randn(3, SMALL["length"], SMALL["features"])
    code = net.encode(x)
    assert code.shape == (3, 8)
    torch.testing.assert_close(net(x), net.decode(code, SMALL["length"]))


# --- what the spec refuses ------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant,field",
    [
        ({}, "variants.a.architecture"),  # seq2one, the default
        ({"architecture": "encoder_decoder"}, "variants.a.architecture"),
        (
            {"architecture": "deep", "arch_options": {"output": "final"}},
            "variants.a.arch_options.output",
        ),
    ],
    ids=["seq2one", "encoder_decoder", "deep-final"],
)
def test_an_architecture_without_per_step_outputs_is_refused(variant: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_spec("reconstruct", SMALL, variant), "x.yaml")
    assert caught.value.field == field
    assert "'reconstruct' has a target at every step" in caught.value.message
    assert "\n" not in str(caught.value)


def test_run_dry_run_exits_2_on_seq2one(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_spec("reconstruct", SMALL, {"architecture": "seq2one"})))
    assert main(["run", str(path), "--dry-run"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"seqlab: error: {path}: variants.a.architecture: 'seq2one' has no ")


@pytest.mark.parametrize(
    "raw,field",
    [
        (_spec("adding", {"length": 8}, {"architecture": "recurrent"}, tbptt=4), "fixed.tbptt"),
        (
            {
                **_spec("sunspots", {}, {"architecture": "recurrent"}),
                "search": {"space": {"tbptt": {"choice": [None, 4]}}, "trials_per_variant": 2},
            },
            "search.space.tbptt",
        ),
    ],
    ids=["adding-fixed", "sunspots-searched"],
)
def test_tbptt_is_refused_on_one_target_per_sequence(raw: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw, "x.yaml")
    assert caught.value.field == field
    assert "has one target per sequence, no target at every step" in caught.value.message
    assert "reconstruct" in caught.value.message  # where it would apply
    assert "\n" not in str(caught.value)


def test_tbptt_is_accepted_on_reconstruct_and_trains(dataset: DatasetRef) -> None:
    spec = parse_spec(_spec("reconstruct", SMALL, {"architecture": "recurrent"}, tbptt=4))
    config = spec.trial("a")
    module = build_module(config, dataset)
    assert not module.automatic_optimization  # truncated BPTT optimizes by hand
    trainer = make_trainer(config.train)
    trainer.fit(module, datamodule=NpzDataModule(dataset.uri, batch_size=16, seed=0))
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_the_example_compares_autoencoders_through_a_bottleneck() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.task.name == "reconstruct"
    assert {v.architecture for v in spec.variants.values()} == {"autoencoder"}
    assert {v.cell for v in spec.variants.values()} >= {"tanh", "gru", "lstm"}
    o = spec.task.options
    numbers = 3 * o.components * o.features  # amplitude, frequency, phase of each sinusoid
    assert all(v.hidden_size < numbers for v in spec.variants.values())


def test_build_module_still_refuses_tbptt_on_one_target_per_sequence(tmp_path: Path) -> None:
    """The build-time safety net, for configs that skip the spec (a rerun of a recorded run)."""
    adding = prepare("adding", {"length": 6, "n_train": 8, "n_val": 4, "n_test": 4}, 0, tmp_path)
    spec = parse_spec(_spec("adding", {"length": 6}, {}))
    trial = spec.trial("a")
    recorded = dataclasses.replace(
        trial,
        model=dataclasses.replace(trial.model, architecture="recurrent"),
        train=dataclasses.replace(trial.train, tbptt=4),
    )
    with pytest.raises(ConfigError, match="one target per sequence") as caught:
        build_module(recorded, adding)
    assert caught.value.field == "tbptt"
