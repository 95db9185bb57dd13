"""Statistics for comparing variants over seeded repeats.

The decision rule, for each pair of variants, is a two-sided Mann-Whitney test of "neither is
better" (P(A better than B) = 1/2), its p-value from the permutation distribution of the
statistic (exact for the small samples a study has, and right with ties: two repeats with the
same exact-match score are common). The pairs are Holm-corrected together (statsmodels). A
variant is declared the winner when it beats every other: its corrected p below alpha, and,
when the study sets `min_effect`, a difference in means larger than that. The rank test needs
no assumption about the shape of the scores, which are often skewed (one seed that failed to
learn) or pressed against a bound (MSE near 0, accuracy near 1); the calibration tests check
that its false-winner rate stays at alpha on such shapes.

Reported with it: the probability of improvement P(A better than B), the share of pairs of
repeats in which A's score is better (ties count half), with a bootstrap interval; the
bootstrap intervals of each variant's mean and interquartile mean, clipped to the metric's
range; and, where no difference was found, the smallest difference the study could have
detected. Welch's t, Cohen's d and Cliff's delta stay as secondary columns.

Small samples: with n repeats per variant a two-sided rank test cannot reach a p-value below
2 / C(2n, n) (0.1 at n = 3), so with 3 seeds no difference is ever significant. The report
says so, and how many seeds a decision needs, rather than pretend; the bootstrap interval of
P at n = 3 ([1, 1] when every A beats every B) is shown but never decides.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_ind

from seqmodels.tasks.metrics import metric_range

Mode = Literal["min", "max"]
UNBOUNDED = (-math.inf, math.inf)
ALPHA = 0.05
POWER = 0.8  # the power at which the minimum detectable effect is quoted
RESAMPLES = 4999  # bootstrap resamples (and random permutations, where there are more)
SEED = 0  # the bootstrap's and the permutations' generator: the same scores, the same report
PERMUTATION_BATCH = 256  # permutations evaluated at once: bounds the memory of a batch of tests
INTERVAL_METHOD = (
    "bootstrap percentile intervals, expanded for small samples as Hesterberg (2015) does (the "
    "plain percentile interval covers the mean too rarely at 10 seeds and below)"
)


def metric_mode(metric: str) -> Mode:
    """Whether a lower or a higher `metric` is better."""
    return "max" if metric_range(metric).maximised else "min"


@dataclass(frozen=True)
class Summary:
    """One variant's repeated scores: mean and interquartile mean, each with its interval."""

    variant: str
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    iqm: float = math.nan
    iqm_low: float = math.nan
    iqm_high: float = math.nan


@dataclass(frozen=True)
class Comparison:
    """One pair of variants: `a` against `b`, where "better" follows the metric's mode."""

    a: str
    b: str
    difference: float  # mean(a) - mean(b)
    p_improvement: float  # P(a better than b): pairs of repeats, ties counting half
    p_improvement_low: float
    p_improvement_high: float
    rank_p: float  # two-sided Mann-Whitney, from the permutation distribution
    rank_p_holm: float
    welch_p: float
    cohens_d: float
    cliffs_delta: float  # P(a > b) - P(a < b), in the scores' own direction
    significant: bool  # rank_p_holm < alpha, and the difference beyond min_effect
    decidable: bool  # whether the test could reach alpha at all with these sample sizes


