"""The Ray Tune trainable: a thin function that builds an ordinary Lightning Trainer.

It runs inside a Ray worker. Constants (the dataset) arrive through `tune.with_parameters`;
everything a trial varies arrives in `config`, the nested mapping Tune sampled, which the
trainable reads once into a `TrialConfig`. The model code it calls contains no Ray.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import ray
import torch
from ray import tune
from torch import nn

from pipelines.data import store
from pipelines.data.store import DatasetRef
from pipelines.ops import settings
from pipelines.trial.phase import is_repeat
from seqmodels.config import TrainConfig, TrialConfig
from seqmodels.data import NpzDataModule
from seqmodels.diagnostics import RecurrenceDiagnostics
from seqmodels.errors import ConfigError
from seqmodels.lit import FAMILIES
from seqmodels.models import build_model
from seqmodels.tasks import TASKS

CHECKPOINT_FILE = "checkpoint"
REPORTED = ("train/loss", "val/loss")
# Reported too whenever the epoch has them: the diagnostics (`diag/grad_h_lag_<k>`,
# `diag/spectral_radius`, ...) and the information-flow penalty (`train/info_flow`).
REPORTED_IF_LOGGED = ("diag/", "train/info_flow")
# With `diagnostics: true`: measure on every 10th training batch, at lags 0, 1, 2, 4, ... 1024
# (those shorter than the sequence), and report each epoch's mean.
DIAGNOSTICS_EVERY = 10
DIAGNOSTIC_LAGS = (0, *(2**i for i in range(11)))


def placement() -> dict[str, str]:
    """Where this trial runs, reported with every result so the driver can tag its MLflow run.

    The Ray node's id, and the ids of the GPUs Ray granted the trial, comma-separated ("" when
    it asked for none). `trial_runs.PLACEMENT_KEYS` names the same keys.
    """
    context = ray.get_runtime_context()
    gpus = context.get_accelerator_ids().get("GPU", [])
    return {"ray/node_id": context.get_node_id(), "ray/gpu_ids": ",".join(gpus)}


class Report(L.Callback):
    """Reports each training epoch to Tune, with a checkpoint when one is due.

    By the end of the training epoch this epoch's validation has run too. A report holds
    `REPORTED`, the metrics named by `REPORTED_IF_LOGGED` that the epoch logged, and `where`:
    what `placement()` returned, strings, not metrics, so Tune's loggers skip them and
    `TrialRuns` tags the trial's run with them.

    A checkpoint is due when `val/loss` is the lowest this trial has reported, at the trial's
    last epoch, and, with `every` = N, also when N epochs have passed since the last one. The
    best checkpoints, the ones a study keeps, are all saved, and so is the final state, which
    a trial restored after it finished resumes from; any other epoch costs no write and no
    copy into Tune's storage. What the rule has seen (the lowest `val/loss`, the epoch last
    saved) is saved in each checkpoint, so a restored trial goes on with it.

    Args:
        where: `placement()`.
        checkpoints: whether the trial checkpoints at all (a seeded repeat does not).
        every: also checkpoint at this interval, in epochs: a retried or resumed trial then
            repeats at most N-1 epochs; 1 checkpoints every epoch. None: only improvements.
    """

    def __init__(
        self, where: dict[str, str], *, checkpoints: bool = True, every: int | None = None
    ) -> None:
        self.where = where
        self.checkpoints = checkpoints
        self.every = every
        self.best = math.inf  # the lowest val/loss reported
        self.saved = 0  # the epoch (counted from 1) of the last checkpoint

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "saved": self.saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.saved = state["best"], state["saved"]

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        logged = trainer.callback_metrics
        report = {key: float(logged[key]) for key in REPORTED if key in logged}
        report |= {key: float(v) for key, v in logged.items() if key.startswith(REPORTED_IF_LOGGED)}
        report |= self.where
        epoch = trainer.current_epoch + 1
        if not self._due(epoch, report.get("val/loss", math.nan), epoch == trainer.max_epochs):
            tune.report(report)
            return
        with tempfile.TemporaryDirectory() as directory:
            # the rule's state is updated first: the checkpoint holds it
            trainer.save_checkpoint(Path(directory) / CHECKPOINT_FILE)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(directory))

    def _due(self, epoch: int, val_loss: float, last: bool = False) -> bool:
        """Whether this epoch checkpoints; updates what the rule has seen."""
        improved = val_loss < self.best  # never for a NaN
        if improved:
            self.best = val_loss
        interval = self.every is not None and epoch - self.saved >= self.every
        if not self.checkpoints or not (improved or interval or last):
            return False
        self.saved = epoch
        return True


def build_net(trial: TrialConfig, dataset: DatasetRef) -> nn.Module:
    """The network a trial config names, sized for the dataset."""
    return build_model(trial.model, dataset.input_size, dataset.output_size)


def build_module(trial: TrialConfig, dataset: DatasetRef) -> L.LightningModule:
    """The LightningModule of the dataset's family, around the network the config names, with
    the config's training switches (truncated BPTT, the information-flow regularizer).

    Raises:
        ConfigError: a switch the network or the dataset cannot honour, naming it.
    """
    train = trial.train
    # The spec refuses this first, from the same declaration (`Task.per_step`); a safety net
    # for the configs that skip the spec: a recorded run that `seqlab rerun` trains again, a
    # direct call. The module checks the network itself (`seqmodels.lit.switches`).
    if train.tbptt is not None and not TASKS.get(dataset.task).per_step:
        raise ConfigError(
            "tbptt", f"task {dataset.task!r} has one target per sequence, none to truncate"
        )
    net = build_net(trial, dataset)
    return FAMILIES[dataset.family](
        net,
        lr=train.lr,
        weight_decay=train.weight_decay,
        tbptt=train.tbptt,
        info_flow=train.info_flow,
        grad_clip=train.grad_clip,
        grad_clip_algorithm=train.grad_clip_algorithm,
    )


def make_trainer(train: TrainConfig, callbacks: list[L.Callback] | None = None) -> L.Trainer:
    """A quiet Lightning Trainer: Tune reports and checkpoints, so no logger or progress bar.

    The module clips gradients itself (10.11.1), as it optimizes by hand; with `diagnostics`
    the Trainer gets the `RecurrenceDiagnostics` callback, measured every `DIAGNOSTICS_EVERY`
    batches. It restricts torch to deterministic algorithms unless `deterministic` is false.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    settings.quiet_known_warnings()  # a trial's worker process has the driver's filters too
    callbacks = list(callbacks or [])
    if train.diagnostics:
        # before the callers' callbacks, so a report at the epoch's end reads its values
        diagnostics = RecurrenceDiagnostics(DIAGNOSTICS_EVERY, DIAGNOSTIC_LAGS, on_epoch=True)
        callbacks.insert(0, diagnostics)
    trainer = L.Trainer(
        max_epochs=train.max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=train.deterministic,
        accelerator="auto",
        devices=1,
    )
    # Lightning sets torch's flags for the whole process either way, so a trial never inherits
    # the previous one's. `deterministic=True` also fills every new tensor with NaN, a guard
    # against ops that read memory before writing it. On CPU that costs a measurable share of
    # a small network's step (benchmarks/framework_tax.py), and the losses were the same without
    # it.
    torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer


