"""The task interface and its registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from seqmodels.registry import Registry

Split = dict[str, np.ndarray]  # {"x": (N, T, F), "y": (N, ...)}


@dataclass(frozen=True)
class Task:
    """A dataset generator. Subclasses set the class variables and implement `generate`.

    Class variables:
        name: the name a spec uses.
        version: bump it whenever `generate` changes its output; it is part of the cache key.
        family: which LightningModule trains it.
        metric: the headline test metric.
        baseline: the published score of a trivial predictor on `metric`.
        baseline_note: what that baseline is, and where it was published.
    """

    options: Any = None

    name: ClassVar[str]
    options_type: ClassVar[type]
    version: ClassVar[int]
    family: ClassVar[Literal["regression"]]
    metric: ClassVar[str]
    baseline_note: ClassVar[str]

    @classmethod
    def from_options(cls, options: dict[str, object]) -> Task:
        """Build the task from a spec's `task.options` (unknown keys raise TypeError)."""
        return cls(options=cls.options_type(**options))  # type: ignore[call-arg]

    @property
    def baseline(self) -> float:
        raise NotImplementedError

    @property
    def input_size(self) -> int:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    def generate(self, seed: int) -> dict[str, Split]:
        """Return {"train": split, "val": split, "test": split}, deterministic in `seed`."""
        raise NotImplementedError


TASKS: Registry[Task] = Registry("task", Task)
