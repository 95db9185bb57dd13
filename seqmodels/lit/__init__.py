"""LightningModules per task family. Each receives its network; it does not build it.

Every module consumes the dict batches of `seqmodels.batch` and has one `model_step` shared by
train, validation and test (where the rest of it would wait for the GPU, training computes only
its loss part); metric keys are namespaced (`train/loss`, `val/acc`, `test/bpc`).

| module | network | y | test metrics |
|---|---|---|---|
| SequenceRegression | x -> (B, O) or (B, T, O) | float | mse, mae |
| SequenceClassification | x -> (B, C) logits | (B,) int64 | accuracy, cross_entropy |
| Seq2Seq | (x, x_len, y) -> DecoderOutput | (B, U) ids | exact_match, token_accuracy, per, wer |
| LanguageModel | ids (B, T) -> (B, T, V) | (B, T) ids | cross_entropy, bits_per_char, ... |

The test metric names are the tasks' own (`Task.metrics`), so a study reads its headline metric
as `test/<Task.metric>` whatever the family; `seqmodels.metrics` computes them.

Networks follow one protocol (`seqmodels.models.network.Network`): a module calls
`net(x, x_len=..., y=...)`, with the batch's `x_len`, so a network reads each sequence's own
end, and `y` where the family teacher-forces (regression, seq2seq); a network that declares
`x_parent` among its `extra_inputs` also receives the batch's trees (SequenceClassification).
On a GPU, `NpzDataModule` leaves both on the CPU (`seqmodels.batch.HOST_KEYS`). Each training
batch tells the network how far training has come (`set_progress`), scheduled sampling's clock.

Training switches (`FamilyModule`): truncated BPTT (10.2.2, `tbptt`) for the families with a
target at every step, the information-flow regularizer Omega (10.11.2, `info_flow`) and
gradient clipping by norm or by value (10.11.1, `grad_clip`). Which networks the first two fit
is `seqmodels.config`'s declaration (`TBPTT_ARCHITECTURES`, `INFO_FLOW_ARCHITECTURES`).

The modules step their optimizer themselves (Lightning's manual optimization), truncated or
not: one path for both, and less of Lightning's loop per step. Its automatic optimization
wraps each step in a closure, a result object and more hook dispatches, which cost Python
calls at every step (benchmarks/framework_tax.py counts them). So the Trainer's
`gradient_clip_val` does not apply (Lightning refuses it under manual optimization): the
module's `grad_clip` clips. Checkpoints saved under automatic optimization still resume at
their step (`seqmodels.lit.checkpoints`).

Modules: `base` (the shared step, optimization, clipping and epoch means), `switches` (which
networks truncated BPTT and Omega fit), `tbptt`, `checkpoints`, `families` (the four, and
`FAMILIES`).
"""

from seqmodels.lit.base import FamilyModule
from seqmodels.lit.families import (
    FAMILIES,
    LanguageModel,
    Seq2Seq,
    SequenceClassification,
    SequenceRegression,
)

__all__ = [
    "FAMILIES",
    "FamilyModule",
    "LanguageModel",
    "Seq2Seq",
    "SequenceClassification",
    "SequenceRegression",
]