class ApplyConfig(L.Callback):
    """Sets the config's learning rate and weight decay on the optimizer when training starts.

    A trial restored from a checkpoint gets the optimizer state saved in it, learning rate
    included. Under population-based training the config that resumes it carries a perturbed
    learning rate, and the config must win.
    """

    def __init__(self, train: TrainConfig) -> None:
        self.train = train

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.train.lr
                group["weight_decay"] = self.train.weight_decay


def seeded(trial: TrialConfig, dataset: DatasetRef) -> tuple[L.LightningModule, NpzDataModule]:
    """The module and the data of a trial's config, after seeding everything with its seed:
    the weights, the batches' order and, for a repeat with a draw of its own (`data_seed`),
    the training data follow from the config alone."""
    if trial.data_seed is not None:
        dataset = store.prepare_draw(dataset, trial.data_seed)  # prepared by the study's flow
    L.seed_everything(trial.weights_seed, workers=True, verbose=False)
    module = build_module(trial, dataset)
    data = NpzDataModule(dataset.uri, batch_size=trial.train.batch_size, seed=trial.batches_seed)
    return module, data


def train_trial(
    config: dict[str, Any], dataset: DatasetRef, checkpoint_every: int | None = None
) -> None:
    """Train one trial, reporting `train/loss` and `val/loss` (and the diagnostics, when the
    config switches them on) every epoch, with a checkpoint when `Report` says one is due."""
    trial = TrialConfig.from_nested(config)
    module, data = seeded(trial, dataset)
    report = Report(placement(), every=checkpoint_every)
    trainer = make_trainer(trial.train, [report, ApplyConfig(trial.train)])
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        trainer.fit(module, datamodule=data)
        return
    with checkpoint.as_directory() as directory:  # a retried trial resumes where it stopped
        trainer.fit(module, datamodule=data, ckpt_path=str(Path(directory) / CHECKPOINT_FILE))


