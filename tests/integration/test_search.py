"""Search algorithms and schedulers: the wiring of each option, and real tiny runs on Ray."""

from __future__ import annotations

import ast
import math
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from pipelines.spec import SpecError, StudySpec, parse_spec

BASE: dict[str, Any] = {
    "name": "search",
    "task": {"name": "adding", "options": {"length": 6, "n_train": 64, "n_val": 32, "n_test": 32}},
    "variants": {"rnn": {"cell": "tanh", "hidden_size": 4}},
    "fixed": {"max_epochs": 4, "batch_size": 32},
    "seeds": 1,
}


def _spec(**search: Any) -> StudySpec:
    return parse_spec({**BASE, "search": search})


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """pipelines.study.flows, imported with a private SEQLAB_HOME (Prefect reads it at import)."""
    os.environ["SEQLAB_HOME"] = str(tmp_path_factory.mktemp("search") / "home")
    from pipelines.ops import settings

    settings.configure_environment()
    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study

    return study


def test_grid_enumerates_every_combination(study) -> None:
    spec = _spec(
        algorithm="grid",
        space={"lr": {"choice": [0.01, 0.1]}, "hidden_size": {"choice": [4, 8, 16]}},
        trials_per_variant=6,
    )
    space = study.space.search_space(spec)
    assert space["lr"] == {"grid_search": [0.01, 0.1]}
    assert space["hidden_size"] == {"grid_search": [4, 8, 16]}
    with pytest.raises(SpecError, match="set it to 6"):
        parse_spec({**BASE, "search": {**spec.search.model_dump(), "trials_per_variant": 5}})


@pytest.mark.parametrize(
    "name,kind",
    [
        ("fifo", "FIFOScheduler"),
        ("asha", "AsyncHyperBandScheduler"),
        ("hyperband", "HyperBand"),
        ("pbt", "PopulationBasedTraining"),
    ],
)
def test_each_scheduler(study, name: str, kind: str) -> None:
    spec = _spec(
        scheduler={"name": name, "grace_period": 2, "perturbation_interval": 2},
        space={"lr": {"loguniform": [1e-3, 1e-1]}, "hidden_size": {"choice": [4, 8]}},
    )
    built = study.space.scheduler(spec)
    assert type(built).__name__ == kind
    if name == "asha":
        assert built._max_t == 4 and built._time_attr == "training_iteration"
    if name == "pbt":
        # the network's shape is never perturbed: a restored checkpoint must still fit
        assert set(built._hyperparam_mutations["train"]) == {"lr"}


def test_pbt_needs_a_training_hyperparameter_to_perturb() -> None:
    with pytest.raises(SpecError, match="search.scheduler.name: pbt perturbs"):
        _spec(scheduler={"name": "pbt"}, space={"hidden_size": {"choice": [4, 8]}})