def expanded_level(n: int, confidence: float) -> float:
    """The percentile bootstrap's level that gives `confidence` coverage at small n.

    The percentile interval of a mean is about as wide as mean ± z·s·sqrt((n-1)/n)/sqrt(n): too
    narrow twice over, by the normal quantile in place of Student's and by the biased spread.
    Hesterberg's expansion asks for the quantiles at Φ(±t·sqrt(n/(n-1))), t Student's with n-1
    degrees of freedom.
    """
    t = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))
    return 1 - 2 * float(stats.norm.cdf(-t * math.sqrt(n / (n - 1))))


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The interquartile mean: the mean of the middle half (25% trimmed on each side)."""
    return stats.trim_mean(x, 0.25, axis=axis)


def bootstrap_interval(
    x: np.ndarray,
    statistic: str = "mean",
    confidence: float = 0.95,
    bounds: tuple[float, float] = UNBOUNDED,
) -> tuple[float, float]:
    """The expanded percentile bootstrap interval of the mean or IQM of `x`, clipped to
    `bounds`; (nan, nan) below 2 values, the point itself when every value is the same."""
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return clip_interval(float(x[0]), float(x[0]), bounds)
    function = np.mean if statistic == "mean" else iqm
    result = stats.bootstrap(
        (x,),
        function,
        n_resamples=RESAMPLES,
        confidence_level=expanded_level(len(x), confidence),
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    low, high = result.confidence_interval
    return clip_interval(float(low), float(high), bounds)


def summarize(
    variant: str,
    scores: list[float],
    confidence: float = 0.95,
    *,
    bounds: tuple[float, float] = UNBOUNDED,
) -> Summary:
    """Mean, sample standard deviation, interquartile mean, and their bootstrap intervals.

    `bounds` is the range the metric can take (`seqmodels.tasks.metrics`): an interval is
    clipped to it. Bootstrap intervals of a mean stay inside the scores' own range, so clipping
    only ever matters for the few-seed intervals of a bound metric.
    """
    x = np.asarray(scores, dtype=float)
    n = len(x)
    mean = float(np.mean(x)) if n else math.nan
    if n < 2:
        return Summary(variant, n, mean, math.nan, math.nan, math.nan, mean)
    low, high = bootstrap_interval(x, "mean", confidence, bounds)
    iqm_low, iqm_high = bootstrap_interval(x, "iqm", confidence, bounds)
    return Summary(
        variant,
        n,
        mean,
        float(np.std(x, ddof=1)),
        low,
        high,
        float(iqm(x)),
        iqm_low,
        iqm_high,
    )


def clip_interval(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """The interval [low, high] cut to `bounds`."""
    lowest, highest = bounds
    return max(low, lowest), min(high, highest)


def probability_of_improvement(
    a: np.ndarray, b: np.ndarray, mode: Mode, axis: int = -1
) -> np.ndarray:
    """P(a better than b): the share of pairs (one repeat of each) in which a's score is better,
    ties counting half; the Mann-Whitney statistic over na·nb (rliable's estimator)."""
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    better = (
        a[..., :, None] < b[..., None, :] if mode == "min" else a[..., :, None] > b[..., None, :]
    )
    ties = a[..., :, None] == b[..., None, :]
    return (better.sum(axis=(-2, -1)) + 0.5 * ties.sum(axis=(-2, -1))) / (a.shape[-1] * b.shape[-1])


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference with the pooled standard deviation."""
    na, nb = len(a), len(b)
    pooled = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    if pooled == 0:
        return math.copysign(math.inf, np.mean(a) - np.mean(b)) if np.mean(a) != np.mean(b) else 0.0
    return float((np.mean(a) - np.mean(b)) / math.sqrt(pooled))


def smallest_p(na: int, nb: int) -> float:
    """The smallest two-sided p-value a rank test of na against nb values can give: the chance
    of the most extreme ordering, on either side."""
    return min(1.0, 2 / math.comb(na + nb, na))


def seeds_to_decide(alpha: float) -> int:
    """The fewest repeats per variant at which a rank test can reach `alpha` at all."""
    n = 2
    while smallest_p(n, n) >= alpha:
        n += 1
    return n


def rank_test(a: np.ndarray, b: np.ndarray) -> Any:
    """Two-sided Mann-Whitney p-value of `a` against `b`.

    Without ties, from the statistic's exact distribution. With ties (scores that repeat: an
    exact match over a few sequences), from its permutation distribution, every arrangement of
    the pooled scores, while there are at most `RESAMPLES` of them; beyond that (10 seeds each
    and more) the normal approximation with the tie correction, which is close there and costs
    nothing. `a` and `b` may be batches (..., na) and (..., nb): one p-value per pair of rows.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    shape = a.shape[:-1]
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    ordered = np.sort(np.concatenate([a, b], axis=-1), axis=-1)
    tied = np.any(ordered[:, 1:] == ordered[:, :-1], axis=-1)
    p = np.ones(len(a))
    if (~tied).any():
        exact = stats.mannwhitneyu(a[~tied], b[~tied], axis=-1, method="exact")
        p[~tied] = exact.pvalue
    if tied.any():
        na, nb = a.shape[-1], b.shape[-1]
        method: Any = "asymptotic"
        if math.comb(na + nb, na) <= RESAMPLES:
            method = stats.PermutationMethod(
                n_resamples=RESAMPLES, batch=PERMUTATION_BATCH, rng=np.random.default_rng(SEED)
            )
        with warnings.catch_warnings():  # every score the same: no spread to approximate
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            p[tied] = stats.mannwhitneyu(a[tied], b[tied], axis=-1, method=method).pvalue
    p = np.where(np.isnan(p), 1.0, np.minimum(p, 1.0))  # every score the same: nothing to rank
    p = p.reshape(shape)
    return float(p) if p.ndim == 0 else p