class KeepBest(L.Callback):
    """Keeps, in memory, the weights of the epoch with the lowest `monitor` so far."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best = float("inf")
        self.state: dict[str, Any] | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best = float(value)
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}


def train_repeat(config: dict[str, Any], dataset: DatasetRef) -> None:
    """Retrain a chosen configuration under one seed, then test its best-validation weights.

    Reports `train/loss` and `val/loss` every epoch, like a trial, and finally the test metrics,
    with the best epoch's `val/loss`.
    No early stopping and no checkpoints: a repeat is cheap to rerun, and only its score matters.
    """
    trial = TrialConfig.from_nested(config)
    module, data = seeded(trial, dataset)
    report = Report(placement(), checkpoints=False)
    keep = KeepBest("val/loss")
    trainer = make_trainer(trial.train, [report, keep])
    trainer.fit(module, datamodule=data)
    if keep.state is not None:
        module.load_state_dict(keep.state)
    (metrics,) = trainer.test(module, datamodule=data, verbose=False)
    # With the validation loss of the weights it tested: the study's one Tuner checks that
    # every result holds the metric its search minimises.
    tune.report({**{key: float(value) for key, value in metrics.items()}, "val/loss": keep.best})


def train_study_trial(
    config: dict[str, Any], dataset: DatasetRef, checkpoint_every: int | None = None
) -> None:
    """A study's trainable: a seeded repeat when its config says so (`phase.is_repeat`), else a
    search trial. One trainable for both lets the study run them in one Tuner, and a worker
    that trained one go on with the other."""
    if is_repeat(config):
        train_repeat(config, dataset)
    else:
        train_trial(config, dataset, checkpoint_every)


class EpochMetrics(L.Callback):
    """Collects metrics at each training epoch's end, where `Report` reads them for Tune."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.values: dict[str, list[float]] = {key: [] for key in keys}

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for key, values in self.values.items():
            values.append(float(trainer.callback_metrics[key]))


def train_in_process(
    trial: TrialConfig, dataset: DatasetRef, threads: int, keys: tuple[str, ...]
) -> dict[str, list[float]]:
    """Train a trial's config in this process, without Ray, on `threads` torch threads (as many
    as Ray gave the trial's worker: CPU float sums depend on it), as `train_trial` trains it;
    the per-epoch values of `keys`."""
    torch.set_num_threads(threads)
    module, data = seeded(trial, dataset)
    record = EpochMetrics(keys)
    make_trainer(trial.train, [record]).fit(module, datamodule=data)
    return record.values


def evaluate(
    trial: TrialConfig, dataset: DatasetRef, checkpoint_dir: str
) -> tuple[dict[str, float], L.LightningModule]:
    """Test metrics of a finished trial on the held-out split, and the trained module."""
    net = build_net(trial, dataset)
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    family = FAMILIES[dataset.family]
    module = family.load_from_checkpoint(path, net=net, map_location="cpu")
    data = NpzDataModule(dataset.uri, batch_size=trial.train.batch_size, seed=trial.seed)
    (metrics,) = make_trainer(trial.train).test(module, datamodule=data, verbose=False)
    return {k: float(v) for k, v in metrics.items()}, module
