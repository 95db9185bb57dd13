"""Diagnostics of long-term dependencies (Deep Learning 10.7) as a Lightning callback.

Two pictures of the same problem. Eqs 10.36-10.39: `h(t) = Q^T Lambda^t Q h(0)`, so the recurrent
matrix's spectral radius (largest |eigenvalue|) and largest singular value say whether signals
and gradients shrink or grow over many steps. And the gradient itself: the norm of dL/dh(t)
against the time lag tau - t shows it vanishing (or exploding) as it flows back.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from seqmodels.batch import Batch
from seqmodels.models.cells import GRU, LSTM, EchoState, Elman, Leaky, SkipThroughTime, StepCell
from seqmodels.models.recurrences import Recurrence, TorchRecurrence, Unrolled


def recurrent_matrix(recurrence: nn.Module) -> torch.Tensor | None:
    """The first layer's hidden-to-hidden matrix W (H, H), or None when it has none.

    For gated cells it is the block that feeds the cell's candidate input (the LSTM's g-block,
    the GRU's candidate), the path that carries the state's content from step to step.
    """
    if isinstance(recurrence, TorchRecurrence):
        W = recurrence.rnn.weight_hh_l0  # (kH, H)
        H = recurrence.hidden_size
        if recurrence.rnn.mode in ("LSTM", "GRU"):
            return W[2 * H : 3 * H]  # torch's gate order: LSTM (i, f, g, o), GRU (r, z, n)
        return W
    if isinstance(recurrence, Unrolled):
        return cell_matrix(recurrence.layers[0][0])
    return None


def cell_matrix(cell: StepCell) -> torch.Tensor | None:
    """A step cell's hidden-to-hidden matrix, as in `recurrent_matrix`."""
    H = cell.hidden_size
    if isinstance(cell, EchoState):
        return cell.W
    if isinstance(cell, LSTM):
        return cell.W.weight[2 * H : 3 * H]
    if isinstance(cell, (Elman, Leaky, SkipThroughTime, GRU)):
        return cell.W.weight
    inner = getattr(cell, "inner", None)  # a wrapping cell, e.g. a deep transition
    return cell_matrix(inner) if isinstance(inner, StepCell) else None


def find_recurrence(net: nn.Module) -> Recurrence | None:
    """The first recurrence inside `net` (for an encoder-decoder: the encoder's)."""
    for module in net.modules():
        if isinstance(module, Recurrence) and recurrent_matrix(module) is not None:
            return module
    return None


class RecurrenceDiagnostics(L.Callback):
    """Logs, every `every_n_steps` training steps, through `LightningModule.log`:

    - `diag/spectral_radius` and `diag/max_singular_value` of the recurrent matrix W;
    - `diag/grad_h_lag_<k>`: ||dL/dh(t)|| averaged over the batch, at t = tau - k for each lag
      k in `lags` (0 is the last step), and `diag/grad_h_ratio`: the farthest lag's norm over
      lag 0's, below 1 when gradients vanish and above when they explode.

    The gradient is taken on the current training batch with `torch.autograd.grad` on the
    recurrence's output, so the parameters' `.grad` and the optimizer are left alone. It uses
    the module's `model_step(batch)`, whose first return value must be the loss.
    """

    def __init__(self, every_n_steps: int = 50, lags: tuple[int, ...] = (0, 1, 2, 4, 8, 16)):
        super().__init__()
        self.every_n_steps = every_n_steps
        self.lags = lags

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
        recurrence = find_recurrence(pl_module)
        if recurrence is None:
            return
        for key, value in self.matrix_metrics(recurrence).items():
            pl_module.log(key, value, on_step=True, on_epoch=False)
        for key, value in self.gradient_metrics(pl_module, recurrence, batch).items():
            pl_module.log(key, value, on_step=True, on_epoch=False)

    @staticmethod
    @torch.no_grad()
    def matrix_metrics(recurrence: Recurrence) -> dict[str, float]:
        W = recurrence_matrix_or_raise(recurrence).detach().float()
        return {
            "diag/spectral_radius": float(torch.linalg.eigvals(W).abs().max()),
            "diag/max_singular_value": float(torch.linalg.matrix_norm(W, ord=2)),
        }

    def gradient_metrics(
        self, pl_module: L.LightningModule, recurrence: Recurrence, batch: Batch
    ) -> dict[str, float]:
        captured: list[torch.Tensor] = []

        def keep(h: torch.Tensor) -> None:
            if not captured:  # the first call reads the whole sequence; a decoder may call again
                captured.append(h)

        recurrence.taps.append(keep)
        try:
            with torch.enable_grad():
                loss = pl_module.model_step(batch)[0]
                if not captured or not captured[0].requires_grad:
                    return {}
                (grad,) = torch.autograd.grad(loss, captured[0], allow_unused=True)
        finally:
            recurrence.taps.remove(keep)
        if grad is None:
            return {}
        norms = grad.norm(dim=-1).mean(0)  # (T,): ||dL/dh(t)||, averaged over the batch
        T = norms.shape[0]
        metrics = {f"diag/grad_h_lag_{k}": float(norms[T - 1 - k]) for k in self.lags if k < T}
        far = max(k for k in self.lags if k < T)
        metrics["diag/grad_h_ratio"] = float(norms[T - 1 - far] / norms[-1].clamp_min(1e-30))
        return metrics


def recurrence_matrix_or_raise(recurrence: Recurrence) -> torch.Tensor:
    W = recurrent_matrix(recurrence)
    if W is None:
        raise TypeError(f"{type(recurrence).__name__} has no recurrent matrix")
    return W


__all__ = ["RecurrenceDiagnostics", "cell_matrix", "find_recurrence", "recurrent_matrix"]
