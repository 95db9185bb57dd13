"""Small pieces the architectures share: token inputs, length-aware reversal, MLPs."""

from __future__ import annotations

import torch
from torch import nn

from seqmodels.batch import PAD


class InputLayer(nn.Module):
    """Float features pass through; token ids (B, T) int64 go through an embedding, or, with no
    embedding, become one-hot vectors, as the book's figures draw a token input x(t).

    Args:
        input_size: features per step, or the number of token ids (the vocabulary's size).
        embedding_size: > 0: the embedding width for ids; 0: ids are one-hot, (B, T, input_size).
    """

    def __init__(self, input_size: int, embedding_size: int = 0) -> None:
        super().__init__()
        self.input_size = input_size
        self.embedding = (
            nn.Embedding(input_size, embedding_size, padding_idx=PAD) if embedding_size else None
        )
        self.output_size = embedding_size or input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(x)  # (B, T) -> (B, T, E)
        if x.is_floating_point():
            return x
        return one_hot(x, self.input_size)  # (B, T) -> (B, T, V)


def one_hot(ids: torch.Tensor, size: int) -> torch.Tensor:
    """Token ids as one-hot float vectors, PAD as the zero vector (as an embedding's padding
    row): (...) int64 -> (..., size)."""
    vectors = nn.functional.one_hot(ids, size).to(torch.get_default_dtype())
    return vectors * (ids != PAD).unsqueeze(-1)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence within its own length, leaving the padding where it is.

    (B, T, ...) -> (B, T, ...). Flipping the padded tensor instead would make a backward
    direction (or a reversed source) read PADs first whenever a sequence is shorter than T.
    """
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T, device=x.device)[None, :]  # (1, T)
    lengths = lengths.to(x.device, non_blocking=True)[:, None]  # (B, 1); see HOST_KEYS
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (B, T)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def at_lengths(h: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence's last valid step: (B, T, D) -> (B, D); the last step when lengths is None."""
    if lengths is None:
        return h[:, -1]
    rows = torch.arange(h.shape[0], device=h.device)
    return h[rows, lengths.to(h.device, non_blocking=True) - 1]


def mlp(width_in: int, width: int, layers: int) -> nn.Sequential:
    """`layers` tanh layers of `width`, the first reading `width_in`; empty when layers == 0."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(width_in if i == 0 else width, width), nn.Tanh()]
    return nn.Sequential(*modules)
