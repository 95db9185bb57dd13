"""Training techniques of Deep Learning 10.11 and 10.2.2: gradient clipping, truncated BPTT and
the information-flow regularizer.

Gradient clipping is also one Lightning setting: `Trainer(gradient_clip_val=v,
gradient_clip_algorithm="norm")` for clipping by norm, `"value"` for element-wise clipping.
`clip_gradients` is the same for a hand-written loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from seqmodels.models.recurrences import RecurrentState, detach_state


def clip_gradients(
    parameters: Iterable[nn.Parameter],
    max_norm: float | None = None,
    max_value: float | None = None,
) -> torch.Tensor:
    """Gradient clipping, Deep Learning 10.11.1, in place; returns the norm before clipping.

    By norm, `g <- g v / ||g||` when `||g|| > v` (the direction is kept); by value, each element
    is clipped to [-v, v] (the direction may change, the book notes both work alike). Value
    clipping is applied first when both are given.
    """
    params = [p for p in parameters if p.grad is not None]
    if max_value is not None:
        nn.utils.clip_grad_value_(params, max_value)
    if max_norm is not None:
        return nn.utils.clip_grad_norm_(params, max_norm)
    grads = [p.grad.detach().flatten() for p in params]
    return torch.cat(grads).norm() if grads else torch.tensor(0.0)


StepFn = Callable[
    [torch.Tensor, RecurrentState | None], tuple[torch.Tensor, RecurrentState]
]  # (x chunk, state) -> (outputs, state), e.g. `Recurrent.run`


def truncated_bptt(
    run: StepFn,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, slice], torch.Tensor],
    truncation: int,
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
    Returns:
        The total loss, detached.
    """
    if truncation < 1:
        raise ValueError("truncation must be >= 1")
    state: RecurrentState | None = None
    total = x.new_zeros(())
    for start in range(0, x.shape[1], truncation):
        window = slice(start, start + truncation)
        out, state = run(x[:, window], state)
        loss = loss_fn(out, window)
        loss.backward()
        total = total + loss.detach()
        state = detach_state(state)  # the next chunk's gradients stop here
    return total


def information_flow_penalty(hs: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    """Pascanu et al.'s regularizer Omega, Deep Learning 10.11.2:

        Omega = sum_t ( ||(dL/dh(t)) dh(t)/dh(t-1)|| / ||dL/dh(t)|| - 1 )^2

    It asks the back-propagated gradient to keep its norm from step to step.

    Args:
        hs: the states h(1..tau), each (B, H), computed step by step so that h(t) is a function
            of h(t-1) in the graph (e.g. collected from a `StepCell` loop), all inside `loss`'s
            graph. A stacked (B, T, H) tensor would not do: its slices do not depend on each
            other.
        loss: the task loss.
    Returns:
        Omega, a scalar to add, weighted, to the loss. As in the paper, dL/dh(t) is held
        constant; only the Jacobians dh(t)/dh(t-1) carry Omega's gradient.
    """
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


__all__ = ["clip_gradients", "detach_state", "information_flow_penalty", "truncated_bptt"]
