"""The ungated cells: Elman (10.2), leaky units (10.9.2), echo state reservoirs (10.8) and skip
connections through time (10.9.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from seqmodels.config import CellOptions, ESNOptions, LeakyOptions, SkipOptions
from seqmodels.models.cells.base import CELLS, State, StepCell, TorchLayerWeights, init_uniform

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

    def from_torch(self, weights: TorchLayerWeights, mode: str) -> dict[str, torch.Tensor]:
        self._check_mode(mode, self.mode)
        return {
            "U.weight": weights.weight_ih,
            "U.bias": weights.bias_ih + weights.bias_hh,  # torch keeps two biases; b is one
            "W.weight": weights.weight_hh,
        }


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

    @property
    def recurrent_weight(self) -> torch.Tensor:
        return self.W  # a buffer: fixed, not trained

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
