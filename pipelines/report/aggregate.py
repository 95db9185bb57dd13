"""Statistics across the tasks of a suite: which variant is better over several tasks, by how
much, and how sure we are (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"; Demšar 2006, "Statistical Comparisons of Classifiers over Multiple Data Sets").

Each task's test scores are first put on one scale, their baseline-normalised score: 0 at the
task's baseline (`seqmodels.tasks`: the score of predicting without the input), 1 at the
metric's ideal (an error of 0, an accuracy of 1, a perplexity of 1), higher always better. So
tasks with different metrics and units can be pooled.

- The interquartile mean (IQM) of the pooled normalised scores, with a stratified bootstrap
  interval: each task's runs are resampled on their own (scipy's bootstrap resamples each sample
  of a multi-sample statistic independently), so no resample moves runs between tasks. The
  percentile level is expanded for small samples, as a single task's interval of a mean is.
  A task with more runs (seeds in rounds) weighs more in the pool, as in rliable.
- The probability of improvement across tasks: the mean over tasks of each task's P(A better
  than B) (the Mann-Whitney statistic over pairs of runs), with the same stratified interval.
- Performance profiles: for each threshold tau, the share of runs whose normalised score
  exceeds tau, each task weighted equally.
- Average ranks over tasks (each task's variants ranked by their mean normalised score), and
  from 5 tasks on, Demšar's procedure: Friedman's test, then Nemenyi's, with its critical
  difference. Below 5 tasks a rank test has no power to speak of.

rliable implements the first three, but its release needs `arch<8`, whose last compatible
release fails to import beside pandas 3; so they are computed here with scipy, as rliable
defines them. autorank does Demšar's procedure, but it (and baycomp, which it needs) installs
a top-level `tests` package, which shadows any project's own; scipy and scikit-posthocs do it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scikit_posthocs as posthocs
from scipy import stats as scipy_stats

from pipelines.report import stats
from seqmodels.tasks.metrics import metric_range

MIN_TASKS_TO_RANK = 5  # Friedman's test with fewer tasks has no power (autorank refuses it)
PROFILE_TAUS = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))


@dataclass(frozen=True)
class TaskScores:
    """One task of a suite: its metric, its baseline, and each variant's test scores (the
    repeats of the configuration the task's verdict rests on)."""

    task: str  # the task's label in the suite
    metric: str
    baseline: float
    scores: Mapping[str, Sequence[float]]

    def normalised(self, variant: str) -> np.ndarray:
        """`variant`'s scores on the 0 (baseline) to 1 (ideal) scale, higher better."""
        span = metric_range(self.metric)
        ideal = span.high if span.maximised else span.low
        x = np.asarray(self.scores.get(variant, ()), dtype=float)
        x = x[np.isfinite(x)]
        if not math.isfinite(ideal) or ideal == self.baseline:
            return np.full_like(x, math.nan)
        return (x - self.baseline) / (ideal - self.baseline)


@dataclass(frozen=True)
class Aggregate:
    """One variant across the suite: the IQM of its normalised scores, with its interval."""

    variant: str
    runs: int
    iqm: float
    low: float
    high: float
    mean: float


@dataclass(frozen=True)
class Improvement:
    """P(a better than b) across the suite's tasks, with its stratified bootstrap interval, and
    on how many tasks a's mean normalised score is the higher."""

    a: str
    b: str
    probability: float
    low: float
    high: float
    tasks_ahead: int
    tasks: int


@dataclass(frozen=True)
class Ranking:
    """Average ranks over the tasks (1 is best), and Demšar's test where there are tasks
    enough: Friedman's p-value, Nemenyi's critical difference of mean ranks, and the pairs
    Nemenyi's test separates."""

    mean_rank: dict[str, float]
    tasks: int
    friedman_p: float | None = None
    critical_difference: float | None = None
    different: tuple[tuple[str, str], ...] = ()  # pairs with Nemenyi p < alpha


def aggregate(tasks: Sequence[TaskScores], variant: str, confidence: float = 0.95) -> Aggregate:
    """The IQM of `variant`'s normalised scores over every task, with a stratified bootstrap
    interval."""
    samples = [t.normalised(variant) for t in tasks]
    pooled = np.concatenate(samples) if samples else np.array([])
    if len(pooled) < 2:
        mean = float(np.mean(pooled)) if len(pooled) else math.nan
        return Aggregate(variant, len(pooled), mean, math.nan, math.nan, mean)
    point = float(stats.iqm(pooled))
    # expanded as a single task's interval of a mean is (`stats.expanded_level`): the plain
    # percentile interval of the pooled IQM covers 0.93 at 3 tasks of 12 runs (test_aggregate)
    low, high = _stratified(samples, _pooled_iqm, stats.expanded_level(len(pooled), confidence))
    return Aggregate(variant, len(pooled), point, low, high, float(np.mean(pooled)))


