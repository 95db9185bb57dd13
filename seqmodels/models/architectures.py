"""Architectures: how a recurrence is wired to inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqmodels.errors import ConfigError
from seqmodels.models.recurrences import CELLS, Recurrence
from seqmodels.registry import Registry


@dataclass(frozen=True)
class ModelConfig:
    """What a spec's variant says about the network."""

    architecture: str = "seq2one"
    cell: str = "tanh"
    hidden_size: int = 64
    num_layers: int = 1

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError("architecture", ARCHITECTURES.unknown(self.architecture))
        if self.cell not in CELLS:
            raise ConfigError("cell", CELLS.unknown(self.cell))
        if self.hidden_size < 1:
            raise ConfigError("hidden_size", "must be >= 1")
        if self.num_layers < 1:
            raise ConfigError("num_layers", "must be >= 1")


class Architecture(nn.Module):
    """Base of every architecture: built from a recurrence and the task's sizes."""

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Architecture:
        recurrence = CELLS.get(config.cell)(input_size, config.hidden_size, config.num_layers)
        return cls(recurrence, output_size)


ARCHITECTURES: Registry[Architecture] = Registry("architecture", Architecture)


@ARCHITECTURES.register("seq2one")
class SeqToOne(Architecture):
    """Read a whole sequence, emit one output (design pattern 3, fig 10.5).

    Args:
        recurrence: maps (B, T, F) to (B, T, H).
        output_size: width of the single output.
    Shapes: `forward(x: (B, T, F)) -> (B, output_size)`.
    """

    def __init__(self, recurrence: Recurrence, output_size: int) -> None:
        super().__init__()
        self.recurrence = recurrence
        self.head = nn.Linear(recurrence.hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.recurrence(x)  # (B, T, H)
        return self.head(h[:, -1])  # (B, O): o = c + V h(tau)


def build_model(config: ModelConfig, input_size: int, output_size: int) -> Architecture:
    """Build the network a variant names."""
    return ARCHITECTURES.get(config.architecture).from_config(config, input_size, output_size)
