"""`seqlab resume`: a study stopped by Ctrl-C, then by a killed driver, finishes as if it had not.

One study is interrupted twice, as users interrupt them:
1. Ctrl-C (SIGINT to the whole foreground process group) once some trials have finished;
2. SIGKILL of the resumed driver and everything it started, once more trials (or repeats) have
   finished.
A second `seqlab resume` then completes it. Afterwards every trial and repeat has exactly one
MLflow run, each epoch is logged once, and the trials that finished before an interruption
trained no epoch again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipelines.cli.process import INTERRUPT_GRACE_S
from tests.conftest import Driver, embedded_env, seqlab

pytestmark = pytest.mark.slow

STUDY, VARIANTS, TRIALS, EPOCHS, SEEDS = "resumable", ("rnn", "lstm"), 2, 2, 2
SPEC = {
    "name": STUDY,
    # Trials of a few seconds: the study is interrupted, and its driver killed, while some run.
    "task": {"name": "adding", "options": {"length": 10, "n_train": 2048, "n_val": 64}},
    "variants": {
        "rnn": {"cell": "tanh", "hidden_size": 8},
        "lstm": {"cell": "lstm", "hidden_size": 8},
    },
    "search": {
        "space": {"lr": {"loguniform": [0.001, 0.01]}},
        "trials_per_variant": TRIALS,
        "scheduler": {"name": "fifo"},
    },
    "fixed": {"batch_size": 64, "max_epochs": EPOCHS},
    "seeds": SEEDS,
}


def _children(client: MlflowClient, **tags: str) -> list:
    experiment = client.get_experiment_by_name(STUDY)
    if experiment is None:
        return []
    clauses = ["tags.mlflow.parentRunId != ''"] + [f"tags.{k} = '{v}'" for k, v in tags.items()]
    return client.search_runs([experiment.experiment_id], " and ".join(clauses), max_results=1000)


def _history(client: MlflowClient, run) -> list[tuple[int, float, int]]:
    """A run's val/loss history as (step, value, timestamp): any epoch trained again shows."""
    history = client.get_metric_history(run.info.run_id, "val/loss")
    return sorted((m.step, m.value, m.timestamp) for m in history)


def _finished(client: MlflowClient, kind: str) -> list:
    return [r for r in _children(client, kind=kind) if r.info.status == "FINISHED"]


def _done(client: MlflowClient) -> int:
    """How many trials and repeats have finished: warm workers train this spec's trials in
    about a second, so all of them may be over by the time a Ctrl-C lands."""
    return len(_finished(client, "trial")) + len(_finished(client, "repeat"))


def test_a_study_resumes_after_ctrl_c_and_after_its_driver_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = tmp_path / "resumable.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    env = embedded_env(home)
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    drivers: list[Driver] = []
    try:
        # 1. Ctrl-C once the first trials have finished.
        first = Driver(env, "run", str(spec))
        drivers.append(first)
        first.wait_for(lambda: len(_finished(client, "trial")) >= 1)
        pressed = time.monotonic()
        assert first.interrupt() == 130, first.output()[-4000:]
        # it left once the study had closed, not when its grace for Prefect ran out
        assert time.monotonic() - pressed < INTERRUPT_GRACE_S - 5, first.output()[-4000:]
        assert "seqlab resume resumable" in first.output()
        (parent,) = [
            r
            for r in client.search_runs([client.get_experiment_by_name(STUDY).experiment_id])
            if r.data.tags.get("kind") == "study"
        ]
        parent_id = parent.info.run_id
        assert parent.info.status == "KILLED"
        assert not [r for r in _children(client) if r.info.status == "RUNNING"]
        before = {r.info.run_id: _history(client, r) for r in _finished(client, "trial")}
        assert len(before) >= 1

        # 2. Resume, then kill the driver outright once more trials or repeats have finished.
        done = _done(client)
        assert done < TRIALS * len(VARIANTS) + SEEDS * len(VARIANTS), "nothing left to resume"
        second = Driver(env, "resume", STUDY)
        drivers.append(second)
        second.wait_for(lambda: _done(client) >= done + 1)
        second.kill()
        assert client.get_run(parent_id).info.status == "RUNNING"  # nobody could end it

        # 3. Resume again: it completes.
        third = Driver(env, "resume", STUDY)
        drivers.append(third)
        assert third.finish() == 0, third.output()[-4000:]
        assert f"resuming parent run {parent_id}" in third.output()
    finally:
        for driver in drivers:
            driver.stop()

    assert client.get_run(parent_id).info.status == "FINISHED"
    unfinished = [
        (r.info.status, r.data.tags["kind"], r.data.tags["variant"], r.data.tags["trial_id"])
        for r in _children(client)
        if r.info.status != "FINISHED"
    ]
    assert not unfinished, third.output()[-4000:]
    for variant in VARIANTS:
        trials = _children(client, kind="trial", variant=variant)
        assert len(trials) == TRIALS, f"{variant}: one run per trial"
        assert len({r.data.tags["trial_id"] for r in trials}) == TRIALS
        repeats = _children(client, kind="repeat", variant=variant)
        assert sorted(int(r.data.tags["seed"]) for r in repeats) == [1, 2]
        versions = client.search_model_versions(f"name = '{STUDY}-{variant}'")
        assert len(versions) == 1, "each champion is registered once"
    for run in _children(client):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
        assert sorted(steps) == list(range(EPOCHS)), f"run {run.info.run_id}: each epoch once"
    after = {r.info.run_id: _history(client, r) for r in _finished(client, "trial")}
    assert all(after[run_id] == history for run_id, history in before.items()), "not run again"
    parent = client.get_run(parent_id)
    assert "seqlab.tune.trials" in parent.data.tags
    assert parent.data.tags["prefect.resumed_by_flow_run_id"]


def test_resume_refusals_are_one_line_errors(home: Path) -> None:
    result = seqlab("resume", "no-such-study")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("seqlab: error: study: no study 'no-such-study' in ")


def test_a_spec_this_seqlab_reads_differently_is_refused_in_one_line(home: Path) -> None:
    from pipelines import tracking
    from pipelines.spec import parse_spec

    spec = parse_spec(SPEC)
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, STUDY)
    run = client.create_run(experiment_id, tags={"kind": "study", "spec.hash": "0123456789abcdef"})
    client.log_dict(run.info.run_id, spec.model_dump(mode="json"), "spec.json")
    client.set_terminated(run.info.run_id, "KILLED")
    result = seqlab("resume", STUDY)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"seqlab: error: run {run.info.run_id} spec.json: "), line
    assert f"digest {spec.digest()}" in line and "0123456789abcdef" in line