def _p_interval(a: np.ndarray, b: np.ndarray, mode: Mode, confidence: float) -> tuple[float, float]:
    """The bootstrap interval of P(a better than b), each variant's repeats resampled on their
    own (stratified)."""
    if min(len(a), len(b)) < 2:
        return math.nan, math.nan
    point = float(probability_of_improvement(a, b, mode))
    if np.all(a == a[0]) and np.all(b == b[0]):
        return point, point
    result = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: probability_of_improvement(x, y, mode, axis),
        n_resamples=RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    low, high = result.confidence_interval
    return float(low), float(high)


def compare(
    scores: dict[str, list[float]],
    alpha: float = ALPHA,
    mode: Mode = "min",
    min_effect: float | None = None,
    confidence: float = 0.95,
    intervals: bool = True,
) -> list[Comparison]:
    """Every pair of variants with at least two scores each, Holm-corrected together.

    Without `intervals`, P(a better)'s bootstrap interval is left out (NaN): what a
    simulation of the decision needs costs a fraction of it.
    """
    names = [v for v in scores if len(scores[v]) >= 2]
    pairs = list(itertools.combinations(names, 2))
    if not pairs:
        return []
    arrays = {v: np.asarray(scores[v], float) for v in names}
    raw = [rank_test(arrays[a], arrays[b]) for a, b in pairs]
    _, adjusted, _, _ = multipletests(raw, alpha=alpha, method="holm")
    out = []
    for (a, b), p, p_holm in zip(pairs, raw, adjusted, strict=True):
        xa, xb = arrays[a], arrays[b]
        with warnings.catch_warnings():  # identical scores: the test's NaN says it, below
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
            welch = float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)
        difference = float(np.mean(xa) - np.mean(xb))
        low, high = _p_interval(xa, xb, mode, confidence) if intervals else (math.nan, math.nan)
        larger = float(probability_of_improvement(xa, xb, "max"))  # P(a > b) + ties / 2
        beyond = min_effect is None or abs(difference) > min_effect
        out.append(
            Comparison(
                a=a,
                b=b,
                difference=difference,
                p_improvement=float(probability_of_improvement(xa, xb, mode)),
                p_improvement_low=low,
                p_improvement_high=high,
                rank_p=p,
                rank_p_holm=float(p_holm),
                welch_p=1.0 if math.isnan(welch) else welch,
                cohens_d=cohens_d(xa, xb),
                cliffs_delta=2 * larger - 1,
                significant=bool(p_holm < alpha) and beyond,
                decidable=smallest_p(len(xa), len(xb)) < alpha,
            )
        )
    return out


