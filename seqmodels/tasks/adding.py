"""The adding problem (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.tasks.base import TASKS, Split, Task


@dataclass(frozen=True)
class AddingOptions:
    """Sequence length and split sizes of the adding problem."""

    length: int = 30
    n_train: int = 4000
    n_val: int = 1000
    n_test: int = 1000

    def __post_init__(self) -> None:
        if self.length < 2:
            raise ConfigError("length", "must be >= 2 (one marker in each half)")
        for split in ("n_train", "n_val", "n_test"):
            if getattr(self, split) < 1:
                raise ConfigError(split, "must be >= 1")


@TASKS.register("adding")
@dataclass(frozen=True)
class AddingTask(Task):
    """Two channels: a value drawn from U[0, 1] and a marker with one 1 in each half.

    The target is the sum of the two marked values. Predicting the mean, 1, scores
    MSE = Var(U1 + U2) = 2/12 = 0.167: a model that does not remember stays there.
    """

    name: ClassVar[str] = "adding"
    options_type: ClassVar[type] = AddingOptions
    version: ClassVar[int] = 1
    family: ClassVar[Literal["regression"]] = "regression"
    metric: ClassVar[str] = "mse"
    baseline_note: ClassVar[str] = "predict the mean 1: MSE 1/6 (Arjovsky et al. 2016)"

    options: AddingOptions = AddingOptions()

    @property
    def baseline(self) -> float:
        return 1.0 / 6.0

    @property
    def input_size(self) -> int:
        return 2

    @property
    def output_size(self) -> int:
        return 1

    def generate(self, seed: int) -> dict[str, Split]:
        rng = np.random.default_rng(seed)
        o = self.options
        sizes = {"train": o.n_train, "val": o.n_val, "test": o.n_test}
        return {split: adding_split(rng, n, o.length) for split, n in sizes.items()}


def adding_split(rng: np.random.Generator, n: int, length: int) -> Split:
    """Draw `n` adding-problem sequences of `length` steps: x (n, T, 2), y (n, 1)."""
    values = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)  # (n, T, 2)
    y = (values[rows, first] + values[rows, second])[:, None].astype(np.float32)  # (n, 1)
    return {"x": x, "y": y}
