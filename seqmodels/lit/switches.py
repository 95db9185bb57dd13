"""The training switches of Deep Learning 10.2.2 and 10.11.2: which networks each one fits, by
the declarations of `seqmodels.config`, and the states Omega reads."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from seqmodels.config import INFO_FLOW_ARCHITECTURES, TBPTT_ARCHITECTURES, TBPTT_FAMILIES
from seqmodels.errors import ConfigError
from seqmodels.models.network import Network
from seqmodels.models.recurrences import first_recurrence
from seqmodels.training import recording_states


def check_switches(net: Network, family: str, tbptt: int | None, info_flow: float) -> None:
    """Refuse a switch that `net`, or the task family `family`, cannot honour.

    Truncated BPTT (`tbptt`) needs a family with a target at every step (`TBPTT_FAMILIES`)
    and a unidirectional network of `TBPTT_ARCHITECTURES`, whose state it carries across the
    chunks; Omega (`info_flow`) a unidirectional first recurrence, of a network of
    `INFO_FLOW_ARCHITECTURES`, with trained weights to act on.

    Raises:
        ConfigError: naming the switch.
    """
    recurrence = first_recurrence(net)
    one_way = recurrence is not None and not recurrence.bidirectional
    if tbptt is not None:
        if tbptt < 1:
            raise ConfigError("tbptt", "must be >= 1")
        if family not in TBPTT_FAMILIES:
            raise ConfigError(
                "tbptt",
                f"{family} has no target at every step to truncate; truncated BPTT fits: "
                f"{', '.join(TBPTT_FAMILIES)}",
            )
        if net.name not in TBPTT_ARCHITECTURES or not one_way:
            raise ConfigError(
                "tbptt",
                f"needs a unidirectional network of the per-step architectures: "
                f"{', '.join(TBPTT_ARCHITECTURES)}",
            )
    if info_flow < 0:
        raise ConfigError("info_flow", "must be >= 0")
    if info_flow:
        if net.name not in INFO_FLOW_ARCHITECTURES or not one_way:
            raise ConfigError(
                "info_flow",
                f"needs a unidirectional recurrence that reads the input, in one of: "
                f"{', '.join(INFO_FLOW_ARCHITECTURES)}",
            )
        if not any(p.requires_grad for p in recurrence.parameters()):
            raise ConfigError("info_flow", "the recurrence has no trained weights to act on")


def recording(net: Network, info_flow: float) -> AbstractContextManager[list[list[torch.Tensor]]]:
    """The states h(1..T) of each call of the first recurrence, when Omega needs them (a
    weight `info_flow` > 0); within the block the recurrence runs step by step
    (`seqmodels.training.recording_states`)."""
    if not info_flow:
        return nullcontext([])
    recurrence = first_recurrence(net)  # found each time: an attribute would register it
    return nullcontext([]) if recurrence is None else recording_states(recurrence)


__all__ = ["check_switches", "recording"]
