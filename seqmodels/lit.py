"""LightningModules per task family. Each receives its network; it does not build it."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from seqmodels.batch import Batch


class SequenceRegression(L.LightningModule):
    """Trains any network that maps (B, T, F) to (B, O) under mean squared error.

    Logs `train/loss`, `val/loss` (both MSE) and `test/mse`, `test/mae`. Batches follow
    `seqmodels.batch`: `x` (B, T, F) and `y` (B, O).
    """

    def __init__(self, net: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The one step shared by train, validation and test."""
        pred = self(batch["x"])
        return F.mse_loss(pred, batch["y"]), pred, batch["y"]

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self.model_step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, _, _ = self.model_step(batch)
        self.log("val/loss", loss, on_step=False, on_epoch=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        loss, pred, y = self.model_step(batch)
        self.log("test/mse", loss, on_step=False, on_epoch=True)
        self.log("test/mae", (pred - y).abs().mean(), on_step=False, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
