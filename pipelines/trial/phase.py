"""Which phase of a study a trial belongs to, read from its config: a search trial, or a seeded
repeat of its variant's best configuration (`phase: repeat`). Both run in the study's one Tuner
(`study.routing`), so each trial's config says which it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PHASE = "phase"  # the config key that marks a seeded repeat
REPEAT = "repeat"
OF_TRIAL = "of_trial"  # in a repeat's config: the search trial whose configuration it retrains


def is_repeat(config: Mapping[str, Any] | None) -> bool:
    """Whether a trial's config is a seeded repeat's (else it is a search trial's)."""
    return (config or {}).get(PHASE) == REPEAT
