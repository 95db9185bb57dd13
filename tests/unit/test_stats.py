"""The comparison statistics, checked by simulation against answers that are known: the rule's
error rate when no variant is better, its power at the effect it says it can detect, the
intervals' coverage, and the budget curve against brute force."""

from __future__ import annotations

import gc
import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pipelines.report import budget
from pipelines.report.stats import (
    ALPHA,
    Sequential,
    Summary,
    bootstrap_interval,
    cohens_d,
    compare,
    detectable_shift,
    equivalent,
    expanded_level,
    probability_of_improvement,
    rank_test,
    seeds_to_decide,
    smallest_p,
    summarize,
    winner,
)
from seqmodels.tasks.metrics import metric_range

SIMULATIONS = 2000


def _null_samples(shape: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """(SIMULATIONS, 2, n) scores of two variants drawn from one distribution of `shape`."""
    size = (SIMULATIONS, 2, n)
    match shape:
        case "normal":
            return rng.normal(0.1, 0.02, size)
        case "skewed":  # an MSE: most seeds learn, a few do not
            return rng.lognormal(-6, 1.5, size)
        case "bounded":  # an accuracy pressed against 1
            return 1 - rng.beta(0.5, 20, size)
        case "ties":  # an exact match over 3 test sequences: only 4 values
            return rng.binomial(3, 0.6, size) / 3
    raise ValueError(shape)


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("shape", ["normal", "skewed", "bounded", "ties"])
def test_no_more_false_winners_than_alpha_when_the_variants_are_the_same(
    shape: str, n: int
) -> None:
    rng = np.random.default_rng(7)
    samples = _null_samples(shape, rng, n)
    p = rank_test(samples[:, 0], samples[:, 1])
    assert p.shape == (SIMULATIONS,) and np.mean(p < ALPHA) <= ALPHA + 0.015


def test_a_three_variant_study_names_a_false_winner_at_most_alpha_of_the_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # statsmodels' multipletests collects garbage on every call: 0.1 s in a process that holds
    # torch, for each of the thousand decisions below. It changes no number.
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(8)
    named = 0
    simulations = 1000  # each a whole decision: three pairs, Holm, the winner
    for _ in range(simulations):
        scores = {v: list(rng.lognormal(-6, 1.5, 6)) for v in ("rnn", "gru", "lstm")}
        comparisons = compare(scores, intervals=False)
        summaries = [
            Summary(v, len(s), float(np.mean(s)), 0.0, 0.0, 0.0) for v, s in scores.items()
        ]
        named += winner(summaries, comparisons, "min") is not None
    assert named / simulations <= ALPHA + 0.015


@pytest.mark.parametrize("n", [5, 10])
def test_the_rule_detects_the_effect_it_says_it_can_detect_as_often_as_it_says(n: int) -> None:
    shift = detectable_shift(n, n, ALPHA)
    rng = np.random.default_rng(9)  # not the simulation's own draws
    a = rng.standard_normal((SIMULATIONS, n))
    b = rng.standard_normal((SIMULATIONS, n)) + shift
    detected = np.mean(rank_test(a, b) < ALPHA)
    assert detected == pytest.approx(0.8, abs=0.05)


def test_with_three_seeds_no_rank_test_can_decide_and_four_can() -> None:
    assert smallest_p(3, 3) == pytest.approx(0.1)
    assert detectable_shift(3, 3, ALPHA) == math.inf
    assert seeds_to_decide(ALPHA) == 4
    assert rank_test(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])) == pytest.approx(0.1)
    (c,) = compare({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    assert not c.significant and not c.decidable
    assert c.p_improvement == 1.0  # every a lower than every b: the estimate is extreme
    assert c.p_improvement_low == 1.0  # and its bootstrap interval degenerate, so it never decides


@pytest.mark.parametrize("shape", ["normal", "skewed"])
def test_the_interval_of_the_mean_covers_it_95_percent_of_the_time_at_10_seeds(
    shape: str,
) -> None:
    """Skewed: a gamma of shape 4 (skewness 1). On a lognormal of sigma 0.5 (skewness 1.75)
    every interval tried covers 92-93.5% at 10 seeds: the expanded percentile 0.923, BCa 0.886,
    the bootstrap-t 0.935, Student's t 0.926. That is one reason a rank test decides."""
    rng = np.random.default_rng(10)
    truth = 0.1 if shape == "normal" else 4.0
    covered = 0
    for _ in range(SIMULATIONS):
        x = rng.normal(0.1, 0.02, 10) if shape == "normal" else rng.gamma(4.0, 1.0, 10)
        low, high = bootstrap_interval(x)
        covered += low <= truth <= high
    assert covered / SIMULATIONS == pytest.approx(0.95, abs=0.02)


def test_the_expanded_level_widens_the_percentile_interval_at_small_n_only() -> None:
    assert expanded_level(5, 0.95) > 0.99
    assert expanded_level(10_000, 0.95) == pytest.approx(0.95, abs=1e-3)


def test_intervals_stay_inside_the_metric_range_and_the_summary_has_its_iqm() -> None:
    small_mses = [0.0001, 0.0002, 0.0018]
    mse = summarize("v", small_mses, bounds=metric_range("mse").bounds)
    assert 0.0 <= mse.ci_low <= mse.mean <= mse.ci_high
    acc = summarize("v", [0.999, 1.0, 0.97, 1.0], bounds=metric_range("accuracy").bounds)
    assert acc.ci_high <= 1.0 and acc.iqm_high <= 1.0
    s = summarize("v", [1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.iqm == pytest.approx(scipy_stats.trim_mean([1, 2, 3, 4, 100], 0.25))
    assert s.iqm < s.mean  # the middle half leaves the outlier out
    single = summarize("v", [1.0])
    assert single.n == 1 and math.isnan(single.ci_low)
    same = summarize("v", [0.5, 0.5, 0.5])
    assert (same.ci_low, same.ci_high) == (0.5, 0.5)


def test_probability_of_improvement_and_the_effect_sizes() -> None:
    a, b = np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0])
    assert probability_of_improvement(a, b, "max") == 1.0
    assert probability_of_improvement(a, b, "min") == 0.0
    assert probability_of_improvement(np.array([1.0, 2.0]), np.array([1.0, 3.0]), "min") == 0.625
    (c,) = compare({"a": list(a), "b": list(b)}, mode="max")
    assert c.cliffs_delta == 1.0 and c.p_improvement == 1.0
    assert cohens_d(a, b) == pytest.approx(3.0)  # means differ by 3, pooled sd 1


def test_a_clear_difference_names_the_winner_and_holm_corrects_the_pairs() -> None:
    rng = np.random.default_rng(1)
    scores = {
        "lstm": list(rng.normal(0.01, 0.005, size=6)),
        "rnn": list(rng.normal(0.16, 0.005, size=6)),
        "gru": list(rng.normal(0.05, 0.005, size=6)),
    }
    comparisons = compare(scores)
    assert len(comparisons) == 3 and all(c.significant for c in comparisons)
    raw = sorted(c.rank_p for c in comparisons)
    assert sorted(c.rank_p_holm for c in comparisons)[0] == pytest.approx(3 * raw[0])
    summaries = [summarize(v, s) for v, s in scores.items()]
    assert winner(summaries, comparisons, "min") == "lstm"
    assert winner(summaries, compare(scores, mode="max"), "max") == "rnn"


def test_a_difference_inside_the_region_of_practical_equivalence_is_none() -> None:
    scores = {"a": [0.100, 0.101, 0.102, 0.103, 0.104], "b": [0.110, 0.111, 0.112, 0.113, 0.114]}
    (decided,) = compare(scores)
    assert decided.significant
    (equivalent,) = compare(scores, min_effect=0.02)
    assert not equivalent.significant and equivalent.decidable


def test_identical_repeats_compare_without_a_warning_on_the_terminal() -> None:
    """Two repeats with the same score (a seq2seq task's exact match, say) are a real outcome."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (comparison,) = compare({"a": [0.3333, 0.3333], "b": [0.3333, 0.3333]})
    assert not comparison.significant and comparison.p_improvement == 0.5


@pytest.mark.parametrize("mode", ["min", "max"])
def test_the_budget_curve_is_the_mean_best_over_every_draw_of_n_trials(mode: str) -> None:
    scores = [0.31, 0.12, 0.5, 0.12, 0.27]
    mean, std = budget.expected_best(scores, 3, mode)
    pick = min if mode == "min" else max
    for n in (1, 2, 3):
        draws = [pick(d) for d in itertools.product(scores, repeat=n)]
        assert mean[n - 1] == pytest.approx(np.mean(draws))
        assert std[n - 1] == pytest.approx(np.std(draws))


def test_the_ranking_of_budget_curves_is_stable_from_the_budget_it_stops_changing() -> None:
    # "wide" has one great trial among bad ones: worse at a small budget, best at a large one.
    scores = {"narrow": [0.2, 0.21, 0.22, 0.2], "wide": [0.9, 0.8, 0.05, 0.95]}
    found = budget.curves(scores, 8, "min")
    means = {c.variant: c.mean for c in found}
    assert means["wide"][0] > means["narrow"][0] and means["wide"][7] < means["narrow"][7]
    start = budget.stable_from(found, "min")
    assert start == 6  # E[best of 6] is where wide first stays below narrow
    assert means["wide"][start - 1] < means["narrow"][start - 1]
    assert means["wide"][start - 2] > means["narrow"][start - 2]


def _sequential_winners(rule: Sequential, samples: np.ndarray) -> tuple[int, list[int]]:
    """Each simulated study of two variants (`samples`, (studies, 2, seeds)) run in rounds
    by `rule`: how many named a winner, and the seeds per variant each stopped at."""
    named, stopped = 0, []
    for a, b in samples:
        n = rule.stops_at({"a": list(a), "b": list(b)})
        scores = {"a": list(a[:n]), "b": list(b[:n])}
        comparisons = compare(scores, rule.alpha_per_look, intervals=False)
        summaries = [Summary(v, n, float(np.mean(s)), 0.0, 0.0, 0.0) for v, s in scores.items()]
        named += winner(summaries, comparisons, "min") is not None
        stopped.append(n)
    return named, stopped


# "skewed" (a lognormal) ranks as "normal" does: a rank rule sees the same draws twice.
@pytest.mark.parametrize("shape", ["normal", "bounded", "ties"])
def test_seeds_in_rounds_name_no_more_false_winners_than_alpha(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking after every round (5, 10, 15, 20 seeds) and stopping once decided: without the
    split of alpha over the looks the false-winner rate would grow with each look."""
    monkeypatch.setattr(gc, "collect", lambda *args: 0)  # as in the three-variant test
    rule = Sequential((5, 10, 15, 20), ALPHA)
    samples = _null_samples(shape, np.random.default_rng(10), 20)
    named, stopped = _sequential_winners(rule, samples)
    assert named / SIMULATIONS <= ALPHA + 0.015
    # and the looks are what a naive rule, alpha at each look, would have abused
    naive = np.zeros(SIMULATIONS, bool)
    for n in rule.looks:
        naive |= rank_test(samples[:, 0, :n], samples[:, 1, :n]) < ALPHA
    assert np.mean(naive) > ALPHA + 0.015 or shape == "ties"
    assert np.mean(np.array(stopped) == 20) > 0.9  # with no difference it rarely stops early


def test_seeds_in_rounds_stop_early_against_a_clear_difference_and_at_equivalence() -> None:
    rule = Sequential((5, 10, 15, 20), ALPHA)
    rng = np.random.default_rng(11)
    clear = [
        rule.stops_at({"a": list(rng.normal(0, 1, 20)), "b": list(rng.normal(3, 1, 20))})
        for _ in range(50)
    ]
    assert np.median(clear) == 5
    same = Sequential((5, 10, 15, 20), ALPHA, min_effect=1.0)
    tight = [
        same.stops_at({"a": list(rng.normal(0, 0.1, 20)), "b": list(rng.normal(0.05, 0.1, 20))})
        for _ in range(50)
    ]
    assert np.median(tight) == 5  # within 1.0 of each other, shown at the first look
    assert equivalent(np.full(5, 0.2), np.full(5, 0.25), 0.1, 0.01)
    assert not equivalent(np.full(5, 0.2), np.full(5, 0.35), 0.1, 0.01)
    assert not equivalent(rng.normal(0, 1, 5), rng.normal(0, 1, 5), 0.1, 0.0125)


def test_the_quantiles_of_the_best_of_n_trials_match_brute_force() -> None:
    scores = [0.5, 0.1, 0.3, 0.2, 0.4]
    draws = np.array(list(itertools.product(scores, repeat=3)))  # every draw of 3, equally likely
    best = np.sort(draws.min(axis=1))[::-1]  # worst (highest) first
    for q in (0.05, 0.5, 0.95):
        expected = best[math.ceil(q * len(best)) - 1]  # the q-th share of draws reach it or worse
        (got,) = budget.best_of_quantiles(scores, 3, [q], "min")
        assert got == expected, q
    assert budget.best_of_quantiles([1.0, 3.0], 1, [0.25, 0.75], "max").tolist() == [1.0, 3.0]


def test_alpha_is_split_over_the_looks_that_can_reach_their_share_only() -> None:
    # 2 against 2 cannot go below p = 1/3, 4 against 4 below 0.029: such looks need no share
    assert [Sequential(looks).alpha_per_look for looks in [(2, 4), (4, 8), (5, 10, 15, 20)]] == [
        0.05,
        0.025,
        0.0125,
    ]
    assert Sequential((2, 4, 6, 8)).deciding_looks == 2  # 0.025 at 6 and 8 only


def test_a_plan_with_looks_too_small_to_decide_keeps_the_false_winner_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rule = Sequential((3, 6, 9), ALPHA)  # 3 seeds can decide nothing: alpha / 2 at 6 and 9
    samples = np.random.default_rng(12).normal(0.1, 0.02, (SIMULATIONS, 2, 9))
    named, _ = _sequential_winners(rule, samples)
    assert rule.alpha_per_look == 0.025 and named / SIMULATIONS <= ALPHA + 0.015
