"""Architectures: how a recurrence is wired to inputs and outputs."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from seqmodels.config import WIRINGS, ArchOptions, ModelConfig, TokenOptions
from seqmodels.models.layers import InputLayer
from seqmodels.models.recurrences import Recurrence, build_recurrence, first_recurrence
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
    """Base of every architecture: built from a recurrence and the task's sizes, and following
    `seqmodels.models.network.Network`, the one protocol a LightningModule calls.

    Subclasses set `options_type`, their `arch_options`: the options `seqmodels.config.WIRINGS`
    declares for their name, with the cells they accept and the checks of a config. A
    registered architecture also sets `book`, where the book describes it (section, figures,
    equations), and `summary`, one line; `seqmodels.catalogue` lists both. `register` gives it
    its `name`.
    """

    options_type: ClassVar[type[ArchOptions]] = ArchOptions
    book: ClassVar[str] = ""  # e.g. "10.3, fig 10.11"
    summary: ClassVar[str] = ""  # one line for the catalogue
    name: ClassVar[str] = ""  # the registered name (`register`); "" for a base class
    extra_inputs: ClassVar[tuple[str, ...]] = ()  # batch keys beyond x, x_len, y

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Architecture:
        return cls(recurrence_for(config, input_size), output_size)

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract

    def set_progress(self, progress: float) -> None:
        """Scheduled sampling's clock, the fraction of training done; ignored here, as by every
        architecture that schedules nothing."""

    @property
    def recurrent_weight(self) -> torch.Tensor | None:
        """The first recurrence's hidden-to-hidden matrix W (H, H) (`Recurrence.recurrent_weight`);
        None when the network has none (a recursive network, a feedforward hidden layer)."""
        recurrence = first_recurrence(self)
        return None if recurrence is None else recurrence.recurrent_weight


ARCHITECTURES: Registry[Architecture] = Registry(
    "architecture", Architecture, declared={name: w.options for name, w in WIRINGS.items()}
)

A = TypeVar("A", bound=type[Architecture])


def register(name: str) -> Callable[[A], A]:
    """Register an architecture under `name` in `ARCHITECTURES`, which says no to duplicates and
    to names `seqmodels.config` does not declare, and give the class that `name`."""

    def decorator(cls: A) -> A:
        ARCHITECTURES.register(name)(cls)
        cls.name = name
        return cls

    return decorator


@register("seq2one")
class SeqToOne(Architecture):
    """Read a whole sequence, emit one output (design pattern 3, fig 10.5).

    With `embedding_size` > 0 it reads token ids. On a padded batch the output reads each
    sequence's own h(tau), at x_len - 1 (and g(1) backward, which starts at x_len - 1), so
    every sequence gets exactly the output it would get alone.

    Args:
        recurrence: maps (B, T, F) to (B, T, D*H).
        output_size: width of the single output.
        inputs: float features as they are (None), or an embedding of token ids.
    Shapes: `forward(x: (B, T, F) or (B, T), x_len: (B,) | None, y ignored) -> (B, output_size)`.
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

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
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
    """Whether `net.forward` has a parameter called `name` (e.g. "x_parent"), for a caller that
    may be handed any module. The answer is kept per class: a signature is slow to read."""
    return name in _forward_parameters(type(net))


@functools.cache
def _forward_parameters(cls: type[nn.Module]) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)
