"""The gated cells: LSTM (10.10.1) and GRU (10.10.2)."""

from __future__ import annotations

import torch
from torch import nn

from seqmodels.config import CellOptions, GRUOptions, LSTMOptions
from seqmodels.models.cells.base import CELLS, State, StepCell, TorchLayerWeights, init_uniform

# --- LSTM (10.10.1, eqs 10.40-10.44) ----------------------------------------------------------


def forget_gate(hidden_size: int) -> slice:
    """The forget gate's rows in torch's LSTM gate order (i, f, g, o)."""
    return slice(hidden_size, 2 * hidden_size)


@CELLS.register("lstm")
class LSTM(StepCell):
    """LSTM cell, Deep Learning eqs 10.40-10.44.

    Args:
        cell_input: squashing of the state's input; the book's eq 10.41 uses "sigmoid",
            cuDNN and `torch.nn.LSTM` use "tanh".
        peepholes: the cell state as an extra gate input, one weight per unit (Gers et al.):
            f and g see s(t-1), q sees s(t).
        forget_bias: the forget gate's bias at initialisation (`LSTMOptions` says why 1);
            the other weights and biases start as torch's do.
    """

    options_type = LSTMOptions
    book = "10.10.1, eqs 10.40-10.44"
    summary = "LSTM: gated self-loop on the state s, with forget, input and output gates"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell_input: str = "tanh",
        peepholes: bool = False,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__(input_size, hidden_size, state_count=2)  # state = (h, s)
        # chunks in torch's gate order (i, f, g, o) = (g, f, input, q), so weights copy as they are
        self.U = nn.Linear(input_size, 4 * hidden_size)
        self.W = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.cell_input = cell_input
        self.forget_bias = forget_bias
        peep = nn.Parameter(torch.empty(3, hidden_size)) if peepholes else None  # for f, g, q
        self.register_parameter("peep", peep)
        init_uniform(hidden_size, *self.parameters())
        with torch.no_grad():
            self.U.bias[forget_gate(hidden_size)] = forget_bias

    @property
    def recurrent_weight(self) -> torch.Tensor:
        H = self.hidden_size
        return self.W.weight[2 * H : 3 * H]  # the block of the state's input a_s (torch's g)

    def forward(self, ux: torch.Tensor, state: State) -> State:
        h, s = state
        a_g, a_f, a_s, a_q = (ux + self.W(h)).chunk(4, dim=-1)  # each (B, H)
        if self.peep is not None:
            a_f, a_g = a_f + self.peep[0] * s, a_g + self.peep[1] * s
        f = torch.sigmoid(a_f)  # eq 10.40, forget gate
        g = torch.sigmoid(a_g)  # eq 10.43, external input gate
        squash = torch.sigmoid if self.cell_input == "sigmoid" else torch.tanh
        s = f * s + g * squash(a_s)  # eq 10.41
        if self.peep is not None:
            a_q = a_q + self.peep[2] * s
        q = torch.sigmoid(a_q)  # eq 10.44, output gate
        return torch.tanh(s) * q, s  # eq 10.42

    @classmethod
    def torch_mode(cls, options: CellOptions) -> str | None:
        assert isinstance(options, LSTMOptions)
        return "LSTM" if options.cell_input == "tanh" and not options.peepholes else None

    @classmethod
    @torch.no_grad()
    def init_torch(cls, rnn: nn.RNNBase, options: CellOptions) -> None:
        """The forget bias on torch's module: its two biases add up, so b_ih holds it all."""
        assert isinstance(options, LSTMOptions)
        gate = forget_gate(rnn.hidden_size)
        for name, bias in rnn.named_parameters():
            if name.startswith("bias_"):
                bias[gate] = options.forget_bias if name.startswith("bias_ih") else 0.0

    def from_torch(self, weights: TorchLayerWeights, mode: str) -> dict[str, torch.Tensor]:
        options = LSTMOptions(self.cell_input, self.peep is not None, self.forget_bias)
        self._check_mode(mode, self.torch_mode(options), f" with {options}")
        return {
            "U.weight": weights.weight_ih,
            "U.bias": weights.bias_ih + weights.bias_hh,
            "W.weight": weights.weight_hh,
        }


# --- GRU (10.10.2, eqs 10.45-10.47) -----------------------------------------------------------


@CELLS.register("gru")
class GRU(StepCell):
    """GRU cell, Deep Learning eqs 10.45-10.47.

    Args:
        reset: "before" applies r before the recurrent matrix, `W (r * h(t-1))` (the book);
            "after" applies it to `W h(t-1) + b_W` (cuDNN and `torch.nn.GRU`).
    The book writes sigma for the candidate's squashing in eq 10.45; like Cho et al. (2014) and
    torch we use tanh, so that `reset` is the only difference between the two forms.
    """

    options_type = GRUOptions
    book = "10.10.2, eqs 10.45-10.47"
    summary = "GRU: update and reset gates, one state"

    def __init__(self, input_size: int, hidden_size: int, reset: str = "after") -> None:
        super().__init__(input_size, hidden_size)
        self.reset = reset
        # chunks in torch's order (r, z, n) = (r, u, candidate)
        self.U = nn.Linear(input_size, 3 * hidden_size)
        self.W_gates = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        # torch's form has a bias inside r * (W h + b_W); the book's has none
        self.W = nn.Linear(hidden_size, hidden_size, bias=reset == "after")
        init_uniform(hidden_size, *self.parameters())

    def forward(self, ux: torch.Tensor, state: State) -> State:
        (h,) = state
        ux_r, ux_u, ux_c = ux.chunk(3, dim=-1)  # each (B, H)
        w_r, w_u = self.W_gates(h).chunk(2, dim=-1)
        r = torch.sigmoid(ux_r + w_r)  # eq 10.47, reset gate
        u = torch.sigmoid(ux_u + w_u)  # eq 10.46, update gate
        if self.reset == "before":
            candidate = torch.tanh(ux_c + self.W(r * h))  # eq 10.45 as the book writes it
        else:
            candidate = torch.tanh(ux_c + r * self.W(h))
        return (u * h + (1 - u) * candidate,)  # eq 10.45

    @classmethod
    def torch_mode(cls, options: CellOptions) -> str | None:
        assert isinstance(options, GRUOptions)
        return "GRU" if options.reset == "after" else None

    def from_torch(self, weights: TorchLayerWeights, mode: str) -> dict[str, torch.Tensor]:
        self._check_mode(mode, self.torch_mode(GRUOptions(self.reset)), f" with reset={self.reset}")
        H = self.hidden_size
        # b_hr and b_hz add to the gates like b_ir and b_iz do; b_hn sits inside r * (...)
        gates = weights.bias_hh[: 2 * H]
        return {
            "U.weight": weights.weight_ih,
            "U.bias": weights.bias_ih
            + torch.cat([gates, torch.zeros_like(weights.bias_hh[2 * H :])]),
            "W_gates.weight": weights.weight_hh[: 2 * H],
            "W.weight": weights.weight_hh[2 * H :],
            "W.bias": weights.bias_hh[2 * H :],
        }
