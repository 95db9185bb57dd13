"""The contract, generated from the registries: a variant the spec accepts trains.

Every registered task (the user-data tasks on files written here), every architecture and every
cell `seqmodels.config` declares, and each cell's and architecture's non-default options
(derived from their options dataclasses: every other `Literal` choice, the other `bool`, one
more for an `int`), with `bidirectional: true` and `num_layers: 2`. For each combination:

- the validator accepts it, and then the network is built for a real prepared dataset of the
  task at a tiny size, and one training step and one validation step run through the task
  family's LightningModule (one test step and a generated sequence for seq2seq), with finite
  losses and outputs of the task's shape;
- or the validator refuses it with the usual one-line error naming `variants.<name>...`.

Options change the code a network runs, not what a task's data looks like, so the options are
crossed with one task of each input kind (family, token or float inputs, a target per step or
not); every task gets every architecture and cell with their defaults. A new cell, architecture,
option or task joins by being declared.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import typing
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple

import lightning as L
import numpy as np
import pytest
import torch

from pipelines.data.store import DatasetRef, prepare
from pipelines.spec import SpecError, fitting_architectures, parse_spec
from pipelines.trial.trainable import build_module
from seqmodels.config import CELL_OPTIONS, WIRINGS
from seqmodels.data import NpzDataModule
from seqmodels.files import read_arrays
from seqmodels.generate import generate
from seqmodels.tasks import TASKS
from tests.tiny import tiny_options, write_user_files

HIDDEN = 4


def other_values(options_type: type) -> Iterator[dict[str, Any]]:
    """One mapping per non-default value of each option: every other `Literal` choice, the
    other `bool`, the default plus one for an `int`. Floats are left at their defaults: a
    continuous option changes numbers, not the code a network runs."""
    hints = typing.get_type_hints(options_type)
    for f in dataclasses.fields(options_type):
        hint = hints[f.name]
        if typing.get_origin(hint) is Literal:
            yield from ({f.name: v} for v in typing.get_args(hint) if v != f.default)
        elif hint is bool:
            yield {f.name: not f.default}
        elif hint is int:
            yield {f.name: f.default + 1}


def variants() -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, variant) for every architecture x cell, with defaults and with each other option."""
    for architecture, cell in itertools.product(WIRINGS, CELL_OPTIONS):
        base = {"architecture": architecture, "cell": cell, "hidden_size": HIDDEN}
        yield f"{architecture}-{cell}", base
        for option in other_values(CELL_OPTIONS[cell]):
            yield f"{architecture}-{cell}-{_id(option)}", {**base, "cell_options": option}
        for option in other_values(WIRINGS[architecture].options):
            yield f"{architecture}-{cell}-{_id(option)}", {**base, "arch_options": option}
        yield f"{architecture}-{cell}-bidirectional", {**base, "bidirectional": True}
        yield f"{architecture}-{cell}-layers2", {**base, "num_layers": 2}


def _id(option: dict[str, Any]) -> str:
    ((key, value),) = option.items()
    return f"{key}={value}"


def input_kind(dataset: DatasetRef) -> tuple[str, str, bool]:
    """What of a task's data a network sees: its family, float or token inputs, and whether
    targets align with the inputs step by step."""
    train = read_arrays(dataset.uri, "train")
    x, y = train["x"], train["y"]
    per_step = y.shape[:2] == x.shape[:2] and y.ndim >= 2
    return dataset.family, "float" if np.issubdtype(x.dtype, np.floating) else "token", per_step


class Prepared(NamedTuple):
    options: dict[str, Any]
    dataset: DatasetRef


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Prepared]:
    """Every registered task, prepared once at a tiny size."""
    root = tmp_path_factory.mktemp("matrix")
    files = write_user_files(root / "files")
    options = {name: tiny_options(name, files) for name in TASKS.names()}
    return {
        name: Prepared(options[name], prepare(name, options[name], 0, root / "store"))
        for name in TASKS.names()
    }


def cases(datasets: dict[str, Prepared]) -> list[tuple[str, str, dict[str, Any]]]:
    """(task, id, variant): every task with each architecture and cell at their defaults;
    the first task of each input kind with every option too."""
    seen: set[tuple[str, str, bool]] = set()
    out = []
    for name, prepared in datasets.items():
        kind = input_kind(prepared.dataset)
        crossed = kind not in seen
        seen.add(kind)
        for ident, variant in variants():
            if crossed or set(variant) == {"architecture", "cell", "hidden_size"}:
                out.append((name, ident, variant))
    return out


def _spec(task: str, options: dict[str, Any], variant: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "name": "matrix",
            "task": {"name": task, "options": options},
            "variants": {"v": variant},
            "fixed": {"max_epochs": 1, "batch_size": 8},
            "seeds": 1,
        },
        "matrix.yaml",
    )


