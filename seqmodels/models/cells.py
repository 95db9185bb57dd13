"""Step cells: one time step of each chapter-10 recurrence, batch-first.

A cell maps the input's contribution `b + U x(t)`, shape (B, kH), and the previous state to the
next state. `b + U x(t)` does not depend on the past, so `Unrolled` computes it for every t in
one matmul (`StepCell.project`, as cuDNN does) and only `W h(t-1)` stays in the Python loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from seqmodels.config import (
    CELL_OPTIONS,
    CellOptions,
    ESNOptions,
    GRUOptions,
    LeakyOptions,
    LSTMOptions,
    SkipOptions,
)
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

    def initial_state(self, batch_size: int, like: torch.Tensor) -> State:
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return (zeros,) * self.state_count

    def load_torch(self, weights: TorchLayerWeights, mode: str) -> None:
        """Copy one layer and direction of a torch module whose `RNNBase.mode` is `mode`.

        Raises:
            TypeError: this cell, with its options, does not compute what torch's `mode` does.
        """
        raise TypeError(f"{type(self).__name__} has no torch equivalent to load weights from")

    def _check_mode(self, mode: str, expected: str | None, form: str = "") -> None:
        if mode != expected:
            raise TypeError(f"{type(self).__name__}{form} does not compute torch's {mode}")


CELLS: Registry[StepCell] = Registry("cell", StepCell, declared=CELL_OPTIONS)


# --- Elman (10.2, eqs 10.8-10.11) -------------------------------------------------------------


class Elman(StepCell):
    """Elman RNN, Deep Learning eqs 10.8-10.9: `h(t) = act(b + W h(t-1) + U x(t))`."""

    activation: ClassVar[Callable[[torch.Tensor], torch.Tensor]]
    mode: ClassVar[str]

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.U = nn.Linear(input_size, hidden_size)  # carries the bias b
        self.W = nn.Linear(hidden_size, hidden_size, bias=False)
        init_uniform(hidden_size, *self.parameters())

    def forward(self, ux: torch.Tensor, state: State) -> State:
        (h,) = state
        a = ux + self.W(h)  # eq 10.8: a(t) = b + W h(t-1) + U x(t)
        return (self.activation(a),)  # eq 10.9: h(t) = tanh(a(t))

    @classmethod
    def torch_mode(cls, options: CellOptions) -> str | None:
        return cls.mode

    @torch.no_grad()
    def load_torch(self, weights: TorchLayerWeights, mode: str) -> None:
        self._check_mode(mode, self.mode)
        self.U.weight.copy_(weights.weight_ih)
        self.U.bias.copy_(weights.bias_ih + weights.bias_hh)  # torch keeps two biases; b is one
        self.W.weight.copy_(weights.weight_hh)


@CELLS.register("tanh")
class ElmanTanh(Elman):
    """Elman RNN with tanh, eq 10.9 as written."""

    book = "10.2, eqs 10.8-10.9"
    summary = "Elman RNN: h(t) = tanh(b + W h(t-1) + U x(t))"
    activation = staticmethod(torch.tanh)
    mode = "RNN_TANH"


@CELLS.register("relu")
class ElmanReLU(Elman):
    """Elman RNN with a ReLU in place of eq 10.9's tanh."""

    book = "10.2, eqs 10.8-10.9"
    summary = "Elman RNN with a ReLU in place of tanh"
    activation = staticmethod(torch.relu)
    mode = "RNN_RELU"


# --- Leaky units and multiple time scales (10.9.2) --------------------------------------------


def time_scale_alphas(alpha: float, time_scales: int, hidden_size: int) -> torch.Tensor:
    """Per-unit alphas: `time_scales` groups, group k's time constant 1/(1-alpha) times 2**k."""
    group = torch.arange(hidden_size) * time_scales // hidden_size  # (H,) in 0..time_scales-1
    return 1 - (1 - alpha) * 0.5 ** group.double()


