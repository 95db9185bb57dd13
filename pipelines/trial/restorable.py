"""A restored trial resumes from a checkpoint that exists.

Ray Tune deletes a trial's checkpoints beyond the best `keep_checkpoints` as soon as a newer one
is registered, and saves the experiment's state (what `Tuner.restore` reads) at most every
`TUNE_GLOBAL_CHECKPOINT_S`, uploading it in the background. A driver killed between the two
leaves a saved state whose trial's latest checkpoint Tune has since deleted. (Ctrl-C lets Tune
save its state last, `flows.stop_tuning`, except in the moment before Tune starts its loop.)
`Tuner.restore` then fails that trial at once: "Could not recover from checkpoint as it does not
exist on storage anymore", again on its retry, and the study loses it.

`RestorableCheckpoints` checks, as each trial's worker starts (before Tune restores it), that the
checkpoint Tune will restore from exists. If it is gone, the trial goes on from its newest
checkpoint that still exists, or else from its first epoch. It repeats epochs its MLflow run
already holds; `trial_runs.TrialRuns` does not log them twice.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow.fs
from ray import tune
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.tune.experiment import Trial

log = logging.getLogger(__name__)


def exists(checkpoint: tune.Checkpoint) -> bool:
    """Whether the checkpoint's directory is still on its storage."""
    info = checkpoint.filesystem.get_file_info(checkpoint.path)
    return info.type != pyarrow.fs.FileType.NotFound


def drop_missing(trial: Trial) -> list[str]:
    """Forget the trial's checkpoints that are no longer on storage, if its latest is one of
    them; the newest that remains becomes its latest. Returns the paths forgotten."""
    manager = trial.run_metadata.checkpoint_manager
    latest = manager.latest_checkpoint_result if manager is not None else None
    if latest is None or exists(latest.checkpoint):
        return []
    known = [*manager.best_checkpoint_results, latest]
    kept = [result for result in known if result is not latest and exists(result.checkpoint)]
    gone = [result.checkpoint.path for result in known if result not in kept]
    # A new manager, given what remains in the order it was saved: its bookkeeping (best N,
    # latest) is then Tune's own, and it never tries to delete what is already gone.
    repaired = _CheckpointManager(checkpoint_config=manager.checkpoint_config)
    for result in sorted(kept, key=lambda r: r.metrics.get("training_iteration", 0)):
        repaired.register_checkpoint(result)
    trial.run_metadata.checkpoint_manager = repaired
    trial.run_metadata.invalidate_cache()
    trial.invalidate_json_state()
    return sorted(set(gone))


class RestorableCheckpoints(tune.Callback):
    """Repairs a starting trial's checkpoints (`drop_missing`) before Tune restores it."""

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        gone = drop_missing(trial)
        if gone:
            now = trial.checkpoint
            log.warning(
                "trial %s: its checkpoint %s is no longer on storage (Tune deleted it after it "
                "last saved its state); it goes on from %s",
                trial.trial_id,
                gone[-1],
                now.path if now is not None else "its first epoch",
            )
