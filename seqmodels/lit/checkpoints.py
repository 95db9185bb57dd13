"""Checkpoints saved by earlier versions of the modules, made loadable by today's."""

from __future__ import annotations

import copy
from typing import Any

MANUAL_STEPS = "epoch_loop.manual_optimization.optim_step_progress"
AUTOMATIC = "epoch_loop.automatic_optimization.optim_progress"


def carry_step_count(checkpoint: dict[str, Any]) -> None:
    """Continue, in place, the step count of a checkpoint saved under automatic optimization.

    Lightning counts optimizer steps per mode, and `global_step` reads the current mode's
    count: a trial saved before the modules stepped their optimizer themselves would resume
    at step 0, and the clock of scheduled sampling with it. A checkpoint that counted its
    steps by hand is left as it is.
    """
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    manual = loops.get(MANUAL_STEPS)
    automatic = loops.get(AUTOMATIC, {})
    steps = automatic.get("optimizer", {}).get("step")
    if manual and steps and not manual["total"]["completed"]:
        loops[MANUAL_STEPS] = copy.deepcopy(steps)


__all__ = ["carry_step_count"]
