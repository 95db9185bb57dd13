"""Training techniques of Deep Learning 10.2.2 and 10.11: truncated BPTT and the
information-flow regularizer, and the step-by-step run that exposes dL/dh(t).

Gradient clipping (10.11.1) is the LightningModules' own (`seqmodels.lit`, `grad_clip` and
`grad_clip_algorithm`): they step their optimizer themselves, so the Trainer's
`gradient_clip_val` does not apply to them, and they clip with Lightning's `clip_gradients`.

Which networks each technique fits, by the names a spec uses (`TBPTT_ARCHITECTURES`, ...,
declared in `seqmodels.config`): the LightningModules of `seqmodels.lit` check the networks
themselves, the spec checks the names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from seqmodels.config import (  # which networks each technique fits, declared without torch
    INFO_FLOW_ARCHITECTURES,
    INFO_FLOW_FIXED_CELLS,
    TBPTT_ARCHITECTURES,
    TBPTT_FAMILIES,
)
from seqmodels.models.recurrences import (
    Recurrence,
    RecurrentState,
    TorchRecurrence,
    Unrolled,
    detach_state,
)

StepFn = Callable[
    [torch.Tensor, RecurrentState | None], tuple[torch.Tensor, RecurrentState]
]  # (x chunk, state) -> (outputs, state), e.g. `Recurrent.run`


def truncated_bptt(
    run: StepFn,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, slice], torch.Tensor],
    truncation: int,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
) -> torch.Tensor:
    """Truncated back-propagation through time (10.2.2), accumulating gradients in `.grad`.

    The sequence is cut into chunks of `truncation` steps. The forward pass carries the state
    across chunks, but `detach_state` cuts the graph at each boundary, so each chunk's backward
    pass stops there and memory is O(truncation) instead of O(tau). With truncation >= T it is
    full BPTT.

    Args:
        run: `(x chunk (B, k, ...), state) -> (outputs (B, k, ...), state)`.
        x: the whole input, (B, T, ...).
        loss_fn: `(outputs of a chunk, its time slice) -> summed loss of that chunk`; the sum
            over chunks is the full loss, so the gradients add up to the full gradient's
            truncated version.
        truncation: steps per chunk, >= 1.
        backward: how to back-propagate a chunk's loss; a LightningModule under manual
            optimization passes its `manual_backward`.
    Returns:
        The total loss, detached.
    """
    if truncation < 1:
        raise ValueError("truncation must be >= 1")
    state: RecurrentState | None = None
    total = torch.zeros((), device=x.device)  # x may hold token ids: not x's dtype
    for start in range(0, x.shape[1], truncation):
        window = slice(start, start + truncation)
        out, state = run(x[:, window], state)
        loss = loss_fn(out, window)
        backward(loss)
        total = total + loss.detach()
        state = detach_state(state)  # the next chunk's gradients stop here
    return total


def steppable(recurrence: Recurrence) -> bool:
    """Whether `run_stepwise` can run `recurrence`: unidirectional, torch's or cell by cell."""
    return isinstance(recurrence, (TorchRecurrence, Unrolled)) and not recurrence.bidirectional


def run_stepwise(
    recurrence: Recurrence, x: torch.Tensor, state: RecurrentState | None = None
) -> tuple[torch.Tensor, RecurrentState, list[torch.Tensor]]:
    """`recurrence.run`, one time step at a time, with every h(t) a node the next step reads.

    `Recurrence.run` returns h(1..tau) stacked, and a stacked tensor's slices feed nothing: each
    step reads the recurrence's own state. Here step t+1 reads the very tensor h(t) returned,
    so `autograd.grad(loss, hs)` is the whole gradient of back-propagation through time (eqs
    10.20-10.21: what o(t) sends back plus what flows back from h(t+1)), and
    `autograd.grad(hs[t], hs[t-1])` goes through the Jacobian dh(t)/dh(t-1) that Omega needs.
    With several layers, h(t) is the top layer's.

    Args:
        recurrence: unidirectional, `TorchRecurrence` or `Unrolled` (see `steppable`).
        x: (B, T, F).
        state: where to start, as `run` takes it (None: zeros).
    Returns:
        h (B, T, H), the stacked hs; the final state, as `run` returns it; hs, T tensors (B, H).
    """
    if not steppable(recurrence):
        raise TypeError(f"cannot run {type(recurrence).__name__} step by step")
    hs = []
    # cuDNN's RNN has no double backward, which Omega's create_graph needs; one step at a
    # time, torch's own kernels lose little.
    with torch.backends.cudnn.flags(enabled=False):
        for t in range(x.shape[1]):
            _, state = recurrence._run(x[:, t : t + 1], state, None)  # no taps: `run` has them
            h, state = _expose_top(state)
            hs.append(h)
    return torch.stack(hs, dim=1), state, hs  # (B, T, H)


