"""Ray and Tune on the driver: the local or cluster Ray session, where Tune keeps its state, a
phase's Tuner (restored when the study resumes), and fitting it so that whatever stops it, no
MLflow run stays RUNNING and Ctrl-C leaves a state to resume from.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import FrameType
from typing import Any

import fsspec
import pyarrow.fs
import ray
from ray import tune
from ray.tune.experiment import Trial

from pipelines import tracking
from pipelines.data import store
from pipelines.data.store import DatasetRef
from pipelines.ops import settings
from pipelines.spec import StudySpec
from pipelines.study.timings import phase
from pipelines.trial.restorable import RestorableCheckpoints
from seqmodels.files import join


def reuse_workers() -> bool:
    """Whether a new trial may run in a finished trial's worker process (Tune's `reuse_actors`).

    On the local default it does: a fresh worker imports torch and Lightning again, which
    costs more than a short trial trains (benchmarks/scale.py). Every trial
    seeds what it uses itself, so it inherits nothing that changes its result. On a Ray cluster
    (`RAY_ADDRESS`, or the Ray head of `seqlab up`) each trial gets a fresh worker, so Ray
    places it on any node with room: reused workers keep every later trial on the nodes the
    first trials landed on, and nodes that join later stay idle.
    """
    return settings.ray_address() is None


# Set once an interrupted study has ended its MLflow runs and stopped Ray. What the process does
# after that is Prefect's report of the crashed flow run (`cli._interruptible` reads this).
INTERRUPTED_STUDY_CLOSED = threading.Event()
# Set by Ctrl-C (`cli.process.interruptible`): whatever error the study then ends with, it
# ends because it was interrupted (Prefect's API server, in the same process group, stops too).
CTRL_C = threading.Event()


class StudyInterrupted(KeyboardInterrupt):
    """Tune was asked to stop (Ctrl-C, or SIGUSR1): it stopped the trials and saved its state,
    then returned.

    The study must stop there too, not go on with a part of its trials; `seqlab resume`
    continues it from Tune's saved state.
    """


def interrupted(err: BaseException | None) -> bool:
    """Whether Ctrl-C is behind `err`: it was pressed (`CTRL_C`), or it is in the chain.

    Why the chain is walked: Ctrl-C reaches the whole foreground process group, Prefect's API
    server included, so the flow engine's last report after the KeyboardInterrupt fails too and
    raises its own error, with the interrupt in its context; and a library that meets the
    interrupt while it cleans up (an MLflow write) raises its own error from it.
    """
    if CTRL_C.is_set():
        return True
    while err is not None:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__cause__ or err.__context__
    return False


def tune_storage() -> str:
    """Where Ray Tune keeps its experiments' state, results and checkpoints.

    Beside the datasets when the store is an object store (`SEQLAB_STORE=s3://...`): every node
    of a cluster reaches the bucket, and Tune's trials on other nodes need storage they all
    share. Otherwise under `SEQLAB_HOME`, on the driver's disk.
    """
    root = settings.data_store()
    return (
        join(root, "ray_results")
        if store.is_url(root)
        else str(settings.seqlab_home() / "ray_results")
    )


def trainable(
    function: Callable[..., None], spec: StudySpec, dataset: DatasetRef, **constants: Any
) -> Any:
    """`function` with the dataset (and `constants`) bound, and the spec's resources reserved
    per trial."""
    return tune.with_resources(
        tune.with_parameters(function, dataset=dataset, **constants),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def run_config(label: str, callbacks: list[tune.Callback], **extra: Any) -> tune.RunConfig:
    """Results in Tune's storage, our own callbacks for output, one retry from a checkpoint
    (one that still exists: `RestorableCheckpoints`)."""
    return tune.RunConfig(
        name=f"{label}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=tune_storage(),
        callbacks=[*callbacks, RestorableCheckpoints()],
        failure_config=tune.FailureConfig(max_failures=1),
        verbose=0,
        **extra,
    )


def tuner(
    parent_run_id: str,
    phase: str,
    trainable: Any,
    run_config: tune.RunConfig,
    new: Callable[[], tune.Tuner],
) -> tune.Tuner:
    """The phase's Tuner: restored from Tune's saved state when the study ran it before.

    The parent run's `seqlab.tune.<phase>` tag records where each Tuner keeps its state. A
    resumed study finds it there: `Tuner.restore` then reruns no finished trial, and continues
    every unfinished one from its last checkpoint. A fresh study records it before fitting.
    """
    client, tag = tracking.client(), f"seqlab.tune.{phase}"
    path = client.get_run(parent_run_id).data.tags.get(tag)
    # A Tuner stopped before it first saved the experiment's state has nothing to restore
    # (Tune would restore its tuner.pkl with no trials): the phase starts again.
    if path and tune.Tuner.can_restore(path) and saved_state(path):
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True)
    client.set_tag(parent_run_id, tag, join(str(run_config.storage_path), str(run_config.name)))
    return new()


TRIAL_DIR = "trial_"  # a trial's directory: this, then its id (`trial_dirname`)


def trial_dirname(trial: Trial) -> str:
    """A trial's directory name (Tune's `trial_dirname_creator`): its id, so that a result
    says whose it is (`trial_id`)."""
    return f"{TRIAL_DIR}{trial.trial_id}"


def trial_id(result: tune.Result) -> str:
    """The id of the trial whose result this is, read from its directory (`trial_dirname`).

    Not `result.metrics["trial_id"]`: a PBT trial that cloned another and reported nothing
    since has the clone's last result for its own, id and all.
    """
    name = PurePosixPath(str(result.path)).name
    if not name.startswith(TRIAL_DIR):
        raise ValueError(f"{result.path}: not a directory that `trial_dirname` named")
    return name.removeprefix(TRIAL_DIR)


def saved_state(experiment: str) -> bool:
    """Whether Tune saved the experiment's state at `experiment` (a path or a URL)."""
    fs, root = fsspec.core.url_to_fs(experiment)
    fs.invalidate_cache(root)  # an object store's listing may be cached from before Tune wrote
    return bool(fs.glob(f"{root}/experiment_state-*"))


