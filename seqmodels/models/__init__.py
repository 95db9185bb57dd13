"""Networks: step cells, recurrences and the architectures that wire them.

Every tensor is batch-first: inputs are (B, T, F), hidden sequences (B, T, H). What a config
may name, and `ModelConfig` itself, live in `seqmodels.config`, which needs no torch. Every
network the registry builds follows one protocol, `Network` (`seqmodels.models.network`).
"""

from seqmodels.config import ArchOptions, CellOptions, ModelConfig, TokenOptions
from seqmodels.models.architectures import (
    ARCHITECTURES,
    Architecture,
    SeqToOne,
    build_model,
    recurrence_for,
    register,
    takes_argument,
)
from seqmodels.models.cells import CELLS, StepCell
from seqmodels.models.network import Network
from seqmodels.models.recurrences import (
    Feedforward,
    Recurrence,
    RecurrentState,
    TorchRecurrence,
    Unrolled,
    build_recurrence,
    detach_state,
    first_recurrence,
    load_torch_weights,
)
from seqmodels.models.recursive import (
    Recursive,
    Tree,
    balanced_tree,
    depth,
    tree_from_parents,
    tree_from_token_parents,
)
from seqmodels.models.seq2seq import (
    AttentionEncoderDecoder,
    DecoderOutput,
    EncoderDecoder,
    Seq2SeqArchitecture,
)
from seqmodels.models.sequence import (
    Bidirectional,
    Deep,
    OutputRecurrent,
    Recurrent,
    SequenceAutoencoder,
)

__all__ = [
    "ARCHITECTURES",
    "CELLS",
    "ArchOptions",
    "Architecture",
    "AttentionEncoderDecoder",
    "Bidirectional",
    "CellOptions",
    "DecoderOutput",
    "Deep",
    "EncoderDecoder",
    "Feedforward",
    "ModelConfig",
    "Network",
    "OutputRecurrent",
    "Recurrence",
    "RecurrentState",
    "Recurrent",
    "Recursive",
    "SeqToOne",
    "Seq2SeqArchitecture",
    "SequenceAutoencoder",
    "StepCell",
    "TokenOptions",
    "TorchRecurrence",
    "Tree",
    "Unrolled",
    "balanced_tree",
    "build_model",
    "build_recurrence",
    "depth",
    "detach_state",
    "first_recurrence",
    "load_torch_weights",
    "recurrence_for",
    "register",
    "takes_argument",
    "tree_from_parents",
    "tree_from_token_parents",
]
