"""Diagnostics of long-term dependencies (Deep Learning 10.7) as a Lightning callback.

Two pictures of the same problem. Eqs 10.36-10.39: `h(t) = Q^T Lambda^t Q h(0)`, so the recurrent
matrix's spectral radius (largest |eigenvalue|) and largest singular value say whether signals
and gradients shrink or grow over many steps. And the gradient itself: the norm of dL/dh(t)
against the time lag tau - t shows it vanishing (or exploding) as it flows back.
"""

from __future__ import annotations

import lightning as L
import torch

from seqmodels.batch import Batch
from seqmodels.models.recurrences import Recurrence, first_recurrence
from seqmodels.training import recording_states, steppable


class RecurrenceDiagnostics(L.Callback):
    """Logs, every `every_n_steps` training steps, through `LightningModule.log`:

    - `diag/spectral_radius` and `diag/max_singular_value` of the recurrent matrix W;
    - `diag/grad_h_lag_<k>`: ||dL/dh(t)|| averaged over the batch, at t = tau - k for each lag
      k in `lags` (0 is the last step), and `diag/grad_h_ratio`: the farthest lag's norm over
      lag 0's, below 1 when gradients vanish and above when they explode.

    dL/dh(t) is the whole gradient of back-propagation through time (eqs 10.20-10.21), what
    o(t) sends back plus what flows back from h(t+1): the recurrence is run step by step
    (`seqmodels.training.recording_states`) on the current training batch, and the gradient
    taken with `torch.autograd.grad`, so the parameters' `.grad`, the optimizer and the random
    number generator are left alone. It uses the module's `model_step(batch)`, whose first
    return value must be the loss. A bidirectional recurrence cannot run step by step: it
    logs the matrix's values only.

    Args:
        every_n_steps: measure on the training batches whose index is a multiple of this.
        lags: the time lags k to log.
        on_epoch: False logs each measurement at its step; True logs, at the end of each
            epoch, the mean of the epoch's measurements (what a per-epoch report reads).
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        lags: tuple[int, ...] = (0, 1, 2, 4, 8, 16),
        on_epoch: bool = False,
    ) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be >= 1")
        self.every_n_steps = every_n_steps
        self.lags = lags
        self.on_epoch = on_epoch

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: object,
        batch: Batch,
        batch_idx: int,
    ) -> None:
        if batch_idx % self.every_n_steps:
            return
        recurrence = first_recurrence(pl_module)
        if recurrence is None:
            return
        metrics = self.matrix_metrics(recurrence)
        if steppable(recurrence):
            metrics |= self.gradient_metrics(pl_module, recurrence, batch)
        for key, value in metrics.items():
            # batch_size=1: each measurement weighs the same in the epoch's mean
            pl_module.log(
                key, value, on_step=not self.on_epoch, on_epoch=self.on_epoch, batch_size=1
            )

    @staticmethod
    @torch.no_grad()
    def matrix_metrics(recurrence: Recurrence) -> dict[str, float]:
        W = recurrence.recurrent_weight
        if W is None:
            raise TypeError(f"{type(recurrence).__name__} has no recurrent weight")
        W = W.detach().float().cpu()  # (H, H), small
        return {
            "diag/spectral_radius": float(torch.linalg.eigvals(W).abs().max()),
            "diag/max_singular_value": float(torch.linalg.matrix_norm(W, ord=2)),
        }

    def gradient_metrics(
        self, pl_module: L.LightningModule, recurrence: Recurrence, batch: Batch
    ) -> dict[str, float]:
        device = pl_module.device
        devices = [device.index or 0] if device.type == "cuda" else []
        # the extra forward pass may draw random numbers (scheduled sampling): training must
        # not see them, or switching diagnostics on would change what it learns
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            with recording_states(recurrence) as calls:
                loss = pl_module.model_step(batch)[0]
            hs = calls[0] if calls else []  # the first call reads the whole sequence
            if not hs or not hs[0].requires_grad:  # e.g. a fixed reservoir on float inputs
                return {}
            grads = torch.autograd.grad(loss, hs, allow_unused=True)
        norms = torch.stack(
            [g.norm(dim=-1).mean() if g is not None else loss.new_zeros(()) for g in grads]
        )  # (T,): ||dL/dh(t)||, averaged over the batch
        T = norms.shape[0]
        metrics = {f"diag/grad_h_lag_{k}": float(norms[T - 1 - k]) for k in self.lags if k < T}
        far = max(k for k in self.lags if k < T)
        metrics["diag/grad_h_ratio"] = float(norms[T - 1 - far] / norms[-1].clamp_min(1e-30))
        return metrics


__all__ = ["RecurrenceDiagnostics"]
