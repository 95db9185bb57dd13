"""Sequential (and permuted) digits: scikit-learn's bundled 8x8 digits read one step at a time.

The small cousin of sequential MNIST (Le, Jaitly & Hinton 2015): the 1797 images of the UCI
optical digits test set ship inside scikit-learn, so no download is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.tasks.base import TASKS, Split, Task
from seqmodels.tasks.common import check_fractions, majority_class_accuracy

SIDE = 8
PIXEL_MAX = 16.0  # the images hold integers 0..16
VIEWS = ("pixels", "rows")


@dataclass(frozen=True)
class SeqDigitsOptions:
    """How an image becomes a sequence, and how the 1797 images are split.

    view: "pixels" reads 64 steps of 1 pixel, "rows" 8 steps of 8 pixels.
    permuted: shuffle the 64 pixel positions by one fixed permutation (drawn from
        `permutation_seed`, the same for every split and data seed) before reading them.
    """

    view: Literal["pixels", "rows"] = "pixels"
    permuted: bool = False
    permutation_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ConfigError(
                "view", f"unknown view {self.view!r}; choose from: {', '.join(VIEWS)}"
            )
        if self.permutation_seed < 0:
            raise ConfigError("permutation_seed", "must be >= 0")
        check_fractions(self.val_fraction, self.test_fraction)


@TASKS.register("seq_digits")
@dataclass(frozen=True)
class SeqDigitsTask(Task):
    """Classify a digit from its pixels seen one step at a time; x (N, T, F) in [0, 1]."""

    name: ClassVar[str] = "seq_digits"
    options_type: ClassVar[type] = SeqDigitsOptions
    version: ClassVar[int] = 1
    family: ClassVar[Literal["classification"]] = "classification"
    metric: ClassVar[str] = "accuracy"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "cross_entropy")
    baseline_note: ClassVar[str] = (
        "majority class of train, accuracy on test (measured; the classes are near balanced, "
        "about 0.1); sequential MNIST form of Le, Jaitly & Hinton 2015"
    )

    options: SeqDigitsOptions = SeqDigitsOptions()

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return majority_class_accuracy(splits)

    @property
    def input_size(self) -> int:
        return 1 if self.options.view == "pixels" else SIDE

    @property
    def output_size(self) -> int:
        return 10

    def permutation(self) -> np.ndarray:
        """The pixel order read: identity unless `permuted`."""
        if not self.options.permuted:
            return np.arange(SIDE * SIDE)
        return np.random.default_rng(self.options.permutation_seed).permutation(SIDE * SIDE)

    def card_extras(self) -> dict[str, Any]:
        return {
            "source": "sklearn.datasets.load_digits",
            "permutation": self.permutation().tolist(),
        }

    def generate(self, seed: int) -> dict[str, Split]:
        from sklearn.datasets import load_digits  # imported here: only this task needs it

        digits = load_digits()
        images = digits.data.astype(np.float32) / PIXEL_MAX  # (1797, 64), row-major pixels
        images = images[:, self.permutation()]
        x = images.reshape(len(images), -1, self.input_size)  # (N, T, F)
        y = digits.target.astype(np.int64)
        order = np.random.default_rng(seed).permutation(len(x))
        n_val = round(self.options.val_fraction * len(x))
        n_test = round(self.options.test_fraction * len(x))
        parts = {
            "train": order[n_test + n_val :],
            "val": order[n_test : n_test + n_val],
            "test": order[:n_test],
        }
        return {split: {"x": x[idx], "y": y[idx]} for split, idx in parts.items()}
