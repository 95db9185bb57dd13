"""The protocol every network the registry builds follows: what `seqmodels.lit` may call.

`Architecture` (`seqmodels.models.architectures`) implements it, with the defaults that most
architectures keep; a LightningModule calls nothing else, and asks no network what it is.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch


class Network(Protocol):
    """A network of `seqmodels.models`, batch-first.

    - `net(x, x_len=None, y=None)`: x (B, T, F) floats or (B, T) token ids; x_len (B,) the
      true lengths of a padded batch (None: every sequence fills all T steps); y the target,
      which only a network trained with teacher forcing reads, in training (the
      output-recurrent network, the encoder-decoders); every other network ignores it.
      Returns the outputs: (B, O), (B, T, O), or a `DecoderOutput` for an encoder-decoder.
    - `extra_inputs`: the batch keys beyond x, x_len and y that `forward` also takes, as
      keywords (`x_parent` for the recursive network), passed where a batch has them.
    - `set_progress(progress)`: scheduled sampling's clock, the fraction of training done.
    - `recurrent_weight`: the hidden-to-hidden matrix W (H, H) of the first recurrence, which
      the diagnostics and the information-flow regularizer read; None without one.
    - `name`: the name it is registered under, which `seqmodels.config`'s declarations use
      (`TBPTT_ARCHITECTURES`, `INFO_FLOW_ARCHITECTURES`).
    """

    name: ClassVar[str]
    extra_inputs: ClassVar[tuple[str, ...]]

    def __call__(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> Any: ...

    def set_progress(self, progress: float) -> None:
        """Scheduled sampling's clock: `progress` in [0, 1], the fraction of training done."""

    @property
    def recurrent_weight(self) -> torch.Tensor | None: ...


__all__ = ["Network"]
