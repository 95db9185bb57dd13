"""Yearly sunspot numbers 1700-2008 (Wolfer), as shipped by statsmodels: next-year forecasting.

Windowed, split by position and normalised as in `seqmodels.tasks.forecast`. The classic series
of Yule 1927, who fit it with an autoregressive model of order 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from importlib import metadata
from typing import Any, ClassVar, Literal

import numpy as np

from seqmodels.tasks.base import TASKS, Split, Task
from seqmodels.tasks.forecast import (
    FORECAST_METRICS,
    check_forecast_options,
    forecast_splits,
    persistence_mse,
)


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
@dataclass(frozen=True)
class SunspotsTask(Task):
    """x (N, window, 1) past yearly activity -> y (N, 1) the next year's."""

    name: ClassVar[str] = "sunspots"
    options_type: ClassVar[type] = SunspotsOptions
    version: ClassVar[int] = 1
    family: ClassVar[Literal["regression"]] = "regression"
    metric: ClassVar[str] = "mse"
    metrics: ClassVar[tuple[str, ...]] = FORECAST_METRICS
    baseline_note: ClassVar[str] = (
        "persistence: next year repeats this year; MSE on test in normalised units, measured "
        "(series: statsmodels.datasets.sunspots; Yule 1927)"
    )

    options: SunspotsOptions = SunspotsOptions()

    @cached_property
    def series(self) -> np.ndarray:
        """(309, 1) float64 yearly sunspot activity."""
        from statsmodels.datasets import sunspots  # imported here: only this task needs it

        return sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float64)[:, None]

    @cached_property
    def _prepared(self) -> tuple[dict[str, Split], dict[str, Any]]:
        o = self.options
        splits, scaling = forecast_splits(
            self.series, o.window, o.val_fraction, o.test_fraction, o.normalize
        )
        return splits, {"scaling": asdict(scaling), "years": [1700, 1700 + len(self.series) - 1]}

    @property
    def input_size(self) -> int:
        return 1

    @property
    def output_size(self) -> int:
        return 1

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return persistence_mse(splits["test"])

    def fingerprint(self) -> str:
        return f"statsmodels {metadata.version('statsmodels')}"

    def card_extras(self) -> dict[str, Any]:
        return {**self._prepared[1], "statsmodels_version": metadata.version("statsmodels")}

    def generate(self, seed: int) -> dict[str, Split]:
        return self._prepared[0]  # positional: `seed` changes nothing
