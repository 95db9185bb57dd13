"""`restorable.drop_missing`: the checkpoint a restored trial goes on from when its latest is gone.

Tune's own bookkeeping (`_CheckpointManager`, keeping the best 2 by val/loss and the latest) on
checkpoint directories on disk; the trial is reduced to what `drop_missing` touches.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

from ray import tune
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune.trainable.metadata import _TrainingRunMetadata

from pipelines.trial.restorable import drop_missing


def _trial(tmp_path: Path, losses: list[float]) -> SimpleNamespace:
    """A trial that checkpointed once per epoch with these val/losses, as Tune records it."""
    config = tune.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="val/loss", checkpoint_score_order="min"
    )
    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = _CheckpointManager(checkpoint_config=config)
    for epoch, loss in enumerate(losses, start=1):
        directory = tmp_path / f"checkpoint_{epoch - 1:06d}"
        directory.mkdir()
        (directory / "checkpoint.ckpt").write_text(str(epoch))
        result = _TrainingResult(
            checkpoint=tune.Checkpoint.from_directory(str(directory)),
            metrics={"training_iteration": epoch, "val/loss": loss},
        )
        metadata.checkpoint_manager.register_checkpoint(result)
    trial = SimpleNamespace(run_metadata=metadata, invalidated=0)
    trial.invalidate_json_state = lambda: setattr(trial, "invalidated", trial.invalidated + 1)
    return trial


def _latest(trial: SimpleNamespace) -> str | None:
    latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    return None if latest is None else Path(latest.checkpoint.path).name


def test_a_trial_whose_latest_checkpoint_exists_is_left_as_it_is(tmp_path: Path) -> None:
    trial = _trial(tmp_path, [0.5, 0.4, 0.3])
    manager = trial.run_metadata.checkpoint_manager
    assert drop_missing(trial) == []
    assert trial.run_metadata.checkpoint_manager is manager and trial.invalidated == 0


def test_the_newest_checkpoint_still_on_disk_becomes_the_latest(tmp_path: Path) -> None:
    # epoch 3 was worse than 1 and 2: Tune kept 1 and 2 (the best) and 3 (the latest)
    trial = _trial(tmp_path, [0.5, 0.4, 0.6])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_000000",
        "checkpoint_000001",
        "checkpoint_000002",
    ]
    shutil.rmtree(tmp_path / "checkpoint_000002")
    assert drop_missing(trial) == [str(tmp_path / "checkpoint_000002")]
    assert _latest(trial) == "checkpoint_000001"
    best = trial.run_metadata.checkpoint_manager.best_checkpoint_results
    names = [Path(r.checkpoint.path).name for r in best]
    assert names == ["checkpoint_000000", "checkpoint_000001"]
    assert trial.invalidated == 1
    assert (tmp_path / "checkpoint_000000").is_dir(), "repairing deletes nothing"


def test_with_no_checkpoint_left_the_trial_starts_from_its_first_epoch(tmp_path: Path) -> None:
    trial = _trial(tmp_path, [0.5, 0.4, 0.3])  # improving: Tune kept only epochs 2 and 3
    for directory in tmp_path.iterdir():
        shutil.rmtree(directory)
    gone = drop_missing(trial)
    assert gone == [str(tmp_path / "checkpoint_000001"), str(tmp_path / "checkpoint_000002")]
    assert _latest(trial) is None
