"""What every family's LightningModule shares: the network, Adam with weight decay, the
optimizer step it takes itself, gradient clipping, and the training metrics' epoch means."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import lightning as L
import torch

from seqmodels.batch import Batch
from seqmodels.lit.checkpoints import carry_step_count
from seqmodels.lit.switches import check_switches, recording
from seqmodels.lit.tbptt import ChunkLoss, truncated_backward
from seqmodels.models.network import Network
from seqmodels.training import information_flow_penalty

Weight = int | torch.Tensor  # a batch's weight in an epoch's mean; a tensor where reading it waits


class FamilyModule(L.LightningModule):
    """Base of the families' modules, with the training switches of Deep Learning 10.2.2 and
    10.11.

    Each family sets `family`, its name in `FAMILIES` and in `seqmodels.config`'s
    declarations, and supplies `model_step(batch)`, the one step shared by train, validation
    and test; `training_loss(batch) -> (loss, weight)`, the loss of one training batch and how
    much it weighs in the epoch's mean (sequences, or tokens); and, where it has a target at
    every step (`seqmodels.config.TBPTT_FAMILIES`), `chunk_loss(batch)` for truncated BPTT.

    Args:
        net: the network, following `seqmodels.models.network.Network`.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        tbptt: truncated BPTT's length k (10.2.2), None for full BPTT. It needs a
            unidirectional network of `seqmodels.config.TBPTT_ARCHITECTURES` and a family with
            per-step targets: each batch is cut into chunks of k steps that carry the detached
            state forward and accumulate their gradients, then one optimizer step.
        info_flow: the weight of Pascanu's regularizer Omega (10.11.2) in the training loss,
            0 for none. It needs a unidirectional first recurrence, in a network of
            `seqmodels.config.INFO_FLOW_ARCHITECTURES`; logged as `train/info_flow`.
        grad_clip: clip the gradient to this before each step (10.11.1), None for no clipping.
        grad_clip_algorithm: "norm" (the whole gradient's norm) or "value" (each element).
    Raises:
        ConfigError: a switch the network or the family cannot honour, naming the switch.
    """

    family: ClassVar[str] = ""  # "regression", "classification", "seq2seq" or "lm"

    def __init__(
        self,
        net: Network,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        tbptt: int | None = None,
        info_flow: float = 0.0,
        grad_clip: float | None = None,
        grad_clip_algorithm: Literal["norm", "value"] = "norm",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        check_switches(net, self.family, tbptt, info_flow)
        self.automatic_optimization = False  # `training_step` steps (see `seqmodels.lit`)
        self._train_sums: dict[str, tuple[torch.Tensor, Weight]] = {}  # name -> (sum, weight)
        self._total_steps = 1  # the fit's optimizer steps, scheduled sampling's clock's end
        self._reset()

    def _reset(self) -> None:
        """Clear what a family accumulates over an epoch (nothing by default)."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        carry_step_count(checkpoint)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

    # --- scheduled sampling's clock -----------------------------------------------------------

    def on_train_start(self) -> None:
        self._total_steps = max(1, self.trainer.estimated_stepping_batches)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        self.net.set_progress(self.global_step / self._total_steps)

    # --- the training metrics' epoch means ----------------------------------------------------
    # Weighted by each batch's weight, summed here and logged once, at the epoch's last batch:
    # `self.log` moves each logged value's state to the device, a cost comparable to a small
    # network's step (benchmarks/framework_tax.py). The last batch, not `on_train_epoch_end`:
    # callbacks' `on_train_epoch_end` run before the module's, and the report to Tune is one.

    def on_train_epoch_start(self) -> None:
        self._train_sums = {}

    def _add_to_epoch(self, name: str, value: torch.Tensor, weight: Weight) -> None:
        """Add one batch's `value`, of weight `weight`, to the epoch's mean of `name`."""
        total, count = self._train_sums.get(name, (torch.zeros((), device=value.device), 0))
        self._train_sums[name] = (total + value.detach() * weight, count + weight)

    def _log_epoch_means(self) -> None:
        for name, (total, count) in self._train_sums.items():
            self.log(name, total / count, on_step=False, on_epoch=True)
        self._train_sums = {}

    def on_train_batch_end(self, outputs: object, batch: Batch, batch_idx: int) -> None:
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self._log_epoch_means()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_means()  # an epoch stopped early: its means still reach the loggers

    # --- one optimizer step -------------------------------------------------------------------

    def model_step(self, batch: Batch) -> tuple[Any, ...]:
        """The one step shared by train, validation and test; the loss comes first."""
        raise NotImplementedError  # pragma: no cover - abstract

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, Weight]:
        """(the task loss of one training batch, its weight in the epoch's mean)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def chunk_loss(self, batch: Batch) -> tuple[ChunkLoss, Weight]:
        """For truncated BPTT: the loss of a chunk's outputs, normalised so that the chunks'
        losses add up to `training_loss`, and the batch's weight in the epoch's mean."""
        raise NotImplementedError  # pragma: no cover - `check_switches` stops it first

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """One optimizer step: the gradients of the batch's loss (truncated or not), clipped."""
        hp = self.hparams
        optimizer = self.optimizers()
        optimizer.zero_grad()
        if hp.tbptt is not None:
            loss, omega, weight = self.truncated_backward(batch, self.manual_backward)
        else:
            loss, omega, weight = self._backward(batch)
        if hp.grad_clip is not None:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=hp.grad_clip,
                gradient_clip_algorithm=hp.grad_clip_algorithm,
            )
        optimizer.step()
        self._add_to_epoch("train/loss", loss, weight)
        if hp.info_flow:
            self._add_to_epoch("train/info_flow", omega, weight)

    def _backward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, Weight]:
        """Full BPTT's gradients of one batch, in `.grad`: (task loss, Omega, weight), detached."""
        info_flow = self.hparams.info_flow
        with recording(self.net, info_flow) as calls:
            loss, weight = self.training_loss(batch)
        if not info_flow:
            self.manual_backward(loss)
            return loss.detach(), loss.new_zeros(()), weight
        omega = information_flow_penalty(calls[0], loss)
        self.manual_backward(loss + info_flow * omega)
        return loss.detach(), omega.detach(), weight

    def truncated_backward(
        self, batch: Batch, backward: Callable[[torch.Tensor], None]
    ) -> tuple[torch.Tensor, torch.Tensor, Weight]:
        """Truncated BPTT's gradients of one batch (10.2.2), accumulated in `.grad`
        (`seqmodels.lit.tbptt.truncated_backward`).

        Returns:
            (task loss, Omega summed over the chunks, the batch's weight), detached.
        """
        hp = self.hparams
        loss_fn, weight = self.chunk_loss(batch)
        loss, omega = truncated_backward(self.net, batch, loss_fn, hp.tbptt, hp.info_flow, backward)
        return loss, omega, weight


__all__ = ["FamilyModule", "Weight"]
