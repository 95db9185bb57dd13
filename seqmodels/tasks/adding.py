"""The adding problem (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016)."""

from __future__ import annotations

from functools import partial

import numpy as np

from seqmodels.options import check_range
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import drawn_splits, generator_options
from seqmodels.tasks.families import RegressionTask


@generator_options(n_train=4000, n_val=1000, n_test=1000)
class AddingOptions:
    """Sequence length and split sizes of the adding problem."""

    length: int = 30

    def __post_init__(self) -> None:
        check_range("length", self.length >= 2, "must be >= 2 (one marker in each half)")


@TASKS.register("adding")
class AddingTask(RegressionTask):
    """Two channels: a value drawn from U[0, 1] and a marker with one 1 in each half.

    The target is the sum of the two marked values. Predicting the mean, 1, scores
    MSE = Var(U1 + U2) = 2/12 = 0.167: a model that does not remember stays there.
    """

    resample = "redraw"  # every split drawn from the generator

    options_type = AddingOptions
    metrics = ("mse",)  # the data card names the headline alone
    baseline_note = "predict the mean 1: MSE 1/6 (Arjovsky et al. 2016)"

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
        return drawn_splits(self.options, seed, partial(adding_split, length=self.options.length))


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
