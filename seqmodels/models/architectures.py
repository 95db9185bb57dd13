"""Architectures: how a recurrence is wired to inputs and outputs."""

from __future__ import annotations

import functools
import inspect
from typing import ClassVar

import torch
from torch import nn

from seqmodels.config import WIRINGS, ArchOptions, ModelConfig, TokenOptions
from seqmodels.models.layers import InputLayer
from seqmodels.models.recurrences import Recurrence, build_recurrence
from seqmodels.registry import Registry


def recurrence_for(
    config: ModelConfig,
    input_size: int,
    num_layers: int | None = None,
    bidirectional: bool | None = None,
) -> Recurrence:
    """The recurrence `config` names, reading `input_size` features (fast path if it can); its
    own `num_layers` and `bidirectional` unless given."""
    return build_recurrence(
        config.cell,
        config.options(),
        input_size,
        config.hidden_size,
        config.num_layers if num_layers is None else num_layers,
        config.bidirectional if bidirectional is None else bidirectional,
    )


class Architecture(nn.Module):
    """Base of every architecture: built from a recurrence and the task's sizes.

    Subclasses set `options_type`, their `arch_options`: the options `seqmodels.config.WIRINGS`
    declares for their name, with the cells they accept and the checks of a config. A
    registered architecture also sets `book`, where the book describes it (section, figures,
    equations), and `summary`, one line; `seqmodels.catalogue` lists both.
    """

    options_type: ClassVar[type[ArchOptions]] = ArchOptions
    book: ClassVar[str] = ""  # e.g. "10.3, fig 10.11"
    summary: ClassVar[str] = ""  # one line for the catalogue

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Architecture:
        return cls(recurrence_for(config, input_size), output_size)


ARCHITECTURES: Registry[Architecture] = Registry(
    "architecture", Architecture, declared={name: w.options for name, w in WIRINGS.items()}
)


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
        return cls(recurrence_for(config, inputs.output_size), output_size, inputs)

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


def takes_argument(net: nn.Module, name: str) -> bool:
    """Whether `net.forward` has a parameter called `name` (e.g. "x_len").

    Asked at every training step, so the answer is kept per class: reading a signature costs
    about 0.1 ms of Python on a 2-core VM.
    """
    return name in _forward_parameters(type(net))


@functools.cache
def _forward_parameters(cls: type[nn.Module]) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)
