"""Networks: recurrences (cells) and the architectures that wire them.

Every tensor is batch-first: inputs are (B, T, F), hidden sequences (B, T, H).
"""

from seqmodels.models.architectures import ARCHITECTURES, ModelConfig, SeqToOne, build_model
from seqmodels.models.recurrences import CELLS, Recurrence, TorchRecurrence

__all__ = [
    "ARCHITECTURES",
    "CELLS",
    "ModelConfig",
    "Recurrence",
    "SeqToOne",
    "TorchRecurrence",
    "build_model",
]