def local_checkpoint(checkpoint: tune.Checkpoint, *where: str) -> str:
    """A local directory holding `checkpoint`: its own where Tune's storage is on this disk,
    else a copy under `SEQLAB_HOME/checkpoints/<where...>` (the driver reads it to test and
    register the model)."""
    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return checkpoint.path
    return checkpoint.to_directory(str(settings.seqlab_home().joinpath("checkpoints", *where)))


@dataclass
class _Fitting:
    """A Tuner fitting in this process: the SIGUSR1 handler in place before it started, and
    whether it was asked to stop."""

    before: object
    stopped: bool = False


_FITTING: list[_Fitting] = []


def stop_tuning(frame: FrameType | None) -> bool:
    """Ask the Tuner fitting in this process to stop as Tune's own Ctrl-C handler does.

    Tune then leaves its loop at the next step, saves the experiment's state once more, with
    every result it has processed, stops the trials and returns; `fit` raises
    StudyInterrupted. Ctrl-C's handler (`cli`) calls this: Tune's SIGINT handler is off (see
    `settings`), and a KeyboardInterrupt raised in Tune's loop would skip that last save, so a
    resumed study would train again what the last few seconds trained. Tune installs its stop
    handler for SIGUSR1 on each fit, from the main thread only, and never removes it.

    Returns:
        False when no Tuner is fitting, or this fit's Tune has not installed its handler yet
        (or could not: not the main thread); the caller raises KeyboardInterrupt instead.
    """
    if not _FITTING:
        return False
    fitting = _FITTING[-1]
    handler = signal.getsignal(signal.SIGUSR1)
    if handler is fitting.before or not callable(handler):
        return False
    fitting.stopped = True
    handler(signal.SIGUSR1, frame)
    return True


def fit(tuner: tune.Tuner, parent_run_id: str) -> Any:
    """Run the Tuner; whatever stops it, no MLflow run of its trials stays RUNNING.

    Raises StudyInterrupted when Tune returned with trials unfinished, or was asked to stop
    (`stop_tuning`, Ctrl-C). (Runs of trials that Tune's restored state no longer knew are
    deleted by the Tuner's `TrialRuns` once every trial has ended.)
    """
    client = tracking.client()
    fitting = _Fitting(before=signal.getsignal(signal.SIGUSR1))
    _FITTING.append(fitting)
    try:
        results = tuner.fit()
    finally:
        _FITTING.remove(fitting)
        tracking.end_running(client, parent_run_id, "KILLED")
    unfinished = len(results) - results.num_terminated - results.num_errors
    if unfinished or fitting.stopped:
        raise StudyInterrupted(f"{unfinished} trials unfinished")
    return results


@contextmanager
def ray_session() -> Iterator[None]:
    """Connect to `RAY_ADDRESS`, or start a local Ray for the run and stop it afterwards."""
    if ray.is_initialized():
        yield
        return
    address = settings.ray_address()
    # "local", not None: None would join whatever Ray `ray start` last started on this machine.
    local = {} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
    with phase("ray_start"):
        ray.init(
            address=address or "local", log_to_driver=False, logging_level=logging.ERROR, **local
        )
    try:
        yield
    finally:
        ray.shutdown()
