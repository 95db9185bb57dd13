"""LightningModules per task family. Each receives its network; it does not build it.

Every module consumes the dict batches of `seqmodels.batch` and has one `model_step` shared by
train, validation and test (where the rest of it would wait for the GPU, training computes only
its loss part); metric keys are namespaced (`train/loss`, `val/acc`, `test/bpc`).

| module | network | y | test metrics |
|---|---|---|---|
| SequenceRegression | x -> (B, O) or (B, T, O) | float | mse, mae |
| SequenceClassification | x -> (B, C) logits | (B,) int64 | accuracy, cross_entropy |
| Seq2Seq | (x, x_len, y) -> DecoderOutput | (B, U) ids | exact_match, token_accuracy, per, wer |
| LanguageModel | ids (B, T) -> (B, T, V) | (B, T) ids | cross_entropy, bits_per_char, ... |

The test metric names are the tasks' own (`Task.metrics`), so a study reads its headline metric
as `test/<Task.metric>` whatever the family.

Variable-length batches: a network whose `forward` takes an `x_len` argument receives
`batch["x_len"]`, so it can read each sequence's own end (`seqmodels.models` architectures do);
any other network gets `x` alone, and sees the padding. Likewise a network that takes `x_parent`
receives the batch's trees, where the batch has them (SequenceClassification). On a GPU,
`NpzDataModule` leaves both on the CPU (`seqmodels.batch.HOST_KEYS`).

Training switches (`_Module`): truncated BPTT (10.2.2, `tbptt`) for the families with a target
at every step, the information-flow regularizer Omega (10.11.2, `info_flow`) and gradient
clipping by norm or by value (10.11.1, `grad_clip`).

The modules step their optimizer themselves (Lightning's manual optimization), truncated or
not: one path for both, and less of Lightning's loop per step. Its automatic optimization
wraps each step in a closure, a result object and more hook dispatches: for a small LSTM the
Trainer added 1744 Python calls per step to a bare loop's 901 that way, 1461 this way
(benchmarks/framework_tax.py counts them). So the Trainer's `gradient_clip_val` does not apply
(Lightning refuses it under manual optimization): the module's `grad_clip` clips.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from seqmodels.batch import EOS, PAD, Batch, mask
from seqmodels.diagnostics import find_recurrence
from seqmodels.errors import ConfigError
from seqmodels.generate import generate
from seqmodels.models import takes_argument
from seqmodels.models.seq2seq import DecoderOutput
from seqmodels.models.sequence import OutputRecurrent, Recurrent
from seqmodels.tasks.common import sequence_metrics
from seqmodels.tasks.g2p import error_rates
from seqmodels.training import (
    information_flow_penalty,
    recording_states,
    steppable,
    truncated_bptt,
)

ChunkLoss = Callable[[torch.Tensor, slice], torch.Tensor]  # (outputs of a chunk, its steps) -> loss
Weight = int | torch.Tensor  # a batch's weight in an epoch's mean; a tensor where reading it waits


def _inputs(net: nn.Module, batch: Batch, keys: tuple[str, ...] = ("x_len",)) -> Batch:
    """The batch's `keys` that `net.forward` takes, as keyword arguments beyond `x`."""
    return {key: batch[key] for key in keys if key in batch and takes_argument(net, key)}


def _call(net: nn.Module, x: torch.Tensor, **given: torch.Tensor | None) -> torch.Tensor:
    """`net(x, ...)` with only the keyword arguments that were given (not None)."""
    return net(x, **{key: value for key, value in given.items() if value is not None})


