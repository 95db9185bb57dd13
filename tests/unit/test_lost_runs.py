"""After a resumed Tuner finishes, the runs of trials it lost (started, or even ended, after
Tune's last save, then run again under new ids) are deleted, whatever their status; every other
child run of the study stays."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines import tracking


def test_runs_of_trials_the_tuner_does_not_know_are_deleted_whatever_their_status(
    tmp_path: Path,
) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("study")
    parent = client.create_run(experiment).info.run_id

    def child(trial_id: str | None, status: str, kind: str = "repeat") -> str:
        tags = {"mlflow.parentRunId": parent, "kind": kind}
        tags |= {"trial_id": trial_id} if trial_id else {}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        client.set_terminated(run_id, status)
        return run_id

    kept = {
        child("a_00000", "FINISHED", kind="trial"),
        child("a_00001", "FAILED", kind="trial"),
        child("a_00004", "FINISHED"),
        child(None, "FINISHED", kind="champion"),  # no trial's: not the Tuner's to judge
    }
    lost = {
        child("a_00002", "FINISHED"),  # ended after the last save: its seed ran again
        child("a_00003", "KILLED"),  # still going when the driver died
    }

    deleted = tracking.delete_lost(client, parent, {"a_00000", "a_00001", "a_00004"})

    assert deleted == len(lost)
    assert {run.info.run_id for run in tracking.child_runs(client, parent)} == kept
    for run_id in lost:
        run = client.get_run(run_id)
        assert run.info.lifecycle_stage == "deleted"
        assert run.data.tags["seqlab.lost"]
