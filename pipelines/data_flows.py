"""Prefect flows over the data store alone: prepare one task's dataset without running a study.

The flow reuses `pipelines.flows.prepare_data`, the same Prefect task `run_study` calls, so the
two share one content cache: a dataset prepared here is a cache hit for a study, and back.

Import this module only after `settings.configure_environment()`: Prefect reads its settings
at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from pipelines import settings
from pipelines.flows import prepare_data
from pipelines.store import DatasetRef


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
        root: the store; `SEQLAB_HOME` when None.

    Returns:
        The dataset's reference: URI, content digest, split sizes, metric and baseline.
    """
    home = root or str(settings.seqlab_home())
    dataset = prepare_data(task_name, options, seed, home)
    if not Path(dataset.uri, "card.json").exists():  # the store was cleared under the cache
        dataset = prepare_data.with_options(refresh_cache=True)(task_name, options, seed, home)
    return dataset