def improvement(
    tasks: Sequence[TaskScores], a: str, b: str, confidence: float = 0.95
) -> Improvement:
    """P(a better than b), averaged over the tasks, with a stratified bootstrap interval
    (percentile, as rliable's: it covers 0.95 at 3 tasks of 12 runs, test_aggregate)."""
    pairs = [(t.normalised(a), t.normalised(b)) for t in tasks]
    point = float(np.mean([stats.probability_of_improvement(x, y, "max") for x, y in pairs]))
    samples = [s for pair in pairs for s in pair]
    low, high = _stratified(samples, _mean_improvement, confidence)
    ahead = sum(float(np.mean(x)) > float(np.mean(y)) for x, y in pairs)
    return Improvement(a, b, point, low, high, ahead, len(pairs))


def improvements(tasks: Sequence[TaskScores], variants: Sequence[str]) -> list[Improvement]:
    """Every pair of variants, in the order given."""
    return [improvement(tasks, a, b) for a, b in itertools.combinations(variants, 2)]


def profile(
    tasks: Sequence[TaskScores], variant: str, taus: Sequence[float] = PROFILE_TAUS
) -> np.ndarray:
    """The share of `variant`'s runs whose normalised score exceeds each tau, each task
    weighted equally (rliable's performance profile, its score distribution)."""
    taus = np.asarray(taus, dtype=float)
    shares = [np.mean(t.normalised(variant)[:, None] > taus[None, :], axis=0) for t in tasks]
    return np.mean(shares, axis=0) if shares else np.full(len(taus), math.nan)


def ranking(tasks: Sequence[TaskScores], variants: Sequence[str], alpha: float) -> Ranking:
    """Each task's variants ranked by mean normalised score (ties share a rank), averaged over
    the tasks; from `MIN_TASKS_TO_RANK` tasks on, and for three variants or more, Friedman's
    test (scipy), and if it rejects, Nemenyi's (scikit-posthocs) with its critical difference
    (Demšar 2006, section 3.2.2)."""
    table = pd.DataFrame(
        [[float(np.mean(t.normalised(v))) for v in variants] for t in tasks],
        columns=list(variants),
        index=[t.task for t in tasks],
    )
    ranks = table.rank(axis=1, ascending=False).mean(axis=0)
    mean_rank = {v: float(ranks[v]) for v in variants}
    n, k = len(tasks), len(variants)
    if n < MIN_TASKS_TO_RANK or k < 3:
        return Ranking(mean_rank, n)
    friedman = scipy_stats.friedmanchisquare(*(table[v].to_numpy() for v in variants))
    # Nemenyi: mean ranks apart by more than q_alpha * sqrt(k (k + 1) / (6 n)), q_alpha the
    # studentized range's quantile over sqrt(2)
    q = scipy_stats.studentized_range.ppf(1 - alpha, k, math.inf) / math.sqrt(2)
    cd = float(q * math.sqrt(k * (k + 1) / (6 * n)))
    different: tuple[tuple[str, str], ...] = ()
    if friedman.pvalue < alpha:
        p = posthocs.posthoc_nemenyi_friedman(table)
        different = tuple(
            (a, b) for a, b in itertools.combinations(variants, 2) if p.loc[a, b] < alpha
        )
    return Ranking(mean_rank, n, float(friedman.pvalue), cd, different)


def _stratified(
    samples: list[np.ndarray],
    statistic: object,
    confidence: float,
) -> tuple[float, float]:
    """The percentile interval of `statistic` over bootstrap resamples of each sample on its
    own; the point itself when no sample can vary, (nan, nan) when one holds a single run."""
    if any(len(s) < 2 for s in samples):
        return math.nan, math.nan
    if all(np.all(s == s[0]) for s in samples):
        value = float(statistic(*samples, axis=-1))  # type: ignore[operator]
        return value, value
    result = scipy_stats.bootstrap(
        tuple(samples),
        statistic,  # type: ignore[arg-type]
        n_resamples=stats.RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(stats.SEED),
    )
    low, high = result.confidence_interval
    return float(low), float(high)


def _pooled_iqm(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.iqm(np.concatenate(samples, axis=axis), axis=axis)


def _mean_improvement(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    pairs = zip(samples[::2], samples[1::2], strict=True)
    return np.mean(
        [stats.probability_of_improvement(x, y, "max", axis=axis) for x, y in pairs], axis=0
    )