def _expose_top(state: RecurrentState) -> tuple[torch.Tensor, RecurrentState]:
    """The top layer's h(t), (B, H), and a state that reads it, so h(t) is in the next step."""
    if isinstance(state, list):  # Unrolled: one cell state per layer, state[-1][0] is h(t)
        return state[-1][0], state
    if isinstance(state, tuple):  # torch's LSTM: (h (L, B, H), c (L, B, H))
        h, rebuilt = _expose_top(state[0])
        return h, (rebuilt, *state[1:])
    top = state[-1]  # (B, H), a view of torch's final h (L, B, H)
    return top, torch.cat([state[:-1], top[None]])  # (L, B, H), its last layer read from `top`


@contextmanager
def recording_states(recurrence: Recurrence) -> Iterator[list[list[torch.Tensor]]]:
    """Within the block, `recurrence.run` goes step by step (`run_stepwise`); yields a list to
    which each call appends its states h(1..T).

    The architectures call `recurrence.run` (or its `forward`, which calls `run`), so their own
    forward passes are unchanged; the instance attribute shadows the method for the block only.
    """
    if not steppable(recurrence):
        raise TypeError(f"cannot record {type(recurrence).__name__} step by step")
    calls: list[list[torch.Tensor]] = []

    def run(
        x: torch.Tensor, state: RecurrentState | None = None, x_len: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        # x_len is ignored as `Recurrence.run` ignores it: causal states never see the padding
        out, final, hs = run_stepwise(recurrence, x, state)
        calls.append(hs)
        for tap in recurrence.taps:
            tap(out)
        return out, final

    recurrence.run = run  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del recurrence.run


def information_flow_penalty(hs: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    """Pascanu et al.'s regularizer Omega, Deep Learning 10.11.2:

        Omega = sum_t ( ||(dL/dh(t)) dh(t)/dh(t-1)|| / ||dL/dh(t)|| - 1 )^2

    It asks the back-propagated gradient to keep its norm from step to step.

    Args:
        hs: the states h(1..tau), each (B, H), computed step by step so that h(t) is a function
            of h(t-1) in the graph (e.g. collected from a `StepCell` loop, or by
            `recording_states`), all inside `loss`'s graph. A stacked (B, T, H) tensor would
            not do: its slices do not depend on each other.
        loss: the task loss.
    Returns:
        Omega, a scalar to add, weighted, to the loss. As in the paper, dL/dh(t) is held
        constant; only the Jacobians dh(t)/dh(t-1) carry Omega's gradient.
    """
    if not hs or not hs[0].requires_grad:  # nothing trainable shapes the states
        return loss.new_zeros(())
    grads = torch.autograd.grad(loss, hs, retain_graph=True, allow_unused=True)
    terms = []
    for t in range(1, len(hs)):
        g = grads[t]
        if g is None:
            continue
        g = g.detach()
        (back,) = torch.autograd.grad(hs[t], hs[t - 1], g, retain_graph=True, create_graph=True)
        ratio = back.norm(dim=-1) / g.norm(dim=-1).clamp_min(1e-12)  # (B,)
        terms.append((ratio - 1) ** 2)
    if not terms:
        return loss.new_zeros(())
    return torch.stack(terms, 1).sum(1).mean()


__all__ = [
    "INFO_FLOW_ARCHITECTURES",
    "INFO_FLOW_FIXED_CELLS",
    "TBPTT_ARCHITECTURES",
    "TBPTT_FAMILIES",
    "detach_state",
    "information_flow_penalty",
    "recording_states",
    "run_stepwise",
    "steppable",
    "truncated_bptt",
]
