"""The step cell's interface, the registry of cells, and what torch's own modules share with
them: their weights' layout and their initialisation."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from seqmodels.config import CELL_OPTIONS, CellOptions
from seqmodels.registry import Registry

State = tuple[torch.Tensor, ...]  # state[0] is the hidden state h(t) the cell exposes, (B, H)


class TorchLayerWeights(NamedTuple):
    """One layer and direction of a torch `nn.RNN`/`nn.LSTM`/`nn.GRU`, in torch's gate order."""

    weight_ih: torch.Tensor  # (kH, I)
    weight_hh: torch.Tensor  # (kH, H)
    bias_ih: torch.Tensor  # (kH,)
    bias_hh: torch.Tensor  # (kH,)


def init_uniform(hidden_size: int, *params: nn.Parameter) -> None:
    """torch's RNN initialisation, U(-1/sqrt(H), 1/sqrt(H)), so that a cell-by-cell model and its
    fast-path twin start from the same distribution and differ only by what a study varies."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in params:
        nn.init.uniform_(p, -bound, bound)


class StepCell(nn.Module):
    """Base of every step cell: `forward(ux(t): (B, kH), state) -> state`, `state[0]` = h(t).

    Subclasses set `options_type` (what `seqmodels.config.CELL_OPTIONS` declares for their
    name), take their options as plain keyword arguments of the same names, and say through
    `torch_mode` when torch's own module computes the same function. A registered cell also
    sets `book`, where the book defines it (section, equations), and `summary`, one line;
    `seqmodels.catalogue` lists both.
    """

    options_type: ClassVar[type[CellOptions]] = CellOptions
    book: ClassVar[str] = ""  # e.g. "10.10.1, eqs 10.40-10.44"
    summary: ClassVar[str] = ""  # one line for the catalogue

    def __init__(self, input_size: int, hidden_size: int, state_count: int = 1) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.state_count = state_count

    @classmethod
    def from_options(cls, input_size: int, hidden_size: int, options: CellOptions) -> StepCell:
        return cls(input_size, hidden_size, **dataclasses.asdict(options))

    @classmethod
    def torch_mode(cls, options: CellOptions) -> str | None:
        """torch's `RNNBase.mode` ("LSTM", "GRU", "RNN_TANH", "RNN_RELU") computing the same
        function as this cell with `options`, or None when only the cell-by-cell path can."""
        return None

    @classmethod
    def init_torch(cls, rnn: nn.RNNBase, options: CellOptions) -> None:
        """Initialise torch's module (the fast path) as this cell initialises itself, where the
        cell departs from torch's initialisation (the LSTM's forget bias); else leave it."""

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """`b + U x(t)` for every t at once: (B, T, I) -> (B, T, kH)."""
        return self.U(x)

    @property
    def recurrent_weight(self) -> torch.Tensor | None:
        """The hidden-to-hidden matrix W (H, H) that carries h(t-1)'s content into h(t), which
        the diagnostics read (eqs 10.36-10.39); a gated cell's is the candidate's block."""
        return self.W.weight

    def initial_state(self, batch_size: int, like: torch.Tensor) -> State:
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return (zeros,) * self.state_count

    def from_torch(self, weights: TorchLayerWeights, mode: str) -> dict[str, torch.Tensor]:
        """This cell's parameters, by name, from one layer and direction of a torch module
        whose `RNNBase.mode` is `mode`: the same function. Differentiable, so that fused
        members train torch's own parameters through this cell (`models.fused`).

        Raises:
            TypeError: this cell, with its options, does not compute what torch's `mode` does.
        """
        raise TypeError(f"{type(self).__name__} has no torch equivalent to load weights from")

    @torch.no_grad()
    def load_torch(self, weights: TorchLayerWeights, mode: str) -> None:
        """Copy one layer and direction of a torch module whose `RNNBase.mode` is `mode`.

        Raises:
            TypeError: this cell, with its options, does not compute what torch's `mode` does.
        """
        for name, value in self.from_torch(weights, mode).items():
            self.get_parameter(name).copy_(value)

    def _check_mode(self, mode: str, expected: str | None, form: str = "") -> None:
        if mode != expected:
            raise TypeError(f"{type(self).__name__}{form} does not compute torch's {mode}")


CELLS: Registry[StepCell] = Registry("cell", StepCell, declared=CELL_OPTIONS)
