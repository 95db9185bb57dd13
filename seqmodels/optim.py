"""The optimizer step of fused members (`models.fused.Members`): each member trains as it would
alone, with its own learning rate, weight decay and gradient clipping.

torch's Adam takes the step, over the stacked parameters, at a learning rate of 1; each member's
update is then scaled by its own rate. Adam is elementwise, so the members never mix, and
scaling the update (not the gradient, which Adam's normalisation would undo) is what a member's
rate does alone. Weight decay is Adam's (L2, added to the gradient), per member; clipping by norm
scales each member's gradient by its own norm, as `clip_grad_norm_` would over that member's
parameters; clipping by value clamps each member's gradient to its own bound.

A member whose loss or gradient is not finite is frozen from that step on: its gradient is
zeroed and its parameters keep their values, and the others' steps do not change (nothing in a
step mixes members).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_ adds to the norm


class MemberSteps:
    """Adam over stacked member parameters (each tensor (K, ...)), one rate, decay and clip
    per member.

    Args:
        params: the stacked parameters (`Members.stacked`).
        lr, weight_decay: each member's (K values), or one for all.
        grad_clip: each member's bound (K values, None for no clipping), or one for all.
        grad_clip_algorithm: "norm" or "value", as a single trial's.
        betas, eps: Adam's, shared.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        members: int,
        lr: float | Sequence[float] = 1e-3,
        weight_decay: float | Sequence[float] = 0.0,
        grad_clip: float | None | Sequence[float | None] = None,
        grad_clip_algorithm: Literal["norm", "value"] = "norm",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.members = members
        self.lr = self._per_member(lr)
        self.weight_decay = self._per_member(weight_decay)
        clips = grad_clip if isinstance(grad_clip, Sequence) else [grad_clip] * members
        if len(clips) != members:
            raise ValueError(f"grad_clip: {len(clips)} values for {members} members")
        self.clip = list(clips)
        self.clip_algorithm = grad_clip_algorithm
        self.alive = torch.ones(members, dtype=torch.bool)
        self.adam = torch.optim.Adam(self.params, lr=1.0, betas=betas, eps=eps)

    def _per_member(self, value: float | Sequence[float]) -> torch.Tensor:
        values = list(value) if isinstance(value, Sequence) else [value] * self.members
        if len(values) != self.members:
            raise ValueError(f"{len(values)} values for {self.members} members")
        return torch.tensor(values, dtype=torch.float64)

    def _shaped(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(K,) values as (K, 1, ...) in `like`'s dtype and device, to broadcast over a slice."""
        return values.to(like).reshape(-1, *([1] * (like.dim() - 1)))

    def step(self, losses: torch.Tensor) -> None:
        """One step, after `backward()` of the members' summed loss. `losses` (K,): each
        member's loss of this step; a member whose loss or gradient is not finite is frozen
        from now on."""
        finite = torch.isfinite(losses.detach())
        for p in self.params:  # a finite loss can still give a non-finite gradient
            if p.grad is not None:
                finite &= torch.isfinite(p.grad).flatten(1).all(dim=1)
        self.alive &= finite.cpu()
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    dead = ~self._shaped(self.alive, p.grad).bool()
                    p.grad.masked_fill_(dead, 0.0)  # NaN or not, a frozen member's is 0
            self._clip()  # the loss's gradient, as a trial clips it before its optimizer steps
            for p in self.params:
                if p.grad is not None:
                    p.grad.add_(p * self._shaped(self.weight_decay, p))  # Adam's L2 decay
            before = [p.detach().clone() for p in self.params]
            self.adam.step()
            for p, old in zip(self.params, before, strict=True):
                scale = self._shaped(self.lr, p) * self._shaped(self.alive, p)
                p.copy_(old + scale * (p - old))

    def zero_grad(self) -> None:
        self.adam.zero_grad(set_to_none=True)

    def _clip(self) -> None:
        clipped = [k for k, c in enumerate(self.clip) if c is not None]
        if not clipped:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        bounds = torch.tensor(
            [c if c is not None else torch.inf for c in self.clip], dtype=torch.float64
        )
        if self.clip_algorithm == "value":
            for g in grads:
                bound = self._shaped(bounds, g)
                g.copy_(torch.maximum(torch.minimum(g, bound), -bound))
            return
        # each member's norm over all of its parameters, as clip_grad_norm_ computes one
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
        total = torch.linalg.vector_norm(norms, dim=0)  # (K,)
        coef = torch.clamp(bounds.to(total) / (total + CLIP_EPS), max=1.0)
        for g in grads:
            g.mul_(self._shaped(coef, g))


__all__ = ["MemberSteps"]
