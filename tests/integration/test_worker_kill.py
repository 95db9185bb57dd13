"""A trial whose Ray worker is SIGKILLed mid-epoch resumes from its checkpoint and finishes.

A SIGKILL of a worker (the kernel's OOM killer, a lost node) costs a trial one of Tune's
retries (`tuning.run_config`); the retry must then train on to the end. One local Ray session
(2 CPUs, one per trial, as on a 2-core laptop) runs the same two-trial search three times, with
the study's own Tune settings (`flows`: the retry budget, checkpoints, reused workers). In
each, one trial's worker process is killed by its PID in the middle of an epoch: early, midway,
and as the other trial ends. Tune starts a fresh worker for the retry; when the other trial
ends before that worker is up (a few seconds on an idle laptop, 10-30 s on a busy 2-core
machine), the retry takes the other trial's finished worker instead (`reuse_workers()`) and
Tune removes the one it had started. Every trial must end FINISHED in Tune and in MLflow, with
each epoch logged once, whichever worker its retry ran in.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import tune

from tests.conftest import descendants

pytestmark = pytest.mark.slow

EPOCHS = 30
SPEC: dict[str, Any] = {
    "name": "killed",
    "task": {"name": "adding", "options": {"length": 30, "n_train": 1000, "n_val": 100}},
    "variants": {"rnn": {"cell": "tanh", "hidden_size": 16}},
    "search": {
        "space": {"lr": {"loguniform": [0.003, 0.03]}},
        "trials_per_variant": 2,
        "scheduler": {"name": "fifo"},
    },
    "fixed": {"batch_size": 50, "max_epochs": EPOCHS},
    "seeds": 1,
}


class KillMidEpoch(tune.Callback):
    """SIGKILLs one running trial's worker, once, half an epoch after a trial's `epoch`-th
    result: that trial's own worker, or with `other`, the worker of the other trial, which
    is then behind it, when the other has reported at least once.

    The PID is the one the trial's results report, and it is killed only if it is a process
    below this one (a Ray worker of this session): PIDs wrap around on a busy machine.
    """

    def __init__(self, epoch: int, other: bool = False) -> None:
        self.epoch = epoch
        self.other = other
        self.target: str | None = None
        self.killed: list[int] = []
        self.pids: dict[str, list[int]] = {}  # trial id -> the PIDs its results came from

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        pid, epoch = int(result["pid"]), int(result["training_iteration"])
        if pid not in self.pids.setdefault(trial.trial_id, []):
            self.pids[trial.trial_id].append(pid)
        if self.target is not None or epoch < self.epoch:
            return
        if not self.other:
            self.target = trial.trial_id
        else:
            behind = [
                t.trial_id
                for t in trials
                if t is not trial and t.status == t.RUNNING and t.trial_id in self.pids
            ]
            if not behind:
                return
            self.target = behind[0]
        victim = self.pids[self.target][-1]
        threading.Timer(result["time_this_iter_s"] / 2, self._kill, [victim]).start()

    def _kill(self, pid: int) -> None:
        if pid in descendants(os.getpid()):
            os.kill(pid, signal.SIGKILL)
            self.killed.append(pid)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """pipelines.study.flows, imported with a private SEQLAB_HOME (Prefect reads it at import) and
    no servers configured: the embedded default, a local Ray."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQLAB_HOME", str(tmp_path_factory.mktemp("killed") / "home"))
        for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"):
            patch.delenv(var, raising=False)
        from pipelines.ops import settings

        settings.configure_environment()
        import pipelines.study.flows  # noqa: F401  (the flow and every phase)
        from pipelines import study

        yield study


def _search(study, client, experiment_id: str, killer: KillMidEpoch, label: str):
    """A two-trial search of one variant, as `trials.tune_trials` configures its Tuner; (its
    results, parent run)."""
    from pipelines.data import store
    from pipelines.ops import settings
    from pipelines.spec import parse_spec
    from pipelines.tracking import trial_runs
    from pipelines.trial.trainable import train_trial

    spec = parse_spec(SPEC)
    dataset = store.prepare("adding", spec.task.options.__dict__, 0, settings.seqlab_home())
    parent = client.create_run(experiment_id, tags={"kind": "study"}).info.run_id
    run_config = study.tuning.run_config(
        label,
        [trial_runs.TrialRuns(client, experiment_id, parent, "trial"), killer],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=study.space.keep_checkpoints(spec),
            checkpoint_score_attribute=study.space.METRIC,
            checkpoint_score_order=study.space.MODE,
        ),
    )
    tuner = tune.Tuner(
        study.tuning.trainable(
            train_trial, spec, dataset, checkpoint_every=study.space.checkpoint_every(spec)
        ),
        param_space=study.space.trial_space(spec, "rnn"),
        tune_config=tune.TuneConfig(
            metric=study.space.METRIC,
            mode=study.space.MODE,
            num_samples=spec.search.trials_per_variant,
            scheduler=study.space.scheduler(spec),
            reuse_actors=study.tuning.reuse_workers(),
        ),
        run_config=run_config,
    )
    return study.tuning.fit(tuner, parent), parent


def test_a_trial_whose_worker_is_killed_mid_epoch_finishes(
    study, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from pipelines import tracking
    from pipelines.study import failures

    assert study.tuning.reuse_workers(), "the local default, where Tune reuses workers"
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, f"killed-{tmp_path.name}")
    schedules = {
        "early": KillMidEpoch(epoch=2),
        "midway": KillMidEpoch(epoch=EPOCHS // 2, other=True),
        "as-the-other-ends": KillMidEpoch(epoch=EPOCHS - 2, other=True),
    }
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with failures.study_log(SPEC["name"]) as log:
            _kill_each(study, client, experiment_id, schedules)
            time.sleep(2)  # the raylet's message on the last death arrives after the search
    finally:
        ray.shutdown()
    # the terminal got nothing of Ray's on those deaths; the study's log has the raylet's word
    out, err = capfd.readouterr()
    assert "(raylet)" not in out + err and "\x1b[" not in out + err, out + err
    assert "A worker died or was killed" in log.read_text()


def _kill_each(study, client, experiment_id: str, schedules: dict[str, KillMidEpoch]) -> None:
    from pipelines import tracking

    for label, killer in schedules.items():
        results, parent = _search(study, client, experiment_id, killer, label)
        where = f"{label}: killed {killer.killed}, the PIDs each trial reported {killer.pids}"
        assert len(killer.killed) == 1, where
        for result in results:
            assert result.error is None, f"{where}: {result.error}"
            assert result.metrics["training_iteration"] == EPOCHS, where
        (killed,) = [r for r in results if r.metrics["trial_id"] == killer.target]
        # resumed from a checkpoint in another worker, not trained again from its start
        assert killed.metrics["iterations_since_restore"] < EPOCHS, where
        assert killer.pids[killer.target][-1] != killer.killed[0], where
        runs = tracking.child_runs(client, parent, "trial")
        assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(
            r.metrics["trial_id"] for r in results
        ), f"{where}: one MLflow run per trial"
        for run in runs:
            assert run.info.status == "FINISHED", f"{where}: {run.info.status}"
            history = client.get_metric_history(run.info.run_id, "val/loss")
            steps = sorted(m.step for m in history)
            assert steps == list(range(EPOCHS)), f"{where}: each epoch once, {steps}"
