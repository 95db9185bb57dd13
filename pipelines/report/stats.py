"""Statistics for comparing variants over seeded repeats.

The decision rule: Welch's t-test between every pair, Holm-corrected across the pairs; a variant
is declared the winner only when it beats every other variant significantly. Mann-Whitney U and
Cliff's delta are reported beside it as rank-based checks (with three seeds a two-sided U-test
cannot reach p < 0.1, so it cannot be the decision rule for small studies).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Summary:
    """One variant's repeated scores."""

    variant: str
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    """One pair of variants: `a` against `b`."""

    a: str
    b: str
    difference: float  # mean(a) - mean(b)
    welch_p: float
    welch_p_holm: float
    mannwhitney_p: float
    cohens_d: float
    cliffs_delta: float
    significant: bool  # by the Holm-corrected Welch p-value at level alpha


UNBOUNDED = (-math.inf, math.inf)


def summarize(
    variant: str,
    scores: list[float],
    confidence: float = 0.95,
    *,
    bounds: tuple[float, float] = UNBOUNDED,
) -> Summary:
    """Mean, sample standard deviation and a t confidence interval of the mean.

    `bounds` is the range the metric can take (`seqmodels.tasks.metrics`): the interval is
    clipped to it. The symmetric t-interval of a few small MSEs reaches below 0, where no mean
    can lie; clipping removes only impossible values, so the coverage is unchanged.
    """
    x = np.asarray(scores, dtype=float)
    n, mean = len(x), float(np.mean(x)) if len(x) else math.nan
    if n < 2:
        return Summary(variant, n, mean, math.nan, math.nan, math.nan)
    std = float(np.std(x, ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    low, high = clip_interval(mean - half, mean + half, bounds)
    return Summary(variant, n, mean, std, low, high)


def clip_interval(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """The interval [low, high] cut to `bounds`."""
    lowest, highest = bounds
    return max(low, lowest), min(high, highest)


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference with the pooled standard deviation."""
    na, nb = len(a), len(b)
    pooled = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    if pooled == 0:
        return math.copysign(math.inf, np.mean(a) - np.mean(b)) if np.mean(a) != np.mean(b) else 0.0
    return float((np.mean(a) - np.mean(b)) / math.sqrt(pooled))


def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """P(a > b) - P(a < b) over all pairs: a rank effect size in [-1, 1]."""
    greater = (a[:, None] > b[None, :]).sum()
    less = (a[:, None] < b[None, :]).sum()
    return float((greater - less) / (len(a) * len(b)))


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare(scores: dict[str, list[float]], alpha: float = 0.05) -> list[Comparison]:
    """Every pair of variants with at least two scores each, Holm-corrected together."""
    names = [v for v in scores if len(scores[v]) >= 2]
    pairs = list(itertools.combinations(names, 2))
    raw = []
    for a, b in pairs:
        xa, xb = np.asarray(scores[a], float), np.asarray(scores[b], float)
        with warnings.catch_warnings():  # identical scores: the test's NaN says it, below
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
            welch = stats.ttest_ind(xa, xb, equal_var=False).pvalue
        raw.append((xa, xb, 1.0 if math.isnan(welch) else float(welch)))
    adjusted = holm([p for _, _, p in raw])
    out = []
    for (a, b), (xa, xb, p), p_holm in zip(pairs, raw, adjusted, strict=True):
        mw = stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue
        out.append(
            Comparison(
                a=a,
                b=b,
                difference=float(np.mean(xa) - np.mean(xb)),
                welch_p=p,
                welch_p_holm=p_holm,
                mannwhitney_p=float(mw),
                cohens_d=cohens_d(xa, xb),
                cliffs_delta=cliffs_delta(xa, xb),
                significant=p_holm < alpha,
            )
        )
    return out


def winner(summaries: list[Summary], comparisons: list[Comparison], mode: Mode) -> str | None:
    """The variant that is best on average and significantly better than every other, if any."""
    ranked = [s for s in summaries if s.n >= 2]
    if len(ranked) < 2:
        return None
    best = (min if mode == "min" else max)(ranked, key=lambda s: s.mean).variant
    involved = [c for c in comparisons if best in (c.a, c.b)]
    if len(involved) != len(ranked) - 1:
        return None
    return best if all(c.significant for c in involved) else None
