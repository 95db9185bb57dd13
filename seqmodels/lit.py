"""LightningModules per task family. Each receives its network; it does not build it.

Every module consumes the dict batches of `seqmodels.batch` and has one `model_step` shared by
train, validation and test; metric keys are namespaced (`train/loss`, `val/acc`, `test/bpc`).

| module | network | y | test metrics |
|---|---|---|---|
| SequenceRegression | x -> (B, O) or (B, T, O) | float | test/mse, test/mae |
| SequenceClassification | x -> (B, C) logits | (B,) int64 | test/acc |
| Seq2Seq | (x, x_len, y) -> DecoderOutput | (B, U) ids | test/token_acc, test/seq_acc |
| LanguageModel | ids (B, T) -> (B, T, V) logits | none: x | test/bpc, test/ppl |
"""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from seqmodels.batch import PAD, Batch, mask
from seqmodels.models.seq2seq import DecoderOutput
from seqmodels.models.sequence import OutputRecurrent


class _Module(L.LightningModule):
    """What every family shares: the network, Adam with weight decay."""

    def __init__(self, net: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


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
        if isinstance(self.net, OutputRecurrent):
            # teacher forcing needs y(t-1); in evaluation the network ignores y and runs free
            pred = self.net(batch["x"], batch["y"])
        else:
            pred = self(batch["x"])
        return F.mse_loss(pred, batch["y"]), pred, batch["y"]

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if isinstance(self.net, OutputRecurrent):  # scheduled sampling's clock
            total = max(1, self.trainer.estimated_stepping_batches)
            self.net.progress = self.global_step / total

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


class SequenceClassification(_Module):
    """Trains a network that maps x to class logits (B, C) under cross-entropy.

    Logs `train/loss`, `val/loss`, `val/acc`, `test/loss`, `test/acc`. Batches: `x`, `y` (B,)
    int64 class ids.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The one step shared by train, validation and test: (loss, accuracy)."""
        logits = self(batch["x"])  # (B, C)
        loss = F.cross_entropy(logits, batch["y"])
        return loss, (logits.argmax(-1) == batch["y"]).float().mean()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self.model_step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, acc = self.model_step(batch)
        self.log("val/loss", loss, on_step=False, on_epoch=True)
        self.log("val/acc", acc, on_step=False, on_epoch=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        loss, acc = self.model_step(batch)
        self.log("test/loss", loss, on_step=False, on_epoch=True)
        self.log("test/acc", acc, on_step=False, on_epoch=True)


class Seq2Seq(_Module):
    """Trains an encoder-decoder (`seqmodels.models.seq2seq`) with teacher forcing from BOS.

    The loss is the cross-entropy of the target tokens (PAD positions excluded), plus, when the
    network ends sequences that way (10.2.3), the stop output's binary cross-entropy (1 at the
    last token, y_len - 1) or the length output's cross-entropy against y_len.

    Logs `train/loss`, `val/loss`, `{val,test}/token_acc` (over target tokens) and
    `{val,test}/seq_acc` (exact match of the whole target under teacher forcing).
    Batches: `x` (B, S), `x_len`, `y` (B, U) ending in EOS, `y_len`.
    """

    def forward(self, batch: Batch) -> DecoderOutput:
        return self.net(batch["x"], batch["x_len"], batch["y"])

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The one step shared by train, validation and test:
        (loss, token accuracy, sequence accuracy, target token count)."""
        out = self(batch)
        y, y_len = batch["y"], batch["y_len"]
        valid = mask(y_len, y.shape[1])  # (B, U)
        loss = F.cross_entropy(out.logits.transpose(1, 2), y, reduction="none")  # (B, U)
        loss = (loss * valid).sum() / valid.sum()
        if out.stop_logits is not None:
            last = F.one_hot(y_len - 1, y.shape[1]).float()  # (B, U): 1 at the last token
            stop = F.binary_cross_entropy_with_logits(out.stop_logits, last, reduction="none")
            loss = loss + (stop * valid).sum() / valid.sum()
        if out.length_logits is not None:
            classes = out.length_logits.shape[-1]
            loss = loss + F.cross_entropy(out.length_logits, y_len.clamp(max=classes - 1))
        correct = (out.logits.argmax(-1) == y) | ~valid  # (B, U)
        token_acc = (correct & valid).sum() / valid.sum()
        seq_acc = correct.all(dim=1).float().mean()
        return loss, token_acc, seq_acc, int(valid.sum())

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _, _, _ = self.model_step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: Batch, split: str) -> None:
        loss, token_acc, seq_acc, tokens = self.model_step(batch)
        B = batch["y"].shape[0]
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, batch_size=B)
        # weighted by tokens, so the epoch's value is over all tokens, not a mean of batches
        self.log(f"{split}/token_acc", token_acc, on_step=False, on_epoch=True, batch_size=tokens)
        self.log(f"{split}/seq_acc", seq_acc, on_step=False, on_epoch=True, batch_size=B)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")


class LanguageModel(_Module):
    """Next-token prediction on `x` (B, T) token ids: predict x(t+1) from x(1..t).

    The network maps ids (B, T) to logits (B, T, V), e.g. `recurrent` with an `embedding_size`.
    Positions beyond x_len - 1 are excluded. Logs `train/loss`, `val/loss` (nats per token),
    `{val,test}/bpc` (bits per character: nats / ln 2) and `{val,test}/ppl` (perplexity, e to
    the mean nats), both over all the epoch's tokens.
    """

    def __init__(self, net: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__(net, lr, weight_decay)
        self._nats = 0.0  # the epoch's summed negative log-likelihood, and its token count:
        self._tokens = 0  # perplexity is exp of the mean, which a mean of batches is not

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, int]:
        """The one step shared by train, validation and test: (mean nats per token, tokens)."""
        x, x_len = batch["x"], batch["x_len"]
        logits = self(x[:, :-1])  # (B, T-1, V): reads x(1..T-1), predicts x(2..T)
        target = x[:, 1:]
        valid = mask(x_len - 1, target.shape[1]) & (target != PAD)  # (B, T-1)
        nats = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (B, T-1)
        tokens = int(valid.sum())
        return (nats * valid).sum() / max(tokens, 1), tokens

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, tokens = self.model_step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=tokens)
        return loss

    def _start(self) -> None:
        self._nats, self._tokens = 0.0, 0

    def _accumulate(self, batch: Batch, split: str) -> None:
        loss, tokens = self.model_step(batch)
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, batch_size=tokens)
        self._nats += float(loss) * tokens
        self._tokens += tokens

    def _finish(self, split: str) -> None:
        nats = self._nats / max(self._tokens, 1)
        self.log(f"{split}/bpc", nats / math.log(2))
        self.log(f"{split}/ppl", math.exp(nats))

    def on_validation_epoch_start(self) -> None:
        self._start()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._accumulate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_start(self) -> None:
        self._start()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._accumulate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._finish("test")
