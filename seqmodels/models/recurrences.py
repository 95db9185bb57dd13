"""Recurrences: modules that map a sequence (B, T, F) to hidden states (B, T, D*H).

Two implementations of one interface: `TorchRecurrence` runs torch's cuDNN-backed modules (the
fast path), `Unrolled` runs any step cell of `seqmodels.models.cells` one time step at a time.
`build_recurrence` picks the fast path whenever torch computes exactly the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqmodels.models.cells import CELLS, State, StepCell, TorchLayerWeights
from seqmodels.models.layers import at_lengths, reverse_padded
from seqmodels.options import CellOptions


class Recurrence(nn.Module):
    """Base of every recurrence. Batch-first: `forward(x: (B, T, F), x_len) -> (B, T, D*H)`.

    D is 2 when bidirectional (10.3): the forward states h and the backward states g are
    concatenated on the last axis, h first.

    `x_len` (B,) int64, the true lengths of a padded batch (None: every sequence fills all T
    steps). Forward states never read ahead, so at t < x_len they ignore the padding anyway;
    the backward direction needs the lengths to start at each sequence's own end. States at
    t >= x_len are unspecified: read a sequence's summary with `final(h, x_len)`.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        # callables that see every output sequence (B, T, D*H), e.g. to take dL/dh(t) in
        # diagnostics: a forward hook would miss `run`, which callers use without __call__
        self.taps: list[Callable[[torch.Tensor], None]] = []

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.num_directions * self.hidden_size

    @property
    def recurrent_weight(self) -> torch.Tensor | None:
        """The first layer's hidden-to-hidden matrix W (H, H), or None when it has none.

        For gated cells it is the block that feeds the cell's candidate input (the LSTM's
        g-block, the GRU's candidate), the path that carries the state's content from step to
        step (`StepCell.recurrent_weight`). Eqs 10.36-10.39 read its eigenvalues.
        """
        return None

    def final(self, h: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
        """The states that have read the whole sequence: (B, T, D*H) -> (B, D*H).

        That is h(tau) forward, at each sequence's last step x_len - 1 (T - 1 when x_len is
        None), and g(1) backward: the backward direction ends at t = 1 whatever the length.
        """
        last = at_lengths(h, x_len)  # (B, D*H)
        if not self.bidirectional:
            return last
        H = self.hidden_size
        return torch.cat([last[:, :H], h[:, 0, H:]], dim=-1)

    def forward(self, x: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
        return self.run(x, x_len=x_len)[0]

    def run(
        self,
        x: torch.Tensor,
        state: RecurrentState | None = None,
        x_len: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Run from `state` (None: the zero state): (B, T, F) -> (B, T, D*H), and the final state.

        The state is opaque: pass it back to `run` to go on where a call stopped (decoding one
        step at a time, truncated BPTT). Only unidirectional recurrences carry a state, and it
        is the state after all T steps: `x_len` only steers the backward direction.
        """
        self._check_stateful(state)
        if x_len is not None and not self.bidirectional:
            x_len = None  # causal states at t < x_len never see the padding: nothing to do
        out, final = self._run(x, state, x_len)
        for tap in self.taps:
            tap(out)
        return out, final

    def _run(
        self, x: torch.Tensor, state: RecurrentState | None, x_len: torch.Tensor | None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """`run` itself; `x_len` is None unless the recurrence is bidirectional."""
        raise NotImplementedError  # pragma: no cover - abstract

    def state_from_hidden(self, h0: torch.Tensor) -> RecurrentState:
        """An initial state whose hidden state is `h0` (B, H) in every layer, the rest zero."""
        raise NotImplementedError  # pragma: no cover - abstract

    def select_state(self, state: RecurrentState, index: torch.Tensor) -> RecurrentState:
        """The state of the batch rows `index` (B',) int64, e.g. to reorder beams."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _check_stateful(self, state: RecurrentState | None) -> None:
        if state is not None and self.bidirectional:
            raise ValueError("a bidirectional recurrence reads the whole sequence; it has no state")


RecurrentState = Any  # what `Recurrence.run` returns: opaque to callers, pass it back as it is


def detach_state(state: RecurrentState) -> RecurrentState:
    """Cut the graph behind a recurrent state, keeping its values: the hard part of truncated
    BPTT (10.2.2), known as `repackage_hidden` in pytorch/examples. Gradients then stop at the
    chunk boundary, so memory is bounded by the truncation length instead of tau."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    if state is None:
        return None
    raise TypeError(f"not a recurrent state: {type(state).__name__}")


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

    @property
    def recurrent_weight(self) -> torch.Tensor:
        W = self.rnn.weight_hh_l0  # (kH, H)
        H = self.hidden_size
        if self.rnn.mode in ("LSTM", "GRU"):
            return W[2 * H : 3 * H]  # torch's gate order: LSTM (i, f, g, o), GRU (r, z, n)
        return W

    def _run(
        self, x: torch.Tensor, state: RecurrentState | None, x_len: torch.Tensor | None
    ) -> tuple[torch.Tensor, RecurrentState]:
        T = x.shape[1]
        # Packing wants the lengths on the CPU, where a batch keeps them (seqmodels.batch.
        # HOST_KEYS); x_len is None here unless the module is bidirectional (see `run`).
        lengths = None if x_len is None else x_len.cpu()
        if lengths is None or bool((lengths == T).all()):
            out, final = self.rnn(x, state)  # (B, T, D*H); final h (L*D, B, H), or (h, c)
            return out, final
        # Packed, the backward direction starts at each sequence's own last step. The batch is
        # sorted by length here rather than by `enforce_sorted=False`, whose permutations go to
        # the device and come back from it, each a wait for the GPU's queue.
        lengths, order = lengths.sort(descending=True, stable=True)
        restore = torch.empty_like(order)
        restore[order] = torch.arange(len(order))
        order, restore = (i.to(x.device, non_blocking=True) for i in (order, restore))
        packed = pack_padded_sequence(x.index_select(0, order), lengths, batch_first=True)
        out, final = self.rnn(packed)  # bidirectional, so no state to start from
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D*H)
        return out.index_select(0, restore), self.select_state(final, restore)

    def state_from_hidden(self, h0: torch.Tensor) -> RecurrentState:
        self._check_stateful(h0)
        h = h0.unsqueeze(0).expand(self.num_layers, -1, -1).contiguous()  # (L, B, H)
        return (h, torch.zeros_like(h)) if isinstance(self.rnn, nn.LSTM) else h

    def select_state(self, state: RecurrentState, index: torch.Tensor) -> RecurrentState:
        if isinstance(state, tuple):
            return tuple(s.index_select(1, index) for s in state)  # torch's batch axis is 1
        return state.index_select(1, index)


def unroll(cell: StepCell, x: torch.Tensor) -> torch.Tensor:
    """Run `cell` over time: (B, T, I) -> (B, T, H), starting from the zero state.

    This is back-propagation through time's forward half (10.2.2): autograd keeps every step's
    state, hence the O(tau) memory.
    """
    return unroll_from(cell, x)[0]


def unroll_from(
    cell: StepCell, x: torch.Tensor, state: State | None = None
) -> tuple[torch.Tensor, State]:
    """`unroll` from a given state (None: zeros), also returning the final state."""
    ux = cell.project(x)  # (B, T, kH): b + U x(t) for all t in one matmul
    if state is None:
        state = cell.initial_state(x.shape[0], ux)
    hs = []
    for t in range(x.shape[1]):
        state = cell(ux[:, t], state)
        hs.append(state[0])
    return torch.stack(hs, dim=1), state  # (B, T, H)


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

    @property
    def recurrent_weight(self) -> torch.Tensor | None:
        return self.layers[0][0].recurrent_weight

    def _run(
        self, x: torch.Tensor, state: RecurrentState | None, x_len: torch.Tensor | None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """The state is a list with one cell state per layer."""
        if self.bidirectional:
            for directions in self.layers:
                h = unroll(directions[0], x)  # (B, T, H)
                # g(t) read t..tau: each sequence reversed within its own length
                g = reverse_padded(unroll(directions[1], reverse_padded(x, x_len)), x_len)
                x = torch.cat([h, g], dim=-1)  # (B, T, 2H)
            return x, None
        states = state if state is not None else [None] * self.num_layers
        finals = []
        for directions, layer_state in zip(self.layers, states, strict=True):
            x, final = unroll_from(directions[0], x, layer_state)
            finals.append(final)
        return x, finals

    def state_from_hidden(self, h0: torch.Tensor) -> RecurrentState:
        self._check_stateful(h0)
        cells = [directions[0] for directions in self.layers]
        return [(h0, *cell.initial_state(h0.shape[0], h0)[1:]) for cell in cells]

    def select_state(self, state: RecurrentState, index: torch.Tensor) -> RecurrentState:
        return [tuple(s.index_select(0, index) for s in layer) for layer in state]


class Feedforward(Recurrence):
    """No recurrence at all: `h(t) = act(b + U x(t))`, each step on its own.

    The hidden layer of the output-recurrent network of fig 10.4, whose only recurrence goes
    through the output it is fed back; its state is always None.
    """

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh") -> None:
        super().__init__(input_size, hidden_size)
        self.U = nn.Linear(input_size, hidden_size)
        self.activation = torch.relu if activation == "relu" else torch.tanh

    def _run(
        self, x: torch.Tensor, state: RecurrentState | None, x_len: torch.Tensor | None
    ) -> tuple[torch.Tensor, RecurrentState]:
        return self.activation(self.U(x)), None

    def state_from_hidden(self, h0: torch.Tensor) -> RecurrentState:
        return None

    def select_state(self, state: RecurrentState, index: torch.Tensor) -> RecurrentState:
        return None


def first_recurrence(module: nn.Module) -> Recurrence | None:
    """The first recurrence inside `module` that has a recurrent weight, in registration order:
    the one the diagnostics and Omega read (for an encoder-decoder, the encoder's)."""
    for sub in module.modules():
        if isinstance(sub, Recurrence) and sub.recurrent_weight is not None:
            return sub
    return None


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
        fast = TorchRecurrence(input_size, hidden_size, num_layers, mode, bidirectional)
        cell_type.init_torch(fast.rnn, options)
        return fast
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
