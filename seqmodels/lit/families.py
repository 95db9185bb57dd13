"""One LightningModule per task family, and `FAMILIES`, which names them."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from seqmodels.batch import PAD, Batch, mask
from seqmodels.errors import ConfigError
from seqmodels.generate import generate
from seqmodels.lit.base import FamilyModule, Weight
from seqmodels.lit.tbptt import ChunkLoss
from seqmodels.metrics import (
    accuracy,
    decoded_metrics,
    language_model_metrics,
    mean_absolute_error,
    teacher_forced_accuracies,
)
from seqmodels.models.seq2seq import DecoderOutput


class SequenceRegression(FamilyModule):
    """Trains any network that maps (B, T, F) to (B, O) under mean squared error.

    Logs `train/loss`, `val/loss` (both MSE) and `test/mse`, `test/mae`. Batches follow
    `seqmodels.batch`: `x` (B, T, F), `x_len` and `y` (B, O), or (B, T, O) for a network with
    an output at every step, which truncated BPTT can train. The network gets `y` too: an
    output-recurrent one is teacher-forced on it in training; in evaluation it runs free.
    """

    family = "regression"

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.net(x, x_len=x_len, y=y)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The one step shared by train, validation and test: (loss, predictions, targets)."""
        pred = self(batch["x"], batch.get("x_len"), batch["y"])
        return F.mse_loss(pred, batch["y"]), pred, batch["y"]

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, int]:
        return self.model_step(batch)[0], batch["x"].shape[0]

    def chunk_loss(self, batch: Batch) -> tuple[ChunkLoss, int]:
        x, y = batch["x"], batch["y"]  # (B, T, F), (B, T, O)
        if y.dim() != 3 or y.shape[1] != x.shape[1]:  # the data's targets, not the network
            raise ConfigError(
                "tbptt", f"needs a target at every step; the targets are {tuple(y.shape)}"
            )

        def loss(pred: torch.Tensor, window: slice) -> torch.Tensor:
            return F.mse_loss(pred, y[:, window], reduction="sum") / y.numel()

        return loss, x.shape[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, _, _ = self.model_step(batch)
        self.log("val/loss", loss, on_step=False, on_epoch=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        loss, pred, y = self.model_step(batch)
        self.log("test/mse", loss, on_step=False, on_epoch=True)
        self.log("test/mae", mean_absolute_error(pred, y), on_step=False, on_epoch=True)


class SequenceClassification(FamilyModule):
    """Trains a network that maps x to class logits (B, C) under cross-entropy.

    Logs `train/loss`, `val/loss`, `{val,test}/accuracy`, `{val,test}/cross_entropy`.
    Batches: `x`, `x_len`, `y` (B,) int64 class ids, and, for trees, `x_parent`, passed on to
    a network that declares it among its `extra_inputs`.
    """

    family = "classification"

    def forward(
        self,
        x: torch.Tensor,
        x_len: torch.Tensor | None = None,
        x_parent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        reads_trees = x_parent is not None and "x_parent" in self.net.extra_inputs
        return self.net(x, x_len=x_len, **({"x_parent": x_parent} if reads_trees else {}))

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The one step shared by train, validation and test: (loss, accuracy)."""
        logits = self(batch["x"], batch.get("x_len"), batch.get("x_parent"))  # (B, C)
        return F.cross_entropy(logits, batch["y"]), accuracy(logits, batch["y"])

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, int]:
        return self.model_step(batch)[0], batch["x"].shape[0]

    def _evaluate(self, batch: Batch, split: str) -> None:
        loss, acc = self.model_step(batch)
        if split == "val":
            self.log("val/loss", loss, on_step=False, on_epoch=True)
        self.log(f"{split}/cross_entropy", loss, on_step=False, on_epoch=True)
        self.log(f"{split}/accuracy", acc, on_step=False, on_epoch=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")


class Seq2Seq(FamilyModule):
    """Trains an encoder-decoder (`seqmodels.models.seq2seq`) with teacher forcing from BOS.

    The loss is the cross-entropy of the target tokens (PAD positions excluded), plus, when the
    network ends sequences that way (10.2.3), the stop output's binary cross-entropy (1 at the
    last token, y_len - 1) or the length output's cross-entropy against y_len.

    Logs `train/loss`, `val/loss` and `val/token_accuracy`, `val/exact_match` under teacher
    forcing (cheap, for model selection). The test decodes greedily, free-running, and scores
    what the model really produces: `test/exact_match`, `test/token_accuracy`, and the
    edit-distance rates `test/per` (token error rate) and `test/wer` (share of sequences wrong).
    Batches: `x` (B, S), `x_len`, `y` (B, U) ending in EOS, `y_len`.
    """

    family = "seq2seq"

    def _reset(self) -> None:
        self._decoded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def forward(self, batch: Batch) -> DecoderOutput:
        return self.net(batch["x"], x_len=batch["x_len"], y=batch["y"])

    def _loss(self, batch: Batch) -> tuple[DecoderOutput, torch.Tensor, torch.Tensor]:
        """(the decoder's output, the loss, the mask of target tokens (B, U))."""
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
        return out, loss, valid

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """The one step of validation: (loss, token accuracy, sequence accuracy, target token
        count)."""
        out, loss, valid = self._loss(batch)
        token_acc, seq_acc = teacher_forced_accuracies(out.logits, batch["y"], valid)
        return loss, token_acc, seq_acc, int(valid.sum())

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, int]:
        return self._loss(batch)[1], batch["y"].shape[0]  # no accuracies: nothing to wait for

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, token_acc, seq_acc, tokens = self.model_step(batch)
        B = batch["y"].shape[0]
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=B)
        # weighted by tokens, so the epoch's value is over all tokens, not a mean of batches
        self.log("val/token_accuracy", token_acc, on_step=False, on_epoch=True, batch_size=tokens)
        self.log("val/exact_match", seq_acc, on_step=False, on_epoch=True, batch_size=B)

    def on_test_epoch_start(self) -> None:
        self._reset()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        out = generate(self.net, batch["x"], batch["x_len"], max_length=batch["y"].shape[1] + 5)
        self._decoded.append(
            (out.tokens.cpu().numpy(), batch["y"].cpu().numpy(), batch["y_len"].cpu().numpy())
        )

    def on_test_epoch_end(self) -> None:
        for key, value in decoded_metrics(self._decoded).items():
            self.log(f"test/{key}", value)


def _scored(batch: Batch) -> torch.Tensor:
    """The positions a language model is scored on (B, T): before `y_len`, and not PAD."""
    y = batch["y"]
    return mask(batch["y_len"], y.shape[1]) & (y != PAD)


class LanguageModel(FamilyModule):
    """Per-step token prediction: logits (B, T, V) for `x` (B, T), scored against `y` (B, T).

    For character-level language modelling `y` is `x` shifted by one (predict x(t+1) from
    x(1..t)); for the copy task it is the per-step target. Positions at or past `y_len` are
    excluded. Logs `train/loss`, `val/loss` (nats per token) and, over all the epoch's tokens,
    `{val,test}/cross_entropy` (nats), `/bits_per_char`, `/perplexity` and `/accuracy`
    (`seqmodels.metrics.language_model_metrics`).
    """

    family = "lm"

    def forward(self, x: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, x_len=x_len)

    def _scores(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (B, T, V), nats (B, T), the mask of scored positions (B, T))."""
        logits = self(batch["x"], batch.get("x_len"))
        nats = F.cross_entropy(logits.transpose(1, 2), batch["y"], reduction="none")
        return logits, nats, _scored(batch)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, int, int]:
        """The one step of validation and test: (mean nats, right, tokens)."""
        logits, nats, valid = self._scores(batch)
        tokens = int(valid.sum())
        right = int(((logits.argmax(-1) == batch["y"]) & valid).sum())
        return (nats * valid).sum() / max(tokens, 1), right, tokens

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, Weight]:
        # The token count stays a tensor: reading it would wait for the GPU at every step.
        _, nats, valid = self._scores(batch)
        tokens = valid.sum()
        return (nats * valid).sum() / tokens.clamp(min=1), tokens

    def chunk_loss(self, batch: Batch) -> tuple[ChunkLoss, Weight]:
        y = batch["y"]  # (B, T)
        valid = _scored(batch)
        tokens = valid.sum()

        def loss(logits: torch.Tensor, window: slice) -> torch.Tensor:  # logits (B, k, V)
            nats = F.cross_entropy(logits.transpose(1, 2), y[:, window], reduction="none")
            return (nats * valid[:, window]).sum() / tokens.clamp(min=1)  # (B, k) summed

        return loss, tokens

    def _reset(self) -> None:
        # Summed over the epoch: perplexity is exp of the mean nats, which a mean of batches is not.
        self._nats, self._right, self._tokens = 0.0, 0, 0

    def _accumulate(self, batch: Batch, split: str) -> None:
        loss, right, tokens = self.model_step(batch)
        if split == "val":
            self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=tokens)
        self._nats += float(loss) * tokens
        self._right += right
        self._tokens += tokens

    def _finish(self, split: str) -> None:
        for key, value in language_model_metrics(self._nats, self._right, self._tokens).items():
            self.log(f"{split}/{key}", value)

    def on_validation_epoch_start(self) -> None:
        self._reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._accumulate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_start(self) -> None:
        self._reset()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._accumulate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._finish("test")


FAMILIES: dict[str, type[FamilyModule]] = {
    module.family: module
    for module in (SequenceRegression, SequenceClassification, Seq2Seq, LanguageModel)
}

__all__ = [
    "FAMILIES",
    "LanguageModel",
    "Seq2Seq",
    "SequenceClassification",
    "SequenceRegression",
]
