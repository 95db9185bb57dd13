"""What every metric a task reports can take as values, and which way is better.

Declared once, here, for the report and its statistics: an interval of a mean is clipped to its
metric's range (the mean of an MSE cannot be negative), and the verdict reads the direction.
Every name in a task's `metric` and `metrics` has an entry (tests/unit/test_tasks.py checks it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from seqmodels.errors import unknown


@dataclass(frozen=True)
class MetricRange:
    """The values a metric can take, `low` to `high` (inclusive), and whether larger is better."""

    low: float
    high: float = math.inf
    maximised: bool = False

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


ERROR = MetricRange(0.0)  # an error or a loss: 0 is perfect, no upper end
FRACTION = MetricRange(0.0, 1.0, maximised=True)  # a share of items right

METRICS: dict[str, MetricRange] = {
    "loss": ERROR,  # train/loss, val/loss: every family's loss is a mean error or a NLL
    "mse": ERROR,
    "mae": ERROR,
    "cross_entropy": ERROR,  # nats per target
    "bits_per_char": ERROR,
    "perplexity": MetricRange(1.0),  # exp(cross entropy): 1 is a certain, correct model
    # Edit distances over the reference's length: insertions can take them past 1.
    "per": ERROR,
    "wer": ERROR,
    "accuracy": FRACTION,
    "exact_match": FRACTION,
    "token_accuracy": FRACTION,
}


def metric_range(name: str) -> MetricRange:
    """The declared range of metric `name` (a bare name: `mse`, not `test/mse`)."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(unknown("metric", name, METRICS)) from None