@pytest.mark.slow
@pytest.mark.parametrize(
    "search",
    [
        {
            "algorithm": "optuna",
            "scheduler": {"name": "hyperband"},
            # TPE samples the nested cell option too; only this variant has it
            "per_variant": {"rnn": {"cell_options.alpha": {"uniform": [0.1, 0.9]}}},
        },
        {"scheduler": {"name": "pbt", "perturbation_interval": 1}},
    ],
    ids=["optuna-hyperband", "pbt"],
)
def test_real_search_on_local_ray(study, tmp_path: Path, search: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    from pipelines import tracking
    from pipelines.data import store
    from pipelines.ops import settings

    variants = {"rnn": {"cell": "leaky" if "per_variant" in search else "tanh", "hidden_size": 4}}
    spec = parse_spec(
        {
            **BASE,
            "variants": variants,
            "search": {
                **search,
                "space": {"lr": {"loguniform": [1e-3, 1e-1]}},
                "trials_per_variant": 3,
            },
        }
    )
    dataset = store.prepare("adding", spec.task.options.__dict__, 0, settings.seqlab_home())
    client: MlflowClient = tracking.client()
    experiment_id = tracking.ensure_experiment(client, f"search-{tmp_path.name}")
    parent = client.create_run(experiment_id, tags={"kind": "study"}).info.run_id
    with study.tuning.ray_session():
        searched = study.trials.tune_trials.fn(spec, dataset, experiment_id, parent, repeats=False)
    (outcome,) = searched.outcomes
    assert outcome.trials == 3 and outcome.failed == 0
    assert math.isfinite(outcome.best_val)
    assert Path(outcome.checkpoint_dir, "checkpoint").is_file()
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert len(children) == 3
    assert all(c.info.status == "FINISHED" for c in children)
    if "per_variant" in search:
        alphas = {ast.literal_eval(c.data.params["cell_options"])["alpha"] for c in children}
        assert len(alphas) == 3 and all(0.1 <= a <= 0.9 for a in alphas)


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_two_runs_of_a_spec_search_the_same_trials(study, tmp_path: Path, algorithm: str) -> None:
    """Every searcher is seeded from the spec (`search.seed`, else `fixed.seed`)."""
    from pipelines import tracking
    from pipelines.data import store
    from pipelines.ops import settings

    spec = parse_spec(
        {
            **BASE,
            "variants": {"rnn": {"cell": "tanh"}, "gru": {"cell": "gru"}},
            "search": {
                "algorithm": algorithm,
                "space": {"lr": {"loguniform": [1e-3, 1e-1]}, "hidden_size": {"choice": [4, 8]}},
                "trials_per_variant": 2,
                "scheduler": {"name": "fifo"},
                "seed": 11,
            },
            "fixed": {"max_epochs": 1, "batch_size": 32},
        }
    )
    dataset = store.prepare("adding", spec.task.options.__dict__, 0, settings.seqlab_home())
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, f"seeded-{tmp_path.name}")
    drawn = []
    for _ in range(2):
        parent = client.create_run(experiment_id, tags={"kind": "study"}).info.run_id
        with study.tuning.ray_session():
            study.trials.tune_trials.fn(spec, dataset, experiment_id, parent, repeats=False)
        runs = tracking.child_runs(client, parent, "trial")
        drawn.append(
            sorted(
                (r.data.tags["variant"], r.data.params["lr"], r.data.params["hidden_size"])
                for r in runs
            )
        )
    assert len(drawn[0]) == 4 and drawn[0] == drawn[1]


LEAKY = {
    **BASE,
    "variants": {"rnn": {"cell": "tanh"}, "leaky": {"cell": "leaky", "hidden_size": 4}},
}


def _leaky(**search: Any) -> StudySpec:
    return parse_spec({**LEAKY, "search": search})


def test_a_variant_searches_its_own_options_next_to_the_shared_space(study) -> None:
    from ray.tune.search.sample import Float

    spec = _leaky(
        space={"lr": {"loguniform": [1e-3, 1e-1]}},
        per_variant={"leaky": {"cell_options.alpha": {"uniform": [0.1, 0.9]}}},
    )
    leaky = study.space.trial_space(spec, "leaky")
    assert isinstance(leaky["train"]["lr"], Float)
    assert isinstance(leaky["model"]["cell_options"]["alpha"], Float)
    rnn = study.space.trial_space(spec, "rnn")
    assert isinstance(rnn["train"]["lr"], Float) and rnn["model"]["cell_options"] == {}
    assert spec.search.variant_space("rnn").keys() == {"lr"}


