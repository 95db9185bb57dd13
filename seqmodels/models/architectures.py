"""Architectures: how a recurrence is wired to inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from seqmodels.errors import ConfigError
from seqmodels.models.cells import CELLS
from seqmodels.models.layers import InputLayer
from seqmodels.models.options import CellOptions, check_range, parse_options
from seqmodels.models.recurrences import Recurrence, build_recurrence
from seqmodels.registry import Registry


@dataclass(frozen=True)
class ModelConfig:
    """What a spec's variant says about the network.

    `cell_options` are the chosen cell's own options (`seqmodels.models.cells`), e.g.
    `{cell_input: sigmoid, peepholes: true}` for the book's LSTM. A config torch's `nn.RNN`,
    `nn.LSTM` or `nn.GRU` computes exactly runs on that fast path; any other cell by cell.

    `arch_options` are the chosen architecture's own options, validated the same way against
    its `options_type`, e.g. `{context: both, reverse_source: true}` for `encoder_decoder`.
    """

    architecture: str = "seq2one"
    cell: str = "tanh"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    cell_options: dict[str, Any] = field(default_factory=dict)
    arch_options: dict[str, Any] = field(default_factory=dict)

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
        self.arch()
        ARCHITECTURES.get(self.architecture).check_config(self)

    def options(self) -> CellOptions:
        """The cell's options, parsed. Raises ConfigError naming `cell_options.<option>`."""
        try:
            return parse_options(CELLS.get(self.cell).options_type, self.cell_options, self.cell)
        except ConfigError as err:
            raise ConfigError(f"cell_options.{err.field}".rstrip("."), str(err)) from None

    def arch(self) -> ArchOptions:
        """The architecture's options, parsed. Raises ConfigError naming `arch_options.<option>`."""
        options_type = ARCHITECTURES.get(self.architecture).options_type
        try:
            return parse_options(options_type, self.arch_options, self.architecture, "architecture")
        except ConfigError as err:
            raise ConfigError(f"arch_options.{err.field}".rstrip("."), str(err)) from None

    def recurrence(
        self, input_size: int, num_layers: int | None = None, bidirectional: bool | None = None
    ) -> Recurrence:
        """The recurrence this config names, reading `input_size` features (fast path if it can)."""
        return build_recurrence(
            self.cell,
            self.options(),
            input_size,
            self.hidden_size,
            self.num_layers if num_layers is None else num_layers,
            self.bidirectional if bidirectional is None else bidirectional,
        )


@dataclass(frozen=True)
class ArchOptions:
    """Base of every architecture's options. An architecture with no options uses it as it is."""


@dataclass(frozen=True)
class TokenOptions(ArchOptions):
    """Options of an architecture that reads float features or token ids."""

    embedding_size: int = 0  # 0: float inputs (B, T, F); > 0: token ids (B, T), embedded

    def __post_init__(self) -> None:
        check_range("embedding_size", self.embedding_size >= 0, "must be >= 0")


class Architecture(nn.Module):
    """Base of every architecture: built from a recurrence and the task's sizes.

    Subclasses set `options_type` (their `arch_options`) and `cells` (None: every cell works;
    otherwise the cells that make sense for them). A registered architecture also sets `book`,
    where the book describes it (section, figures, equations), and `summary`, one line;
    `seqmodels.catalogue` lists both.
    """

    options_type: ClassVar[type] = ArchOptions
    cells: ClassVar[tuple[str, ...] | None] = None
    book: ClassVar[str] = ""  # e.g. "10.3, fig 10.11"
    summary: ClassVar[str] = ""  # one line for the catalogue

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """Reject what this architecture cannot do with `config`, naming the field."""
        if cls.cells is not None and config.cell not in cls.cells:
            raise ConfigError(
                "cell",
                f"architecture {config.architecture!r} cannot use cell {config.cell!r}; "
                f"choose from: {', '.join(cls.cells)}",
            )

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Architecture:
        return cls(config.recurrence(input_size), output_size)


ARCHITECTURES: Registry[Architecture] = Registry("architecture", Architecture)


@ARCHITECTURES.register("seq2one")
class SeqToOne(Architecture):
    """Read a whole sequence, emit one output (design pattern 3, fig 10.5).

    With `embedding_size` > 0 it reads token ids. On a padded batch the output reads each
    sequence's own h(tau), at x_len - 1 (and g(1) backward, which starts at x_len - 1), so
    every sequence gets exactly the output it would get alone.

    Args:
        recurrence: maps (B, T, F) to (B, T, D*H).
        output_size: width of the single output.
        inputs: float features as they are (None), or an embedding of token ids.
    Shapes: `forward(x: (B, T, F) or (B, T), x_len: (B,) | None) -> (B, output_size)`.
    """

    options_type = TokenOptions
    book = "10.2, fig 10.5"
    summary = "read a whole sequence, emit one output from its final state (pattern 3)"

    def __init__(
        self, recurrence: Recurrence, output_size: int, inputs: InputLayer | None = None
    ) -> None:
        super().__init__()
        self.inputs = inputs if inputs is not None else InputLayer(recurrence.input_size)
        self.recurrence = recurrence
        self.head = nn.Linear(recurrence.output_size, output_size)

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> SeqToOne:
        options: TokenOptions = config.arch()
        inputs = InputLayer(input_size, options.embedding_size)
        return cls(config.recurrence(inputs.output_size), output_size, inputs)

    def forward(self, x: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
        h = self.recurrence(self.inputs(x), x_len)  # (B, T, D*H)
        return self.head(self.recurrence.final(h, x_len))  # (B, O): o = c + V h(tau)


def build_model(config: ModelConfig, input_size: int, output_size: int) -> Architecture:
    """Build the network a variant names.

    Args:
        input_size: features per step for float inputs (B, T, F); for token inputs (an
            `embedding_size` > 0, and always for `encoder_decoder` and `attention`) the source
            vocabulary size, the reserved ids of `seqmodels.batch` included.
        output_size: width of each output; for token outputs the target vocabulary size.
    """
    return ARCHITECTURES.get(config.architecture).from_config(config, input_size, output_size)
