"""Yearly sunspot numbers 1700-2008 (Wolfer), as shipped by statsmodels: next-year forecasting.

Windowed, split by position and normalised as in `seqmodels.tasks.forecast`. The classic series
of Yule 1927, who fit it with an autoregressive model of order 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from typing import Any

import numpy as np

from seqmodels.tasks.base import TASKS
from seqmodels.tasks.forecast import ForecastTask, check_forecast_options


@dataclass(frozen=True)
class SunspotsOptions:
    """Years of history per input, normalisation, held-out fractions (the last years test)."""

    window: int = 20
    normalize: bool = True
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        check_forecast_options(self.window, self.val_fraction, self.test_fraction)


@TASKS.register("sunspots")
class SunspotsTask(ForecastTask):
    """x (N, window, 1) past yearly activity -> y (N, 1) the next year's."""

    options_type = SunspotsOptions
    baseline_note = (
        "persistence: next year repeats this year; MSE on test in normalised units, measured "
        "(series: statsmodels.datasets.sunspots; Yule 1927)"
    )

    @cached_property
    def series(self) -> np.ndarray:
        """(309, 1) float64 yearly sunspot activity."""
        from statsmodels.datasets import sunspots  # imported here: only this task needs it

        return sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float64)[:, None]

    @property
    def input_size(self) -> int:
        return 1

    def fingerprint(self) -> str:
        return f"statsmodels {metadata.version('statsmodels')}"

    def card_extras(self) -> dict[str, Any]:
        return {
            "scaling": self.scaling,
            "years": [1700, 1700 + len(self.series) - 1],
            "statsmodels_version": metadata.version("statsmodels"),
        }