@CELLS.register("leaky")
class Leaky(StepCell):
    """Leaky units, Deep Learning 10.9.2: `mu(t) = alpha mu(t-1) + (1 - alpha) v(t)`.

    `v(t) = tanh(b + W mu(t-1) + U x(t))` is an Elman unit's activation. alpha is fixed, or
    learned per unit through a sigmoid so it stays in (0, 1); alpha = 0 is the Elman cell.
    """

    options_type = LeakyOptions
    book = "10.9.2"
    summary = "leaky units, mu(t) = alpha mu(t-1) + (1 - alpha) v(t), on multiple time scales"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        alpha: float = 0.5,
        learn_alpha: bool = False,
        time_scales: int = 1,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.U = nn.Linear(input_size, hidden_size)
        self.W = nn.Linear(hidden_size, hidden_size, bias=False)
        init_uniform(hidden_size, *self.parameters())
        alphas = time_scale_alphas(alpha, time_scales, hidden_size).float()  # (H,)
        self.learn_alpha = learn_alpha
        if learn_alpha:
            self.alpha_logit = nn.Parameter(torch.logit(alphas))
        else:
            self.register_buffer("alpha_fixed", alphas)

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.alpha_logit) if self.learn_alpha else self.alpha_fixed

    def forward(self, ux: torch.Tensor, state: State) -> State:
        (mu,) = state
        v = torch.tanh(ux + self.W(mu))
        alpha = self.alpha
        return (alpha * mu + (1 - alpha) * v,)


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

    @torch.no_grad()
    def load_torch(self, weights: TorchLayerWeights, mode: str) -> None:
        options = LSTMOptions(self.cell_input, self.peep is not None, self.forget_bias)
        self._check_mode(mode, self.torch_mode(options), f" with {options}")
        self.U.weight.copy_(weights.weight_ih)
        self.U.bias.copy_(weights.bias_ih + weights.bias_hh)
        self.W.weight.copy_(weights.weight_hh)


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

    @torch.no_grad()
    def load_torch(self, weights: TorchLayerWeights, mode: str) -> None:
        self._check_mode(mode, self.torch_mode(GRUOptions(self.reset)), f" with reset={self.reset}")
        H = self.hidden_size
        self.U.weight.copy_(weights.weight_ih)
        # b_hr and b_hz add to the gates like b_ir and b_iz do; b_hn sits inside r * (...)
        self.U.bias.copy_(weights.bias_ih)
        self.U.bias[: 2 * H] += weights.bias_hh[: 2 * H]
        self.W_gates.weight.copy_(weights.weight_hh[: 2 * H])
        self.W.weight.copy_(weights.weight_hh[2 * H :])
        self.W.bias.copy_(weights.bias_hh[2 * H :])


# --- Echo state network (10.8) ----------------------------------------------------------------


@CELLS.register("esn")
class EchoState(StepCell):
    """Echo state reservoir, Deep Learning 10.8:
    `h(t) = (1 - a) h(t-1) + a tanh(U x(t) + W h(t-1))`, a the leak rate.

    U and W are fixed random buffers, not parameters: W is scaled to `spectral_radius` (its
    largest |eigenvalue|, which sets how long the reservoir remembers, eqs 10.36-10.39) and U to
    `input_scaling`. Only a readout on top of the reservoir trains.
    """

    options_type = ESNOptions
    book = "10.8"
    summary = "echo state reservoir: fixed random weights at a chosen spectral radius"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        spectral_radius: float = 0.9,
        input_scaling: float = 1.0,
        leak_rate: float = 1.0,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.leak_rate = leak_rate
        W = torch.empty(hidden_size, hidden_size).uniform_(-1, 1)
        W *= spectral_radius / torch.linalg.eigvals(W).abs().max()
        U = torch.empty(hidden_size, input_size).uniform_(-input_scaling, input_scaling)
        self.register_buffer("W", W)
        self.register_buffer("U", U)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.U)  # (B, T, H)

    def forward(self, ux: torch.Tensor, state: State) -> State:
        (h,) = state
        a = self.leak_rate
        return ((1 - a) * h + a * torch.tanh(ux + F.linear(h, self.W)),)


# --- Skip connections through time (10.9.1) ---------------------------------------------------


@CELLS.register("skip")
class SkipThroughTime(StepCell):
    """Skip connections through time, Deep Learning 10.9.1:
    `h(t) = tanh(b + W h(t-1) + W_d h(t-d) + U x(t))`.

    Gradients through the delay-d edges shrink over tau/d steps instead of tau. The state holds
    the last d hidden states, newest first: (h(t-1), ..., h(t-d)).
    """

    options_type = SkipOptions
    book = "10.9.1"
    summary = "skip connections through time: h(t) also reads h(t-d)"

    def __init__(self, input_size: int, hidden_size: int, delay: int = 2) -> None:
        super().__init__(input_size, hidden_size, state_count=delay)
        self.U = nn.Linear(input_size, hidden_size)
        self.W = nn.Linear(hidden_size, hidden_size, bias=False)
        self.W_d = nn.Linear(hidden_size, hidden_size, bias=False)
        init_uniform(hidden_size, *self.parameters())

    def forward(self, ux: torch.Tensor, state: State) -> State:
        h = torch.tanh(ux + self.W(state[0]) + self.W_d(state[-1]))
        return (h, *state[:-1])
