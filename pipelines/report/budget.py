"""Budget curves: how good a variant's best trial is expected to be after n trials of its search,
n = 1 .. the study's budget (Dodge et al. 2019, "Show Your Work").

A study's verdict compares the variants at one budget. The curve says whether that budget
favours one of them: a variant that needs many trials to find a good configuration looks worse
at a small budget and may win at a larger one. When the ranking of the curves no longer changes
from some budget on, the verdict does not hang on the budget chosen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.report.stats import Mode


@dataclass(frozen=True)
class Curve:
    """A variant's expected best score after n = 1..len(mean) trials, and its spread."""

    variant: str
    trials: int  # scored trials the curve is estimated from
    mean: np.ndarray  # E[best of n]
    std: np.ndarray  # its standard deviation


def expected_best(
    scores: Sequence[float], budget: int, mode: Mode
) -> tuple[np.ndarray, np.ndarray]:
    """E[best of n] and its standard deviation, n = 1..budget, of n trials drawn with
    replacement from the `scores` observed.

    With the N scores sorted from worst to best, v_1 .. v_N, the best of n draws is v_i with
    probability (i/N)^n - ((i-1)/N)^n; its mean is the sum of v_i times that, and its variance
    the same sum over v_i^2 less the mean squared.
    """
    values = np.sort(np.asarray(scores, dtype=float))
    if mode == "min":
        values = values[::-1]  # worst (highest) first
    count = len(values)
    if count == 0:
        return np.full(budget, math.nan), np.full(budget, math.nan)
    steps = np.arange(1, count + 1) / count
    n = np.arange(1, budget + 1)[:, None]
    weights = steps[None, :] ** n - (steps[None, :] - 1 / count) ** n  # (budget, N)
    mean = weights @ values
    variance = np.maximum(weights @ values**2 - mean**2, 0.0)
    return mean, np.sqrt(variance)


def curves(scores: Mapping[str, Sequence[float]], budget: int, mode: Mode) -> list[Curve]:
    """Each variant's budget curve from its trials' scores (the finite ones)."""
    out = []
    for variant, values in scores.items():
        finite = [v for v in values if math.isfinite(v)]
        mean, std = expected_best(finite, budget, mode)
        out.append(Curve(variant, len(finite), mean, std))
    return out


def stable_from(found: list[Curve], mode: Mode) -> int | None:
    """The smallest budget from which the variants' ranking by expected best no longer
    changes up to the full budget; None with fewer than two variants."""
    if len(found) < 2:
        return None
    budget = len(found[0].mean)
    sign = 1 if mode == "min" else -1

    def ranking(n: int) -> tuple[str, ...]:
        return tuple(sorted((c.variant for c in found), key=lambda v: sign * by[v][n - 1]))

    by = {c.variant: c.mean for c in found}
    final = ranking(budget)
    start = budget
    while start > 1 and ranking(start - 1) == final:
        start -= 1
    return start


def best_of_quantiles(
    scores: Sequence[float], n: int, quantiles: Sequence[float], mode: Mode
) -> np.ndarray:
    """Quantiles of the best of n trials drawn with replacement from `scores`, as good as the
    q-th share of such draws reach or better (q = 0.05 is the worst 5%).

    With the N scores sorted from worst to best, the best of n is among the first i with
    probability (i/N)^n, the distribution `expected_best` averages.
    """
    values = np.sort(np.asarray(scores, dtype=float))
    if mode == "min":
        values = values[::-1]  # worst (highest) first
    count = len(values)
    below = (np.arange(1, count + 1) / count) ** n  # P(best among the i worst)
    return np.array([values[int(np.searchsorted(below, q - 1e-12))] for q in quantiles])
