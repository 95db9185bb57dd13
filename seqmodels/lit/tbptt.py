"""Truncated back-propagation through time (Deep Learning 10.2.2) for a LightningModule, with
Omega (10.11.2) added chunk by chunk when it is on."""

from __future__ import annotations

from collections.abc import Callable

import torch

from seqmodels.batch import Batch
from seqmodels.lit.switches import recording
from seqmodels.models.network import Network
from seqmodels.training import information_flow_penalty, truncated_bptt

ChunkLoss = Callable[[torch.Tensor, slice], torch.Tensor]  # (outputs of a chunk, its steps) -> loss


def truncated_backward(
    net: Network,
    batch: Batch,
    loss_fn: ChunkLoss,
    truncation: int,
    info_flow: float,
    backward: Callable[[torch.Tensor], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated BPTT's gradients of one batch, accumulated in `.grad`.

    The chunks of `truncation` steps run `net.run` (the architectures of
    `seqmodels.config.TBPTT_ARCHITECTURES` run from a state, as `Recurrent.run` does) from
    the previous chunk's detached state (`seqmodels.training.truncated_bptt`), so the forward
    pass and the loss are those of the whole sequence; only the gradient stops at the chunk
    boundaries.

    Args:
        net: the network, whose `run(x chunk, state) -> (outputs, state)` carries the state.
        batch: its `x` (B, T, ...) is cut into chunks.
        loss_fn: a chunk's loss, normalised so that the chunks' losses add up to the batch's.
        truncation: steps per chunk, >= 1.
        info_flow: Omega's weight in each chunk's loss; 0 for none.
        backward: how to back-propagate a chunk's loss (a module's `manual_backward`).
    Returns:
        (task loss, Omega summed over the chunks), detached.
    """
    task, omegas = [], []
    with recording(net, info_flow) as calls:

        def penalized(out: torch.Tensor, window: slice) -> torch.Tensor:
            loss = loss_fn(out, window)
            task.append(loss.detach())
            if not info_flow:
                return loss
            omega = information_flow_penalty(calls[-1], loss)  # this chunk's states
            omegas.append(omega.detach())
            return loss + info_flow * omega

        truncated_bptt(net.run, batch["x"], penalized, truncation, backward)
    zero = batch["x"].new_zeros((), dtype=torch.float32)
    return torch.stack(task).sum(), sum(omegas, zero)


__all__ = ["ChunkLoss", "truncated_backward"]
