"""Each Tune trial mirrored into an MLflow child run of the study's parent run.

Only the driver process writes to MLflow: Ray Tune hands every trial's results to the
`TrialRuns` callback on the driver. So an embedded SQLite store never has several writers.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial

from pipelines.study.failures import Divergence, trial_error
from pipelines.tracking.runs import delete_lost
from pipelines.trial import phase
from seqmodels.config import TrialConfig

METRIC_PREFIXES = ("train/", "val/", "test/", "diag/")
# Result keys that say where a trial runs (`trainable.placement`); tagged as `ray.node_id`, ...
PLACEMENT_KEYS = ("ray/node_id", "ray/gpu_ids")


class Writer:
    """One background thread that makes MLflow calls in the order they were submitted.

    MLflow's own asynchronous logging (`log_batch(synchronous=False)`) does not fit a driver
    that keeps many runs open: `set_terminated` shuts down the store's whole queue and waits
    for its thread, which polls with a 1 s timeout, so every trial's end cost up to a second
    (`benchmarks/README.md`, under `checkpoint_policy.py`).
    """

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., Any], tuple, dict]] = queue.Queue()
        self.error: BaseException | None = None
        threading.Thread(target=self._work, name="seqlab-mlflow-writer", daemon=True).start()

    def submit(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.calls.put((call, args, kwargs))

    def wait(self) -> None:
        """Return when every call submitted so far is made.

        Raises:
            BaseException: the first error a call raised since the last `wait`.
        """
        self.calls.join()
        error, self.error = self.error, None
        if error is not None:
            raise error

    def _work(self) -> None:
        while True:
            call, args, kwargs = self.calls.get()
            try:
                call(*args, **kwargs)
            except BaseException as error:  # raised again by `wait`, in the driver's thread
                self.error = self.error or error
            finally:
                self.calls.task_done()


class TrialRuns(Callback):
    """A Tune callback that mirrors each trial into an MLflow child run of the study's parent.

    A run is tagged `variant`, `trial_id`, `seed` and `kind`, and a repeat's `of_trial` too:
    the search trial whose configuration it retrains, the one the verdict rests on; and
    `varied`, what its seed drew afresh (`init,order,data`).
    Params are the trial's config; `train/` and `val/` metrics are logged per epoch with
    `step` = epoch index, and `test/` metrics, reported once at the end, as they come. Where the
    trial runs (its Ray node, its GPU ids) becomes tags when first reported, and again if it moves.

    Its state (trial id -> run id) is saved by Tune with the experiment's state, and restored
    with it by `Tuner.restore`, so a resumed study logs to the runs it began: a trial that starts
    again reopens its run and skips the epochs the run already holds.

    The epochs' metrics are written by a `Writer` thread: a trial waits for the driver after
    each report, and would otherwise wait for the write too. They are waited for before a run
    ends, and whenever Tune saves the experiment's state (`get_state`), so that MLflow never
    holds fewer epochs than that state, which a resumed study starts from.

    A trial that raised ends FAILED, tagged `error` with the error's line, its traceback in the
    artifact `error.txt`. A trial that diverged (`failures.Divergence`: non-finite, or far above
    the baseline, at its end) ends FAILED too, tagged `diverged` with the reason: it is no
    result, and the MLflow UI shows it among the failures, not the finished runs.

    Args:
        kind: the `kind` tag of a trial's run: `trial` for a search trial, `repeat` for a seeded
            repeat of a chosen config; a trial whose config marks it a repeat (`phase`) is one.
        diverged: the study's divergence rule; None: no run is judged.
    """

    # An instance Tune pickled before the rule existed (a study interrupted then) has none.
    diverged: Divergence | None = None

    def __init__(
        self,
        mlflow: MlflowClient,
        experiment_id: str,
        parent_run_id: str,
        kind: str,
        diverged: Divergence | None = None,
    ) -> None:
        self.mlflow = mlflow
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.kind = kind
        self.diverged = diverged
        self.run_ids: dict[str, str] = {}  # trial id -> MLflow run id
        self.open: set[str] = set()  # trial ids whose run has not been ended
        self.placed: dict[str, dict[str, str]] = {}  # trial id -> placement tags on its run
        self.logged: dict[str, int] = {}  # trial id -> last epoch its run holds
        self.restored = False
        self.writer: Writer | None = None  # started on the first epoch's result

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the Tuner; a thread does not pickle
        return {**self.__dict__, "writer": None}

    def get_state(self) -> dict[str, Any]:
        self.wait()
        return {"run_ids": dict(self.run_ids), "placed": dict(self.placed)}

    def wait(self) -> None:
        """Return when every epoch's metrics submitted so far are written.

        Raises:
            MlflowException: a write failed.
        """
        if self.writer is not None:
            self.writer.wait()

    def set_state(self, state: dict[str, Any]) -> None:
        self.run_ids = dict(state["run_ids"])
        self.placed = dict(state["placed"])
        self.restored = True

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None and self.restored:
            # Started after Tune last saved its state, before the driver stopped.
            run_id = self._recorded_run(trial)
        if run_id is not None:
            self._reopen(trial.trial_id, run_id)
            return
        config = TrialConfig.from_nested(trial.config)
        variant, seed, kind = config.variant, config.seed, self._kind(trial)
        of_trial = trial.config.get(phase.OF_TRIAL)  # a repeat's: the trial whose config it is
        run = self.mlflow.create_run(
            self.experiment_id,
            run_name=f"{variant}-{kind}-{seed}" if kind == "repeat" else trial.trial_id,
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "variant": variant,
                "trial_id": trial.trial_id,
                "seed": str(seed),
                "kind": kind,
                **({"of_trial": str(of_trial)} if of_trial else {}),
                **({"varied": ",".join(phase.varied(trial.config))} if of_trial else {}),
            },
        )
        self.run_ids[trial.trial_id] = run.info.run_id
        self.open.add(trial.trial_id)
        flat = config.params()  # one param a field, as MLflow always had it
        params = [Param(k, str(v)) for k, v in sorted(flat.items())]
        self.mlflow.log_batch(run.info.run_id, params=params)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        step = int(result["training_iteration"]) - 1  # the epoch just finished
        if run_id is None or step <= self.logged.get(trial.trial_id, -1):
            return  # an epoch a restored trial repeats: its run has it already
        self.logged[trial.trial_id] = step
        now = int(time.time() * 1000)
        # A repeat's test report holds its best epoch's val/loss again: only its test metrics
        # are news.
        tested = any(key.startswith("test/") for key in result)
        values = [
            Metric(key, float(value), now, step)
            for key, value in result.items()
            if key.startswith("test/" if tested else METRIC_PREFIXES)
            and math.isfinite(float(value))
        ]
        self.writer = self.writer or Writer()
        tags = self._placement_tags(trial, result)
        self.writer.submit(self.mlflow.log_batch, run_id, metrics=values, tags=tags)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        reason = self.diverged(trial.last_result) if self.diverged else None
        run_id = self.run_ids.get(trial.trial_id)
        if reason is None or run_id is None:
            self._end(trial, RunStatus.FINISHED)
            return
        self.wait()
        self.mlflow.set_tag(run_id, "diverged", reason)
        self._end(trial, RunStatus.FAILED)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is not None:
            line, text = trial_error(trial)
            self.wait()
            self.mlflow.set_tag(run_id, "error", line)
            self.mlflow.log_text(run_id, text or line, "error.txt")
        self._end(trial, RunStatus.FAILED)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.close_open("KILLED")  # trials Tune stopped without completing them
        if trials and all(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials):
            # Tune's trials, not the ids in their results: a PBT trial's last result can be
            # the one it cloned, id and all.
            delete_lost(self.mlflow, self.parent_run_id, {t.trial_id for t in trials})

    def close_open(self, status: str) -> None:
        """End every run not ended yet, so none is left RUNNING (Ctrl-C, a driver error)."""
        self.wait()
        for trial_id in list(self.open):
            self.mlflow.set_terminated(self.run_ids[trial_id], status)
            self.open.discard(trial_id)

    def _kind(self, trial: Trial) -> str:
        return "repeat" if phase.is_repeat(trial.config) else self.kind

    def _recorded_run(self, trial: Trial) -> str | None:
        runs = self.mlflow.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' "
            f"and tags.kind = '{self._kind(trial)}' and tags.trial_id = '{trial.trial_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def _reopen(self, trial_id: str, run_id: str) -> None:
        """A trial that starts again goes on in its own run.

        A trial restored from a checkpoint (a retry after a crash, a resumed study) repeats the
        epochs after that checkpoint that its run already holds: they are not logged twice.
        Within one Tuner the run is open and `logged` knows its last epoch; in a resumed study
        its history in MLflow says.
        """
        self.run_ids[trial_id] = run_id
        if trial_id in self.open:
            return
        if self.mlflow.get_run(run_id).info.status != "RUNNING":
            self.mlflow.update_run(run_id, status="RUNNING")
        self.open.add(trial_id)
        history = self.mlflow.get_metric_history(run_id, "train/loss")
        self.logged[trial_id] = max((m.step for m in history), default=-1)

    def _placement_tags(self, trial: Trial, result: dict) -> list[RunTag]:
        """Tags for where the trial runs, when that is news: once per run, unless it moved."""
        where = {key.replace("/", "."): str(result[key]) for key in PLACEMENT_KEYS if key in result}
        if not where or where == self.placed.get(trial.trial_id):
            return []
        self.placed[trial.trial_id] = where
        return [RunTag(key, value) for key, value in where.items()]

    def _end(self, trial: Trial, status: int) -> None:
        self.wait()
        if trial.trial_id in self.open:
            self.mlflow.set_terminated(self.run_ids[trial.trial_id], RunStatus.to_string(status))
            self.open.discard(trial.trial_id)
