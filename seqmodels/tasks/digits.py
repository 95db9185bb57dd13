"""Sequential (and permuted) digits: scikit-learn's bundled 8x8 digits read one step at a time.

The small cousin of sequential MNIST (Le, Jaitly & Hinton 2015): the 1797 images of the UCI
optical digits test set ship inside scikit-learn, so no download is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.options import check_range
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import check_fractions, shuffled_parts
from seqmodels.tasks.families import ClassificationTask

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
        check_range("permutation_seed", self.permutation_seed >= 0, "must be >= 0")
        check_fractions(self.val_fraction, self.test_fraction)


@TASKS.register("seq_digits")
class SeqDigitsTask(ClassificationTask):
    """Classify a digit from its pixels seen one step at a time; x (N, T, F) in [0, 1]."""

    resample = "resplit"  # the images are exchangeable

    options_type = SeqDigitsOptions
    classes = 10
    baseline_note = (
        "majority class of train, accuracy on test (measured; the classes are near balanced, "
        "about 0.1); sequential MNIST form of Le, Jaitly & Hinton 2015"
    )

    @property
    def input_size(self) -> int:
        return 1 if self.options.view == "pixels" else SIDE

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
        parts = shuffled_parts(len(x), self.options.val_fraction, self.options.test_fraction, seed)
        return {split: {"x": x[idx], "y": y[idx]} for split, idx in parts.items()}