class _Module(L.LightningModule):
    """What every family shares: the network, Adam with weight decay, and the training switches
    of Deep Learning 10.2.2 and 10.11.

    Each family supplies `training_loss(batch) -> (loss, weight)`, the loss of one training
    batch and how much it weighs in the epoch's mean (sequences, or tokens), and, where it has a
    target at every step (`per_step`), `chunk_loss(batch)` for truncated BPTT.

    Args:
        net: the network.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        tbptt: truncated BPTT's length k (10.2.2), None for full BPTT. It needs a `Recurrent`
            network (unidirectional) and a family with per-step targets: each batch is cut into
            chunks of k steps that carry the detached state forward and accumulate their
            gradients, then one optimizer step.
        info_flow: the weight of Pascanu's regularizer Omega (10.11.2) in the training loss,
            0 for none. It needs a unidirectional first recurrence; logged as `train/info_flow`.
        grad_clip: clip the gradient to this before each step (10.11.1), None for no clipping.
        grad_clip_algorithm: "norm" (the whole gradient's norm) or "value" (each element).
    Raises:
        ConfigError: a switch the network or the family cannot honour, naming the switch.
    """

    per_step: ClassVar[bool] = False  # a target at every step, so truncated BPTT can apply

    def __init__(
        self,
        net: nn.Module,
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
        self._check_switches()
        self.automatic_optimization = False  # `training_step` steps (see the module's doc)
        self._train_sums: dict[str, tuple[torch.Tensor, Weight]] = {}  # name -> (sum, weight)
        self._reset()

    def _check_switches(self) -> None:
        hp = self.hparams
        name = type(self).__name__
        if hp.tbptt is not None:
            if hp.tbptt < 1:
                raise ConfigError("tbptt", "must be >= 1")
            if not self.per_step:
                raise ConfigError("tbptt", f"{name} has no target at every step to truncate")
            if not isinstance(self.net, Recurrent) or self.net.recurrence.bidirectional:
                raise ConfigError(
                    "tbptt", "needs the unidirectional per-step 'recurrent' architecture"
                )
        if hp.info_flow < 0:
            raise ConfigError("info_flow", "must be >= 0")
        if hp.info_flow:
            recurrence = find_recurrence(self.net)
            if recurrence is None or not steppable(recurrence):
                raise ConfigError(
                    "info_flow", "needs a unidirectional recurrence that reads the input"
                )
            if not any(p.requires_grad for p in recurrence.parameters()):
                raise ConfigError("info_flow", "the recurrence has no trained weights to act on")

    def _reset(self) -> None:
        """Clear what a family accumulates over an epoch (nothing by default)."""

    # The training metrics are epoch means, weighted by each batch's weight. They are summed
    # here and logged once, at the epoch's last batch: `self.log` costs about 0.7 ms a call on
    # CPU (Lightning moves each logged value's state to the device), which was a tenth of a
    # small LSTM's step (benchmarks/framework_tax.py). The last batch, not `on_train_epoch_end`:
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Continue the step count of a checkpoint saved under automatic optimization.

        Lightning counts optimizer steps per mode, and `global_step` reads the current mode's
        count: a trial saved before these modules stepped themselves would resume at step 0,
        and the clock of scheduled sampling with it.
        """
        loops = checkpoint.get("loops", {}).get("fit_loop", {})
        manual = loops.get("epoch_loop.manual_optimization.optim_step_progress")
        automatic = loops.get("epoch_loop.automatic_optimization.optim_progress", {})
        steps = automatic.get("optimizer", {}).get("step")
        if manual and steps and not manual["total"]["completed"]:
            loops["epoch_loop.manual_optimization.optim_step_progress"] = copy.deepcopy(steps)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, Weight]:
        """(the task loss of one training batch, its weight in the epoch's mean)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def chunk_loss(self, batch: Batch) -> tuple[ChunkLoss, Weight]:
        """For truncated BPTT: the loss of a chunk's outputs, normalised so that the chunks'
        losses add up to `training_loss`, and the batch's weight in the epoch's mean."""
        raise NotImplementedError  # pragma: no cover - `_check_switches` stops it first

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
        with self._recording() as calls:
            loss, weight = self.training_loss(batch)
        if not self.hparams.info_flow:
            self.manual_backward(loss)
            return loss.detach(), loss.new_zeros(()), weight
        omega = information_flow_penalty(calls[0], loss)
        self.manual_backward(loss + self.hparams.info_flow * omega)
        return loss.detach(), omega.detach(), weight

    def _recording(self) -> AbstractContextManager[list[list[torch.Tensor]]]:
        """The states h(1..T) of each call of the first recurrence, when Omega needs them."""
        if not self.hparams.info_flow:
            return nullcontext([])
        recurrence = find_recurrence(self.net)  # found each time: an attribute would register it
        return nullcontext([]) if recurrence is None else recording_states(recurrence)

    def truncated_backward(
        self, batch: Batch, backward: Callable[[torch.Tensor], None]
    ) -> tuple[torch.Tensor, torch.Tensor, Weight]:
        """Truncated BPTT's gradients of one batch (10.2.2), accumulated in `.grad`.

        The chunks of `tbptt` steps run `Recurrent.run` from the previous chunk's detached
        state (`seqmodels.training.truncated_bptt`), so the forward pass and the loss are those
        of the whole sequence; only the gradient stops at the chunk boundaries.

        Returns:
            (task loss, Omega summed over the chunks, the batch's weight), detached.
        """
        loss_fn, weight = self.chunk_loss(batch)
        task, omegas = [], []
        with self._recording() as calls:

            def penalized(out: torch.Tensor, window: slice) -> torch.Tensor:
                loss = loss_fn(out, window)
                task.append(loss.detach())
                if not self.hparams.info_flow:
                    return loss
                omega = information_flow_penalty(calls[-1], loss)  # this chunk's states
                omegas.append(omega.detach())
                return loss + self.hparams.info_flow * omega

            truncated_bptt(self.net.run, batch["x"], penalized, self.hparams.tbptt, backward)
        zero = batch["x"].new_zeros((), dtype=torch.float32)
        return torch.stack(task).sum(), sum(omegas, zero), weight


class SequenceRegression(_Module):
    """Trains any network that maps (B, T, F) to (B, O) under mean squared error.

    Logs `train/loss`, `val/loss` (both MSE) and `test/mse`, `test/mae`. Batches follow
    `seqmodels.batch`: `x` (B, T, F), `x_len` (passed on to a net that takes it) and `y` (B, O),
    or (B, T, O) for a network with an output at every step, which truncated BPTT can train.
    """

    per_step = True  # where the targets are (B, T, O); `chunk_loss` checks

    def forward(self, x: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
        return _call(self.net, x, x_len=x_len)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The one step shared by train, validation and test."""
        if isinstance(self.net, OutputRecurrent):
            # teacher forcing needs y(t-1); in evaluation the network ignores y and runs free
            pred = self.net(batch["x"], batch["y"])
        else:
            pred = self(batch["x"], **_inputs(self.net, batch))
        return F.mse_loss(pred, batch["y"]), pred, batch["y"]

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if isinstance(self.net, OutputRecurrent):  # scheduled sampling's clock
            total = max(1, self.trainer.estimated_stepping_batches)
            self.net.progress = self.global_step / total

    def training_loss(self, batch: Batch) -> tuple[torch.Tensor, int]:
        return self.model_step(batch)[0], batch["x"].shape[0]

    def chunk_loss(self, batch: Batch) -> tuple[ChunkLoss, int]:
        x, y = batch["x"], batch["y"]  # (B, T, F), (B, T, O)
        if y.dim() != 3 or y.shape[1] != x.shape[1]:
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
        self.log("test/mae", (pred - y).abs().mean(), on_step=False, on_epoch=True)


class SequenceClassification(_Module):
    """Trains a network that maps x to class logits (B, C) under cross-entropy.

    Logs `train/loss`, `val/loss`, `{val,test}/accuracy`, `{val,test}/cross_entropy`.
    Batches: `x`, `y` (B,) int64 class ids, and `x_len` and, for trees, `x_parent`, each
    passed on to a net that takes it.
    """

    def forward(
        self,
        x: torch.Tensor,
        x_len: torch.Tensor | None = None,
        x_parent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return _call(self.net, x, x_len=x_len, x_parent=x_parent)

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The one step shared by train, validation and test: (loss, accuracy)."""
        logits = self(batch["x"], **_inputs(self.net, batch, ("x_len", "x_parent")))  # (B, C)
        loss = F.cross_entropy(logits, batch["y"])
        return loss, (logits.argmax(-1) == batch["y"]).float().mean()

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


class Seq2Seq(_Module):
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

    def _reset(self) -> None:
        self._decoded: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def forward(self, batch: Batch) -> DecoderOutput:
        return self.net(batch["x"], batch["x_len"], batch["y"])

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
        correct = (out.logits.argmax(-1) == batch["y"]) | ~valid  # (B, U)
        token_acc = (correct & valid).sum() / valid.sum()
        seq_acc = correct.all(dim=1).float().mean()
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
        width = max(max(p.shape[1], y.shape[1]) for p, y, _ in self._decoded)
        pred = np.concatenate([_widen(p, width) for p, _, _ in self._decoded])
        y = np.concatenate([_widen(t, width) for _, t, _ in self._decoded])
        y_len = np.concatenate([n for _, _, n in self._decoded])
        metrics = sequence_metrics(pred, y, y_len)
        # Edit distances over the symbols alone: EOS and padding are not phonemes or letters.
        symbols = [_symbols(row) for row in pred]
        targets = [_symbols(row[:n]) for row, n in zip(y, y_len, strict=True)]
        metrics |= error_rates(symbols, targets)
        for key, value in metrics.items():
            self.log(f"test/{key}", value)


def _widen(ids: np.ndarray, width: int) -> np.ndarray:
    out = np.full((ids.shape[0], width), PAD, dtype=np.int64)
    out[:, : ids.shape[1]] = ids
    return out


def _symbols(ids: np.ndarray) -> list[int]:
    """The ids before the first EOS, without padding."""
    out = []
    for token in ids.tolist():
        if token == EOS:
            break
        if token != PAD:
            out.append(token)
    return out


def _scored(batch: Batch) -> torch.Tensor:
    """The positions a language model is scored on (B, T): before `y_len`, and not PAD."""
    y = batch["y"]
    return mask(batch["y_len"], y.shape[1]) & (y != PAD)


class LanguageModel(_Module):
    """Per-step token prediction: logits (B, T, V) for `x` (B, T), scored against `y` (B, T).

    For character-level language modelling `y` is `x` shifted by one (predict x(t+1) from
    x(1..t)); for the copy task it is the per-step target. Positions at or past `y_len` are
    excluded. Logs `train/loss`, `val/loss` (nats per token) and, over all the epoch's tokens,
    `{val,test}/cross_entropy` (nats), `/bits_per_char` (nats / ln 2), `/perplexity` (e to the
    mean nats) and `/accuracy` (argmax right).
    """

    per_step = True

    def forward(self, x: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
        return _call(self.net, x, x_len=x_len)

    def _scores(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (B, T, V), nats (B, T), the mask of scored positions (B, T))."""
        logits = self(batch["x"], **_inputs(self.net, batch))
        y = batch["y"]
        nats = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
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
        nats = self._nats / max(self._tokens, 1)
        self.log(f"{split}/cross_entropy", nats)
        self.log(f"{split}/bits_per_char", nats / math.log(2))
        self.log(f"{split}/perplexity", math.exp(nats))
        self.log(f"{split}/accuracy", self._right / max(self._tokens, 1))

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


FAMILIES: dict[str, type[L.LightningModule]] = {
    "regression": SequenceRegression,
    "classification": SequenceClassification,
    "seq2seq": Seq2Seq,
    "lm": LanguageModel,
}
