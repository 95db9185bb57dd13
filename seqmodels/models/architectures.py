"""Architectures: how a recurrence is wired to inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seqmodels.errors import ConfigError
from seqmodels.models.cells import CELLS
from seqmodels.models.options import CellOptions, parse_options
from seqmodels.models.recurrences import Recurrence, build_recurrence
from seqmodels.registry import Registry


@dataclass(frozen=True)
class ModelConfig:
    """What a spec's variant says about the network.

    `cell_options` are the chosen cell's own options (`seqmodels.models.cells`), e.g.
    `{cell_input: sigmoid, peepholes: true}` for the book's LSTM. A config torch's `nn.RNN`,
    `nn.LSTM` or `nn.GRU` computes exactly runs on that fast path; any other cell by cell.
    """

    architecture: str = "seq2one"
    cell: str = "tanh"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    cell_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError("architecture", ARCHITECTURES.unknown(self.architecture))
        if self.cell not in CELLS:
            raise ConfigError("cell", CELLS.unknown(self.cell))
        if self.hidden_size < 1:
            raise ConfigError("hidden_size", "must be >= 1")
        if self.num_layers < 1:
            raise ConfigError("num_layers", "must be >= 1")
        self.options()  # fail now, naming the option, rather than when a trial builds the model

    def options(self) -> CellOptions:
        """The cell's options, parsed. Raises ConfigError naming `cell_options.<option>`."""
        try:
            return parse_options(CELLS.get(self.cell).options_type, self.cell_options, self.cell)
        except ConfigError as err:
            raise ConfigError(f"cell_options.{err.field}".rstrip("."), str(err)) from None


class Architecture(nn.Module):
    """Base of every architecture: built from a recurrence and the task's sizes."""

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Architecture:
        recurrence = build_recurrence(
            config.cell,
            config.options(),
            input_size,
            config.hidden_size,
            config.num_layers,
            config.bidirectional,
        )
        return cls(recurrence, output_size)


ARCHITECTURES: Registry[Architecture] = Registry("architecture", Architecture)


@ARCHITECTURES.register("seq2one")
class SeqToOne(Architecture):
    """Read a whole sequence, emit one output (design pattern 3, fig 10.5).

    Args:
        recurrence: maps (B, T, F) to (B, T, D*H).
        output_size: width of the single output.
    Shapes: `forward(x: (B, T, F)) -> (B, output_size)`.
    """

    def __init__(self, recurrence: Recurrence, output_size: int) -> None:
        super().__init__()
        self.recurrence = recurrence
        self.head = nn.Linear(recurrence.output_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.recurrence(x)  # (B, T, D*H)
        return self.head(self.recurrence.final(h))  # (B, O): o = c + V h(tau)


def build_model(config: ModelConfig, input_size: int, output_size: int) -> Architecture:
    """Build the network a variant names."""
    return ARCHITECTURES.get(config.architecture).from_config(config, input_size, output_size)