@pytest.mark.parametrize(
    ("per_variant", "field", "fragment"),
    [
        ({"gru": {"lr": {"uniform": [0.1, 0.2]}}}, "search.per_variant.gru", "choose from: rnn"),
        ({"rnn": {"cell_options.alpha": {"uniform": [0.1, 0.9]}}}, "cell_options.alpha", "tanh"),
        ({"leaky": {"cell_options.alpha": {"uniform": [0.5, 1.5]}}}, "alpha", "[0, 1)"),
        ({"leaky": {"cell_options.time_scales": {"uniform": [1, 3]}}}, "time_scales", "integer"),
        ({"leaky": {"cell": {"choice": ["lstm"]}}}, "per_variant.leaky.cell", "scientific"),
        ({"leaky": {"lr": {"uniform": [0.1, 0.2]}}}, "search.per_variant.leaky.lr", "also in"),
    ],
    ids=["unknown-variant", "not-its-option", "out-of-range", "wrong-type", "scientific", "twice"],
)
def test_bad_per_variant_additions_name_the_field(per_variant, field: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        _leaky(space={"lr": {"loguniform": [1e-3, 1e-1]}}, per_variant=per_variant)
    assert field in caught.value.field and fragment in caught.value.message, str(caught.value)


def test_an_option_the_variant_fixes_cannot_be_searched() -> None:
    raw = {**LEAKY, "variants": {"leaky": {"cell": "leaky", "cell_options": {"alpha": 0.3}}}}
    search = {"per_variant": {"leaky": {"cell_options.alpha": {"uniform": [0.1, 0.9]}}}}
    with pytest.raises(SpecError, match="set to 0.3 by the variant"):
        parse_spec({**raw, "search": search})


def test_a_grid_keeps_the_budget_equal_across_variants() -> None:
    space = {"lr": {"choice": [0.01, 0.1]}}
    one = {"leaky": {"cell_options.alpha": {"choice": [0.5]}}}
    assert _leaky(algorithm="grid", space=space, per_variant=one, trials_per_variant=2)
    two = {"leaky": {"cell_options.alpha": {"choice": [0.5, 0.9]}}}
    with pytest.raises(SpecError, match="same for every variant"):
        _leaky(algorithm="grid", space=space, per_variant=two, trials_per_variant=2)


class KillOnce(tune.Callback):
    """SIGKILLs a trial's worker process after the trial's `epoch`-th result, once: a crash such
    as a lost node or the out-of-memory killer would cause."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.killed: list[int] = []

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if not self.killed and result["training_iteration"] == self.epoch:
            self.killed.append(result["pid"])
            os.kill(result["pid"], signal.SIGKILL)


@pytest.mark.slow
def test_a_crashed_trial_is_retried_from_its_last_checkpoint(study, tmp_path: Path) -> None:
    from pipelines import tracking
    from pipelines.data import store
    from pipelines.ops import settings
    from pipelines.tracking import trial_runs
    from pipelines.trial.trainable import train_trial

    spec = _spec(space={"lr": {"choice": [0.01]}}, trials_per_variant=1)
    dataset = store.prepare("adding", spec.task.options.__dict__, 0, settings.seqlab_home())
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, f"retry-{tmp_path.name}")
    parent = client.create_run(experiment_id, tags={"kind": "study"}).info.run_id
    killer = KillOnce(epoch=2)
    runs = trial_runs.TrialRuns(client, experiment_id, parent, "trial")
    tuner = tune.Tuner(
        study.tuning.trainable(train_trial, spec, dataset),
        param_space=study.space.trial_space(spec, "rnn"),
        tune_config=tune.TuneConfig(
            metric=study.space.METRIC, mode=study.space.MODE, num_samples=1
        ),
        run_config=study.tuning.run_config("retry", [runs, killer]),
    )
    with study.tuning.ray_session():
        (result,) = study.tuning.fit(tuner, parent)
    assert killer.killed, "the worker was killed once"
    assert result.error is None and result.metrics["training_iteration"] == 4
    # restored from a checkpoint (Tune's newest when the worker died), not trained from scratch
    assert result.metrics["iterations_since_restore"] < 4
    (run,) = tracking.child_runs(client, parent, "trial")
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert sorted(steps) == [0, 1, 2, 3], "each epoch logged once, across the retry"


def _one_trial(study, experiment: str, epochs: int) -> tuple[StudySpec, Any, str, str, Any]:
    """One rnn trial of `epochs` epochs that checkpoints every epoch: (its spec, the MLflow
    client, a new experiment's id, a parent run's id, a factory of its trainable). Call the
    factory within a Ray session: it puts the dataset in the object store."""
    from pipelines import tracking
    from pipelines.data import store
    from pipelines.ops import settings
    from pipelines.trial.trainable import train_trial

    spec = parse_spec(
        {**BASE, "fixed": {**BASE["fixed"], "max_epochs": epochs}, "search": {"space": {}}}
    )
    dataset = store.prepare("adding", spec.task.options.__dict__, 0, settings.seqlab_home())
    client = tracking.client()
    experiment_id = tracking.ensure_experiment(client, experiment)
    parent = client.create_run(experiment_id, tags={"kind": "study"}).info.run_id

    def trainable() -> Any:
        return study.tuning.trainable(train_trial, spec, dataset, checkpoint_every=1)

    return spec, client, experiment_id, parent, trainable


class InterruptOnce(tune.Callback):
    """Raises KeyboardInterrupt in the driver after a trial's `epoch`-th result, as Ctrl-C does
    (seqlab turns Tune's own SIGINT handler off), the first time only: `marker` records it
    across the pickled copy that `Tuner.restore` brings back."""

    def __init__(self, epoch: int, marker: Path) -> None:
        self.epoch = epoch
        self.marker = marker

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result["training_iteration"] == self.epoch and not self.marker.exists():
            self.marker.touch()
            raise KeyboardInterrupt


@pytest.mark.slow
def test_a_resumed_trial_whose_checkpoint_tune_deleted_goes_on_from_one_that_exists(
    study, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tune deletes checkpoints beyond the best N as newer ones come, and saves its state only
    every few seconds, so a stopped driver can leave a state whose latest checkpoint is gone.
    Here that checkpoint is deleted by hand after the interruption. The resumed trial goes on
    from a checkpoint that exists (or its first epoch), finishes, and logs each epoch once;
    without `RestorableCheckpoints` Tune fails it, twice, with "does not exist on storage"."""
    from pipelines import tracking
    from pipelines.tracking import trial_runs

    epochs = 8
    spec, client, experiment_id, parent, trainable = _one_trial(
        study, f"gone-{tmp_path.name}", epochs
    )
    run_config = study.tuning.run_config(
        "gone",
        [
            trial_runs.TrialRuns(client, experiment_id, parent, "trial"),
            InterruptOnce(epoch=5, marker=tmp_path / "interrupted"),
        ],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=2,
            checkpoint_score_attribute=study.space.METRIC,
            checkpoint_score_order="min",
        ),
    )
    path = str(Path(run_config.storage_path) / run_config.name)
    with study.tuning.ray_session(), pytest.raises(KeyboardInterrupt):
        tuner = tune.Tuner(
            trainable(),
            param_space=study.space.trial_space(spec, "rnn"),
            tune_config=tune.TuneConfig(
                metric=study.space.METRIC, mode=study.space.MODE, num_samples=1
            ),
            run_config=run_config,
        )
        study.tuning.fit(tuner, parent)
    with (
        study.tuning.ray_session(),
        caplog.at_level("WARNING", logger="pipelines.trial.restorable"),
    ):
        (saved,) = tune.Tuner.restore(path, trainable=trainable()).get_results()
        assert saved.checkpoint is not None and Path(saved.checkpoint.path).is_dir()
        shutil.rmtree(saved.checkpoint.path)  # what Tune deleted after it last saved its state
        restored = tune.Tuner.restore(path, trainable=trainable(), resume_unfinished=True)
        (result,) = study.tuning.fit(restored, parent)
    assert result.error is None and result.metrics["training_iteration"] == epochs
    assert f"its checkpoint {saved.checkpoint.path} is no longer on storage" in caplog.text
    (run,) = tracking.child_runs(client, parent, "trial")
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert sorted(steps) == list(range(epochs)), "each epoch logged once, across the resume"


class CtrlCOnce(InterruptOnce):
    """Sends SIGINT to this process after a trial's `epoch`-th result, as Ctrl-C in a terminal
    does, the first time only; the handler in place is the study's (`cli.process.interruptible`)."""

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result["training_iteration"] == self.epoch and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_ctrl_c_stops_the_tuner_after_it_saves_every_result_it_has(
    study, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C while a Tuner fits: Tune stops as its own Ctrl-C handler stops it, saving the
    experiment's state once more, so the saved state holds every epoch MLflow holds and names
    a checkpoint that exists; `_fit` raises StudyInterrupted. Resumed, the trial goes on from
    that checkpoint, with no lost checkpoint to repair, and logs each epoch once. (With a
    KeyboardInterrupt raised in Tune's loop instead, as before, the saved state is older than
    what MLflow holds.)"""
    from pipelines import tracking
    from pipelines.cli import process
    from pipelines.tracking import trial_runs

    epochs = 12
    spec, client, experiment_id, parent, trainable = _one_trial(
        study, f"ctrl-c-{tmp_path.name}", epochs
    )
    ctrl_c = CtrlCOnce(epoch=4, marker=tmp_path / "interrupted")
    run_config = study.tuning.run_config(
        "ctrl-c", [trial_runs.TrialRuns(client, experiment_id, parent, "trial"), ctrl_c]
    )
    path = str(Path(run_config.storage_path) / run_config.name)
    with study.tuning.ray_session():
        tuner = tune.Tuner(
            trainable(),
            param_space=study.space.trial_space(spec, "rnn"),
            tune_config=tune.TuneConfig(
                metric=study.space.METRIC, mode=study.space.MODE, num_samples=1
            ),
            run_config=run_config,
        )
        with (
            pytest.raises(KeyboardInterrupt) as stopped,
            process.interruptible("interrupted", embedded=False),
        ):
            study.tuning.fit(tuner, parent)
        assert isinstance(stopped.value, study.tuning.StudyInterrupted), (
            "Tune returned, then _fit raised"
        )
        assert ctrl_c.marker.exists()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
        (run,) = tracking.child_runs(client, parent, "trial")
        assert run.info.status == "KILLED"
        logged = len(client.get_metric_history(run.info.run_id, "val/loss"))
        (saved,) = tune.Tuner.restore(path, trainable=trainable()).get_results()
        assert 4 <= saved.metrics["training_iteration"] < epochs
        assert saved.metrics["training_iteration"] == logged, "the state is as new as MLflow"
        assert saved.checkpoint is not None and Path(saved.checkpoint.path).is_dir()
        with caplog.at_level("WARNING", logger="pipelines.trial.restorable"):
            restored = tune.Tuner.restore(path, trainable=trainable(), resume_unfinished=True)
            (result,) = study.tuning.fit(restored, parent)
    assert "no longer on storage" not in caplog.text
    assert result.error is None and result.metrics["training_iteration"] == epochs
    # from the newest checkpoint Tune registered: the last epoch's, or the one before when Tune
    # stopped before it had fetched the last one (its Ctrl-C does the same)
    assert epochs - logged <= result.metrics["iterations_since_restore"] <= epochs - logged + 1
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert sorted(steps) == list(range(epochs)), "each epoch logged once, across the resume"


def _trial_config(**train: float) -> dict:
    """A trial's config as Tune hands it to the callbacks: a `TrialConfig`, nested."""
    from seqmodels.config import ModelConfig, TrainConfig, TrialConfig

    return TrialConfig(ModelConfig(), TrainConfig(**train), "rnn", 0).nested()


def test_epoch_metrics_are_written_in_the_background_and_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's report does not wait for MLflow; Tune's saved state and the run's end do."""
    import time
    from types import SimpleNamespace

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import trial_runs

    write = SqlAlchemyStore.log_batch

    def slow_write(self: SqlAlchemyStore, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.3)
        write(self, *args, **kwargs)

    monkeypatch.setattr(SqlAlchemyStore, "log_batch", slow_write)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("background")
    parent = client.create_run(experiment_id).info.run_id
    runs = trial_runs.TrialRuns(client, experiment_id, parent, "trial")
    trial = SimpleNamespace(trial_id="t1", config=_trial_config())
    runs.on_trial_start(0, [], trial)  # type: ignore[arg-type]
    run_id = runs.run_ids["t1"]

    began = time.perf_counter()
    for epoch in (1, 2, 3):
        result = {"training_iteration": epoch, "val/loss": 1.0 / epoch}
        runs.on_trial_result(0, [], trial, result)  # type: ignore[arg-type]
    assert time.perf_counter() - began < 0.3, "the driver waited for MLflow"

    runs.get_state()  # what Tune calls when it saves the experiment's state
    assert not runs.writer.calls.unfinished_tasks
    history = client.get_metric_history(run_id, "val/loss")
    assert sorted(m.step for m in history) == [0, 1, 2]

    runs.on_trial_result(0, [], trial, {"training_iteration": 4, "val/loss": 0.2})  # type: ignore[arg-type]
    runs.on_trial_complete(0, [], trial)  # type: ignore[arg-type]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val/loss"] == 0.2


def test_a_failed_background_write_is_raised_in_the_driver(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import trial_runs

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("failing")
    runs = trial_runs.TrialRuns(client, experiment_id, "parent", "trial")
    runs.run_ids["t1"] = "no-such-run"
    trial = SimpleNamespace(trial_id="t1", config={})
    runs.on_trial_result(0, [], trial, {"training_iteration": 1, "val/loss": 1.0})  # type: ignore[arg-type]
    with pytest.raises(MlflowException, match="no-such-run"):
        runs.get_state()
    runs.get_state()  # raised once


class FakeTrainer:
    """What `Report` reads of a Trainer, and a `save_checkpoint` that saves the callback's state."""

    def __init__(self, report: Any) -> None:
        self.report = report
        self.sanity_checking = False
        self.current_epoch = 0
        self.max_epochs = 100
        self.callback_metrics: dict[str, Any] = {}

    def save_checkpoint(self, path: Path) -> None:
        import torch

        torch.save({"report": self.report.state_dict()}, path)


def _checkpointed_epochs(
    monkeypatch: pytest.MonkeyPatch, losses: list[float], max_epochs: int = 100, **options: Any
) -> tuple[list[int], Any]:
    """The epochs (from 1) whose report to Tune carried a checkpoint, when `Report(**options)`
    sees these validation losses in a trial of `max_epochs`; and the state in the last
    checkpoint."""
    import torch

    from pipelines.trial.trainable import CHECKPOINT_FILE, Report

    saved: list[tuple[int, Any]] = []
    reported: list[int] = []

    def report(metrics: dict[str, Any], checkpoint: tune.Checkpoint | None = None) -> None:
        reported.append(trainer.current_epoch + 1)
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                state = torch.load(Path(directory) / CHECKPOINT_FILE)["report"]
            saved.append((trainer.current_epoch + 1, state))

    monkeypatch.setattr(tune, "report", report)
    callback = Report({"ray/node_id": "n"}, **options)
    trainer = FakeTrainer(callback)
    trainer.max_epochs = max_epochs
    for epoch, loss in enumerate(losses):
        trainer.current_epoch = epoch
        val = torch.tensor(loss, dtype=torch.float64)
        trainer.callback_metrics = {"train/loss": torch.tensor(1.0), "val/loss": val}
        callback.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert reported == list(range(1, len(losses) + 1)), "every epoch is reported"
    return [epoch for epoch, _ in saved], saved[-1][1] if saved else None


LOSSES = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.75, 0.9, 0.8, 0.6]


def test_a_trial_checkpoints_the_epochs_that_improve(monkeypatch: pytest.MonkeyPatch) -> None:
    epochs, state = _checkpointed_epochs(monkeypatch, LOSSES)
    assert epochs == [1, 2, 6, 10]
    assert state == {"best": 0.6, "saved": 10}


def test_a_trial_checkpoints_its_last_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial that finished after Tune last saved its state is restored from its end."""
    epochs, state = _checkpointed_epochs(monkeypatch, LOSSES[:9], max_epochs=9)
    assert epochs == [1, 2, 6, 9]
    assert state == {"best": 0.7, "saved": 9}


def test_checkpoint_every_adds_a_checkpoint_at_least_that_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    epochs, _ = _checkpointed_epochs(monkeypatch, LOSSES, every=3)
    assert epochs == [1, 2, 5, 6, 9, 10]  # 5 and 9: three epochs after the last
    epochs, _ = _checkpointed_epochs(monkeypatch, LOSSES, every=1)
    assert epochs == list(range(1, 11))
    epochs, _ = _checkpointed_epochs(monkeypatch, LOSSES, checkpoints=False)
    assert epochs == []


def test_a_restored_trial_goes_on_with_the_rule_it_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.trial.trainable import Report

    _, state = _checkpointed_epochs(monkeypatch, LOSSES[:6])  # last saved: epoch 6, 0.7
    restored = Report({}, every=None)
    restored.load_state_dict(state)
    assert (restored.best, restored.saved) == (0.7, 6)
    assert not restored._due(7, 0.75) and restored._due(8, 0.65)


def test_a_diverged_epoch_is_never_the_best(monkeypatch: pytest.MonkeyPatch) -> None:
    epochs, state = _checkpointed_epochs(monkeypatch, [1.0, math.nan, 0.9, math.nan])
    assert epochs == [1, 3] and state["best"] == 0.9


def test_pbt_checkpoints_every_epoch(study) -> None:
    pbt = _spec(space={"lr": {"loguniform": [1e-3, 1e-1]}}, scheduler={"name": "pbt"})
    assert study.space.checkpoint_every(pbt) == 1
    assert study.space.checkpoint_every(_spec(checkpoint_every=5)) == 5
    assert study.space.checkpoint_every(_spec()) is None
    with pytest.raises(SpecError, match="checkpoint_every"):
        _spec(checkpoint_every=0)
