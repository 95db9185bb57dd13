"""Recurrences: modules that map a sequence (B, T, F) to hidden states (B, T, D*H).

Two implementations of one interface: `TorchRecurrence` runs torch's cuDNN-backed modules (the
fast path), `Unrolled` runs any step cell of `seqmodels.models.cells` one time step at a time.
`build_recurrence` picks the fast path whenever torch computes exactly the same function.
"""

from __future__ import annotations

import torch
from torch import nn

from seqmodels.models.cells import CELLS, State, StepCell, TorchLayerWeights
from seqmodels.models.options import CellOptions


class Recurrence(nn.Module):
    """Base of every recurrence. Batch-first: `forward(x: (B, T, F)) -> (B, T, D*H)`.

    D is 2 when bidirectional (10.3): the forward states h and the backward states g are
    concatenated on the last axis, h first.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.num_directions * self.hidden_size

    def final(self, h: torch.Tensor) -> torch.Tensor:
        """The states that have read the whole sequence: (B, T, D*H) -> (B, D*H).

        That is h(tau) forward, and g(1) backward: the backward direction ends at t = 1.
        """
        if not self.bidirectional:
            return h[:, -1]
        H = self.hidden_size
        return torch.cat([h[:, -1, :H], h[:, 0, H:]], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


TORCH_MODULES: dict[str, tuple[type[nn.RNNBase], dict[str, str]]] = {
    "RNN_TANH": (nn.RNN, {"nonlinearity": "tanh"}),
    "RNN_RELU": (nn.RNN, {"nonlinearity": "relu"}),
    "LSTM": (nn.LSTM, {}),
    "GRU": (nn.GRU, {}),
}


class TorchRecurrence(Recurrence):
    """The fast path: torch's cuDNN-backed `nn.RNN`, `nn.LSTM` or `nn.GRU`, stacked `num_layers`.

    Args:
        mode: torch's name for the module, one of `TORCH_MODULES`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        mode: str = "RNN_TANH",
        bidirectional: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional)
        if mode not in TORCH_MODULES:
            raise ValueError(
                f"unknown torch mode {mode!r}; choose from: {', '.join(TORCH_MODULES)}"
            )
        torch_class, extra = TORCH_MODULES[mode]
        self.rnn = torch_class(
            input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            **extra,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, D*H)
        return out


def unroll(cell: StepCell, x: torch.Tensor) -> torch.Tensor:
    """Run `cell` over time: (B, T, I) -> (B, T, H), starting from the zero state.

    This is back-propagation through time's forward half (10.2.2): autograd keeps every step's
    state, hence the O(tau) memory.
    """
    ux = cell.project(x)  # (B, T, kH): b + U x(t) for all t in one matmul
    state: State = cell.initial_state(x.shape[0], ux)
    hs = []
    for t in range(x.shape[1]):
        state = cell(ux[:, t], state)
        hs.append(state[0])
    return torch.stack(hs, dim=1)  # (B, T, H)


class Unrolled(Recurrence):
    """The cell-by-cell path: any step cell, stacked `num_layers` (10.5), optionally bidirectional.

    Layer l > 0 reads layer l-1's states, (B, T, D*H), as torch's stacked modules do.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        cell_type: type[StepCell],
        options: CellOptions,
        bidirectional: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional)
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            width = input_size if layer == 0 else self.output_size
            directions = [
                cell_type.from_options(width, hidden_size, options)
                for _ in range(self.num_directions)
            ]
            self.layers.append(nn.ModuleList(directions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for directions in self.layers:
            h = unroll(directions[0], x)  # (B, T, H)
            if self.bidirectional:
                g = unroll(directions[1], x.flip(1)).flip(1)  # (B, T, H), g(t) read t..tau
                h = torch.cat([h, g], dim=-1)  # (B, T, 2H)
            x = h
        return x


def build_recurrence(
    cell: str,
    options: CellOptions,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    fast_path: bool = True,
) -> Recurrence:
    """The recurrence a cell and its options name: torch's module where it computes exactly the
    same function (and `fast_path`), the cell-by-cell `Unrolled` otherwise."""
    cell_type = CELLS.get(cell)
    mode = cell_type.torch_mode(options)
    if fast_path and mode is not None:
        return TorchRecurrence(input_size, hidden_size, num_layers, mode, bidirectional)
    return Unrolled(input_size, hidden_size, num_layers, cell_type, options, bidirectional)


def load_torch_weights(module: Unrolled, torch_module: nn.RNNBase | TorchRecurrence) -> None:
    """Copy the weights of a torch `nn.RNN`/`nn.LSTM`/`nn.GRU` into its cell-by-cell twin.

    After it, `module` and `torch_module` compute the same function (up to float rounding).

    Raises:
        ValueError: the two differ in sizes, layers or directions.
        TypeError: a cell has no torch equivalent (a book variant, ESN, leaky or skip).
    """
    rnn = torch_module.rnn if isinstance(torch_module, TorchRecurrence) else torch_module
    mine = (module.input_size, module.hidden_size, module.num_layers, module.bidirectional)
    theirs = (rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bidirectional)
    if mine != theirs or getattr(rnn, "proj_size", 0):
        raise ValueError(f"(input, hidden, layers, bidirectional) differ: {mine} vs {theirs}")
    for layer, directions in enumerate(module.layers):
        for direction, cell in enumerate(directions):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            weights = TorchLayerWeights(*(getattr(rnn, f"{n}_{suffix}") for n in names))
            cell.load_torch(weights, rnn.mode)