def equivalent(a: np.ndarray, b: np.ndarray, min_effect: float, alpha: float) -> bool:
    """Whether `a` and `b` differ in mean by less than `min_effect`, shown at `alpha` by two
    one-sided Welch tests (TOST, statsmodels): each bound of the region rejected on its own."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread: the difference is what it is
        return bool(abs(a.mean() - b.mean()) < min_effect)
    p, _, _ = ttost_ind(a, b, -min_effect, min_effect, usevar="unequal")
    return bool(p < alpha)


@dataclass(frozen=True)
class Sequential:
    """Seeds added in rounds (`seeds: {min, max, step}`), the study looking at its scores after
    each: it stops at the first look where every pair of variants is decided, significantly
    different or, with `min_effect`, equivalent, or at the last look.

    Looking more than once gives a false winner more chances. Each look tests at
    alpha / K (an honest Bonferroni split), K the number of looks planned at which a rank test
    can reach that level at all: a look with too few seeds for it (3 against 3 cannot go below
    p = 0.1) names no winner, and needs no share. A false winner at any look then has
    probability at most K * alpha / K = alpha, whatever the looks' dependence, and the report's
    verdict uses the same alpha / K. A group-sequential boundary (Pocock,
    O'Brien-Fleming) would spend alpha less bluntly; the split needs no assumption about the
    scores' distribution, which a rank test's boundary would have to simulate.
    """

    looks: tuple[int, ...]  # seeds per variant at each look, increasing
    alpha: float = ALPHA  # the study-wide false-winner rate
    mode: Mode = "min"
    min_effect: float | None = None

    @property
    def deciding_looks(self) -> int:
        """K: the fewest looks that can count every look able to reject at alpha / K."""
        for k in range(1, len(self.looks)):
            if sum(smallest_p(n, n) < self.alpha / k for n in self.looks) <= k:
                return k
        return len(self.looks)

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / self.deciding_looks

    def decided(self, scores: dict[str, list[float]]) -> bool:
        """Whether every pair of `scores` is decided at one look's alpha."""
        comparisons = compare(
            scores, self.alpha_per_look, self.mode, self.min_effect, intervals=False
        )
        return all(
            c.significant
            or (
                self.min_effect is not None
                and equivalent(scores[c.a], scores[c.b], self.min_effect, self.alpha_per_look)
            )
            for c in comparisons
        )

    def stops_at(self, scores: dict[str, list[float]]) -> int:
        """The seeds per variant at which a study whose repeats score `scores` (each variant's
        in the order its seeds run, at least `looks[-1]` of them) stops."""
        for n in self.looks[:-1]:
            if self.decided({v: list(s[:n]) for v, s in scores.items()}):
                return n
        return self.looks[-1]


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


@functools.lru_cache(maxsize=256)
def detectable_shift(na: int, nb: int, alpha: float, power: float = POWER) -> float:
    """The smallest shift between two normal samples, in standard deviations, that the rank
    test detects with probability `power` at level `alpha` (inf when it cannot reach alpha).

    By simulation of the rule the study decides with, not from a t-test's power formula
    (`statsmodels.stats.power`): at the sample sizes of a study the rank test's discrete
    p-values make it less powerful than a t-test, and the sentence must be about this study's
    rule. Bisection on the shift, 2000 simulated pairs of samples at each step.
    """
    if smallest_p(na, nb) >= alpha:
        return math.inf
    rng = np.random.default_rng(SEED)
    a, b = rng.standard_normal((2000, na)), rng.standard_normal((2000, nb))

    def detected(shift: float) -> float:
        p = stats.mannwhitneyu(a, b + shift, axis=1, method="exact").pvalue
        return float(np.mean(p < alpha))

    low, high = 0.0, 1.0
    while detected(high) < power:
        low, high = high, high * 2
        if high > 1e3:
            return math.inf
    for _ in range(20):
        middle = (low + high) / 2
        low, high = (middle, high) if detected(middle) < power else (low, middle)
    return high


def minimum_detectable_effect(a: np.ndarray, b: np.ndarray, alpha: float) -> float:
    """The smallest difference in means the study's rule would have found with 80% power,
    in the metric's units: `detectable_shift` times the pooled standard deviation observed."""
    na, nb = len(a), len(b)
    pooled = math.sqrt(
        ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    )
    return detectable_shift(na, nb, alpha) * pooled
