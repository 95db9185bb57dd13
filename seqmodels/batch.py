"""The batch contract between DataModules and LightningModules.

A batch is a dict of tensors, batch-first:

| key | shape and dtype | meaning |
|---|---|---|
| `x` | (B, T, F) float32, or (B, T) int64 token ids | the input sequence, padded to T |
| `x_len` | (B,) int64 | true input lengths; equal to T for fixed-length tasks |
| `y` | see below | the target |
| `y_len` | (B,) int64, sequence targets only | true target lengths, the EOS included |
| `x_parent` | (B, T) int64, tree tasks only | each token's parent position; -1: root, padding |

`y` is (B, O) float32 for regression, (B,) int64 for classification, and (B, U) int64 token
ids, padded with PAD, for sequence targets.

Token ids follow one vocabulary convention, so padding and generation need no lookups.
"""

from __future__ import annotations

import torch

from seqmodels.tokens import BOS, EOS, FIRST_SYMBOL, PAD

__all__ = ["BOS", "EOS", "FIRST_SYMBOL", "PAD", "Batch", "mask"]

Batch = dict[str, torch.Tensor]


def mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """True where a position holds data: (B,) lengths -> (B, max_len) bool."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