def _trainer() -> L.Trainer:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    return L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        limit_test_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )


def test_every_accepted_variant_trains_and_every_refused_one_says_why(
    datasets: dict[str, Prepared],
) -> None:
    """One test over the whole matrix, so that its size and every failure are reported at once
    (parametrizing would prepare the datasets at collection time)."""
    accepted, refused, failures = 0, 0, []
    for task, ident, variant in cases(datasets):
        options, dataset = datasets[task]
        try:
            spec = _spec(task, options, variant)
        except SpecError as err:
            refused += 1
            message = str(err)
            if "\n" in message or not err.field.startswith("variants.v"):
                failures.append(f"{task}/{ident}: refused without naming the variant: {message}")
            continue
        accepted += 1
        try:
            check_trains(spec, dataset)
        except Exception as err:  # noqa: BLE001 - every failure is collected and reported
            failures.append(f"{task}/{ident}: {type(err).__name__}: {err}")
    print(f"matrix: {accepted} accepted, {refused} refused")
    assert not failures, f"{len(failures)} of {accepted} accepted failed:\n" + "\n".join(failures)
    assert accepted > 100 and refused > 100  # the matrix is not empty on either side


def check_trains(spec: Any, dataset: DatasetRef) -> None:
    """A training step, a validation step and a test step through the family's module."""
    L.seed_everything(0, verbose=False)
    config = spec.trial("v")
    module = build_module(config, dataset)
    data = NpzDataModule(dataset.uri, batch_size=config.train.batch_size, seed=0)
    trainer = _trainer()
    trainer.fit(module, datamodule=data)
    for key in ("train/loss", "val/loss"):
        value = float(trainer.callback_metrics[key])
        assert math.isfinite(value), f"{key} = {value}"
    (metrics,) = trainer.test(module, datamodule=data, verbose=False)
    headline = metrics[f"test/{dataset.metric}"]
    assert math.isfinite(headline), f"test/{dataset.metric} = {headline}"
    check_outputs(module, next(iter(data.test_dataloader())), dataset)


def check_outputs(module: L.LightningModule, batch: dict[str, Any], dataset: DatasetRef) -> None:
    """The network's outputs for a test batch have the task's shape: a regression's targets',
    a class score per class, a next-token score per step, or a generated target sequence."""
    module.eval()
    B = batch["x"].shape[0]
    with torch.no_grad():
        if dataset.family == "seq2seq":
            out = generate(module.net, batch["x"], batch["x_len"], max_length=6)
            assert out.tokens.shape[0] == B and out.tokens.shape[1] <= 6, out.tokens.shape
            assert bool((out.lengths >= 1).all() & (out.lengths <= 6).all()), out.lengths
            return
        if dataset.family == "regression":
            _, pred, y = module.model_step(batch)
            assert pred.shape == y.shape, (pred.shape, y.shape)
            return
        scores = module(batch["x"], **{k: batch[k] for k in ("x_len", "x_parent") if k in batch})
        if dataset.family == "classification":
            assert scores.shape == (B, dataset.output_size), scores.shape
        else:  # lm: a score for every id at every step
            assert scores.shape == (*batch["y"].shape, dataset.output_size), scores.shape
    assert bool(torch.isfinite(scores).all())


def test_each_task_declares_the_inputs_it_prepares(datasets: dict[str, Prepared]) -> None:
    """`Task.token_inputs`, which the validator reads without preparing data, is what the
    prepared arrays hold."""
    for name, (_, dataset) in datasets.items():
        _, inputs, _ = input_kind(dataset)
        assert TASKS.get(name).token_inputs == (inputs == "token"), name


def test_seqlab_tasks_lists_the_architectures_the_validator_accepts(
    datasets: dict[str, Prepared],
) -> None:
    """`fitting_architectures`, which `seqlab tasks` prints, says what a spec would: each
    listed architecture validates on the task with some cell, and no other does."""
    for name, (options, _) in datasets.items():
        accepted = set()
        for _, variant in variants():
            try:
                _spec(name, options, variant)
            except SpecError:
                continue
            accepted.add(variant["architecture"])
        assert set(fitting_architectures(TASKS.get(name))) == accepted, name


@pytest.mark.parametrize(
    "variant",
    [
        {"architecture": "bidirectional"},
        {"architecture": "autoencoder"},
        {"architecture": "recurrent", "bidirectional": True},
    ],
)
def test_a_language_model_cannot_read_ahead(datasets: dict[str, Prepared], variant: dict) -> None:
    """charlm's target at t is the input at t+1: a network that reads ahead sees it."""
    with pytest.raises(SpecError, match="predicts the next input"):
        _spec("charlm", datasets["charlm"].options, {**variant, "cell": "gru"})
    _spec("copy", datasets["copy"].options, {**variant, "cell": "gru"})  # copy's are the past
