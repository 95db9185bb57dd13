"""Networks: step cells, recurrences and the architectures that wire them.

Every tensor is batch-first: inputs are (B, T, F), hidden sequences (B, T, H).
"""

from seqmodels.models.architectures import ARCHITECTURES, ModelConfig, SeqToOne, build_model
from seqmodels.models.cells import CELLS, StepCell
from seqmodels.models.options import CellOptions
from seqmodels.models.recurrences import (
    Recurrence,
    TorchRecurrence,
    Unrolled,
    build_recurrence,
    load_torch_weights,
)

__all__ = [
    "ARCHITECTURES",
    "CELLS",
    "CellOptions",
    "ModelConfig",
    "Recurrence",
    "SeqToOne",
    "StepCell",
    "TorchRecurrence",
    "Unrolled",
    "build_model",
    "build_recurrence",
    "load_torch_weights",
]
