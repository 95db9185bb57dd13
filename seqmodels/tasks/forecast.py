"""Windowed next-step forecasting of a multivariate series, shared by user CSVs and sunspots.

The series (L, C) is cut by position: the first 1 - val_fraction - test_fraction of its steps
train, the next val_fraction validate, the last test_fraction test. Every step t of a part is a
target y = series[t] (C,) with input x = series[t - window : t] (window, C), so inputs of val and
test may reach back into the part before. With `normalize`, each column is standardised by the
mean and standard deviation of the train part, and both are recorded in the data card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.tasks.base import Split
from seqmodels.tasks.common import check_fractions, held_out_counts
from seqmodels.tasks.families import RegressionTask


@dataclass(frozen=True)
class Scaling:
    """Per-column mean and scale of the train part; the identity when not normalising."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]


def forecast_splits(
    series: np.ndarray, window: int, val_fraction: float, test_fraction: float, normalize: bool
) -> tuple[dict[str, Split], Scaling]:
    """(L, C) float series -> windowed splits x (N, window, C), y (N, C) float32."""
    length = series.shape[0]
    n_train, n_val, n_test = held_out_counts(length, val_fraction, test_fraction)
    if n_train <= window or n_val < 1 or n_test < 1:
        raise ConfigError(
            "window",
            f"{length} steps give train {n_train}, val {n_val}, test {n_test}; each held-out "
            f"part needs >= 1 step and train more than window = {window}",
        )
    if normalize:
        mean = series[:n_train].mean(axis=0)
        scale = series[:n_train].std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)  # a constant column stays as it is, centred
    else:
        mean, scale = np.zeros(series.shape[1]), np.ones(series.shape[1])
    scaled = ((series - mean) / scale).astype(np.float32)
    bounds = {
        "train": (window, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, length),
    }
    splits = {}
    for split, (first, stop) in bounds.items():
        t = np.arange(first, stop)
        x = scaled[t[:, None] - window + np.arange(window)[None, :]]  # (N, window, C)
        splits[split] = {"x": x, "y": scaled[t]}
    return splits, Scaling(tuple(mean.tolist()), tuple(scale.tolist()))


def persistence_mse(split: Split) -> float:
    """MSE of predicting that the next step repeats the last one seen."""
    return float(np.mean((split["x"][:, -1, :] - split["y"]) ** 2))


def check_forecast_options(window: int, val_fraction: float, test_fraction: float) -> None:
    if window < 1:
        raise ConfigError("window", "must be >= 1")
    check_fractions(val_fraction, test_fraction)


class ForecastTask(RegressionTask):
    """Next-step forecasting of a `series` (L, C), windowed and split as the module doc says.

    Options: `window`, `normalize`, `val_fraction`, `test_fraction`. The baseline, measured:
    persistence, the MSE on test of repeating the last step seen.
    """

    @property
    def series(self) -> np.ndarray:
        """The (L, C) float64 series."""
        raise NotImplementedError

    @cached_property
    def _prepared(self) -> tuple[dict[str, Split], Scaling]:
        o = self.options
        return forecast_splits(self.series, o.window, o.val_fraction, o.test_fraction, o.normalize)

    @property
    def scaling(self) -> dict[str, Any]:
        """The train part's per-column mean and scale, for the data card."""
        return asdict(self._prepared[1])

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return persistence_mse(splits["test"])

    def generate(self, seed: int) -> dict[str, Split]:
        return self._prepared[0]  # positional: `seed` changes nothing
