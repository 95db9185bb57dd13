"""Data preparation in Prefect: the `prepare-data` task and a flow that runs it alone.

A study calls the same `prepare_data` task (`study_dataset`), so the flow and a study share one
content cache: a dataset prepared here is a cache hit for a study, and back. This module imports no
training stack (torch, Ray, MLflow), so `seqlab data prepare` starts quickly.

Import this module only after `settings.configure_environment()`: Prefect reads its settings
at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from prefect import flow, task
from prefect.context import TaskRunContext

from pipelines.data import store
from pipelines.data.store import DatasetRef
from pipelines.ops import settings
from pipelines.study.timings import timed

# Prefect's logging configuration gives the root logger a console handler, which every flow
# and task run record reaches. The CLI prints its own lines instead; the records still go to
# the Prefect API, where the UI shows them with the flow run.
logging.getLogger().handlers.clear()


def _data_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Same task, options, seed, generator version and store means the same dataset."""
    digest = store.dataset_digest(
        parameters["task_name"], parameters["options"], parameters["seed"]
    )
    return f"{parameters['task_name']}-{digest}-{parameters['root']}"


@task(name="prepare-data", cache_key_fn=_data_cache_key, persist_result=True)
def prepare_data(task_name: str, options: dict[str, Any], seed: int, root: str) -> DatasetRef:
    """Generate the task's splits into the store at `root`, a local directory or an fsspec
    URL (a no-op when the same content is there)."""
    return store.prepare(task_name, options, seed, root)


@flow(name="prepare_data_flow", log_prints=False)
def prepare_data_flow(
    task_name: str, options: dict[str, Any], seed: int = 0, root: str | None = None
) -> DatasetRef:
    """Prepare a task's splits and data card in the store, or find them there.

    Args:
        task_name: a registered task (`seqlab tasks` lists them).
        options: the task's validated options, every field filled in (as `run_study` passes
            `spec.task.options`), so that the cache key matches the study's.
        seed: the seed of data generation.
        root: the store, a local directory or an fsspec URL; `settings.data_store()` when None.

    Returns:
        The dataset's reference: URI, content digest, split sizes, metric and baseline.
    """
    return _prepared(task_name, options, seed, root or settings.data_store())


@task(name="prepare-draws")
def prepare_draws(dataset: DatasetRef, seeds: list[int]) -> list[DatasetRef]:
    """Each seeded repeat's own draw of the training data, for a study that varies the data
    (`repeats.vary`): `dataset` resampled by each of `seeds`, written beside it (a no-op for a
    draw that is there)."""
    return [store.prepare_draw(dataset, seed) for seed in seeds]


@timed("data")
def study_dataset(task: Any, draws: Sequence[int] = ()) -> DatasetRef:
    """Phase 1 of a study: the dataset of its `task` section (`pipelines.spec.task`), prepared
    in the store (`settings.data_store()`) or found there, and its draws for the seeds in
    `draws` (`prepare_draws`)."""
    dataset = _prepared(task.name, task.options.__dict__, task.seed, settings.data_store())
    if draws:
        prepare_draws(dataset, list(draws))
    return dataset


def _prepared(task_name: str, options: dict[str, Any], seed: int, root: str) -> DatasetRef:
    dataset = prepare_data(task_name, options, seed, root)
    if not store.is_prepared(dataset.uri):  # the store was cleared under the cache
        dataset = prepare_data.with_options(refresh_cache=True)(task_name, options, seed, root)
    return dataset
