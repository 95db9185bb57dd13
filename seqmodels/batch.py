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

`HOST_KEYS` (`x_len`, `x_parent`) describe the batch's shape: torch's packing wants lengths on
the CPU, and trees are built in Python. `NpzDataModule` leaves them on the CPU when Lightning
moves a batch to a GPU, so that reading them does not wait for the GPU; a network
copies them to the device itself where it computes with them (`.to(device, non_blocking=True)`,
which never waits). Networks accept them on either device.

Token ids follow one vocabulary convention, so padding and generation need no lookups.
"""

from __future__ import annotations

import torch

from seqmodels.tokens import BOS, EOS, FIRST_SYMBOL, PAD

__all__ = ["BOS", "EOS", "FIRST_SYMBOL", "HOST_KEYS", "PAD", "Batch", "mask"]

Batch = dict[str, torch.Tensor]
HOST_KEYS = ("x_len", "x_parent")  # stay on the CPU when a batch moves to a GPU


def mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """True where a position holds data: (B,) lengths -> (B, max_len) bool."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
