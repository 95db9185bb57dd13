"""Step cells: one time step of each chapter-10 recurrence, batch-first.

A cell maps the input's contribution `b + U x(t)`, shape (B, kH), and the previous state to the
next state. `b + U x(t)` does not depend on the past, so `Unrolled` computes it for every t in
one matmul (`StepCell.project`, as cuDNN does) and only `W h(t-1)` stays in the Python loop.
"""

from seqmodels.models.cells.base import (
    CELLS,
    State,
    StepCell,
    TorchLayerWeights,
    init_uniform,
)
from seqmodels.models.cells.gated import GRU, LSTM, forget_gate
from seqmodels.models.cells.simple import (
    EchoState,
    Elman,
    ElmanReLU,
    ElmanTanh,
    Leaky,
    SkipThroughTime,
    time_scale_alphas,
)

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "EchoState",
    "Elman",
    "ElmanReLU",
    "ElmanTanh",
    "Leaky",
    "SkipThroughTime",
    "State",
    "StepCell",
    "TorchLayerWeights",
    "forget_gate",
    "init_uniform",
    "time_scale_alphas",
]
