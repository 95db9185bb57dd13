"""Recurrences: modules that map a sequence (B, T, F) to hidden states (B, T, H)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from seqmodels.registry import Registry


class Recurrence(nn.Module):
    """Base of every recurrence. Batch-first: `forward(x: (B, T, F)) -> (B, T, H)`."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


CELLS: Registry[Recurrence] = Registry("cell", Recurrence)


class TorchRecurrence(Recurrence):
    """The fast path: torch's cuDNN-backed `nn.RNN`, `nn.LSTM` or `nn.GRU`, stacked `num_layers`."""

    torch_class: ClassVar[type[nn.RNNBase]]
    nonlinearity: ClassVar[str | None] = None

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__(input_size, hidden_size, num_layers)
        extra = {"nonlinearity": self.nonlinearity} if self.nonlinearity else {}
        self.rnn = self.torch_class(input_size, hidden_size, num_layers, batch_first=True, **extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H); the final state is out[:, -1] for a forward RNN
        return out


@CELLS.register("tanh")
class ElmanTanh(TorchRecurrence):
    """Elman RNN, Deep Learning eqs 10.8-10.9: `h(t) = tanh(b + W h(t-1) + U x(t))`."""

    torch_class = nn.RNN
    nonlinearity = "tanh"


@CELLS.register("relu")
class ElmanReLU(TorchRecurrence):
    """Elman RNN with a ReLU in place of tanh (eq 10.9's nonlinearity swapped)."""

    torch_class = nn.RNN
    nonlinearity = "relu"


@CELLS.register("lstm")
class LSTM(TorchRecurrence):
    """LSTM, Deep Learning eqs 10.40-10.44, in torch's form: tanh cell input, no peepholes."""

    torch_class = nn.LSTM


@CELLS.register("gru")
class GRU(TorchRecurrence):
    """GRU, Deep Learning eqs 10.45-10.47, in torch's form: the reset gate applied after W."""

    torch_class = nn.GRU
