"""The statistics across a suite's tasks (`report.aggregate`), on simulated scores: normalised
scores, the stratified intervals' coverage, P(improvement) and profiles against brute force,
and the rank test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pipelines.report import aggregate, stats

# Three tasks, each of its own shape: a variant's normalised scores differ in level and spread
# by task, so the pooled IQM's truth is that of their mixture.
TASKS = {"adding": (0.55, 0.10), "copy": (0.30, 0.20), "digits": (0.80, 0.05)}


def _task(
    name: str, metric: str, baseline: float, **normalised: np.ndarray
) -> aggregate.TaskScores:
    """A task whose variants scored `normalised` (0 baseline, 1 ideal) in `metric`'s units."""
    span = aggregate.metric_range(metric)
    ideal = span.high if span.maximised else span.low
    scores = {v: list(baseline + x * (ideal - baseline)) for v, x in normalised.items()}
    return aggregate.TaskScores(name, metric, baseline, scores)


def test_scores_are_put_on_the_baseline_to_ideal_scale_whatever_the_metric() -> None:
    errors = aggregate.TaskScores("adding", "mse", 0.17, {"lstm": [0.17, 0.0, 0.085]})
    np.testing.assert_allclose(errors.normalised("lstm"), [0.0, 1.0, 0.5])
    right = aggregate.TaskScores("digits", "accuracy", 0.1, {"gru": [0.1, 1.0, 0.55, math.nan]})
    np.testing.assert_allclose(right.normalised("gru"), [0.0, 1.0, 0.5])  # a nan is no score
    perplexity = aggregate.TaskScores("text", "perplexity", 9.0, {"rnn": [5.0]})
    np.testing.assert_allclose(perplexity.normalised("rnn"), [0.5])  # its ideal is 1


def test_p_improvement_and_profiles_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    tasks = [
        _task(name, "mse", 0.2, a=rng.normal(m + 0.05, s, 6), b=rng.normal(m, s, 4))
        for name, (m, s) in TASKS.items()
    ]
    shares = []
    for t in tasks:
        pairs = list(itertools.product(t.normalised("a"), t.normalised("b")))
        shares.append(sum((x > y) + 0.5 * (x == y) for x, y in pairs) / len(pairs))
    found = aggregate.improvement(tasks, "a", "b")
    assert found.probability == pytest.approx(np.mean(shares))
    assert found.low <= found.probability <= found.high
    assert found.tasks == 3
    taus = (0.0, 0.4, 0.9)
    expected = [np.mean([np.mean(t.normalised("a") > tau) for t in tasks]) for tau in taus]
    np.testing.assert_allclose(aggregate.profile(tasks, "a", taus), expected)


def test_stratified_intervals_cover_the_iqm_and_the_probability_of_improvement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """600 simulated suites of 3 tasks, 12 runs per variant and task (the IQM of 36 runs trims
    exactly a quarter at each end): the 95% intervals of the pooled IQM and of P(improvement)
    cover their true values 0.95 ± 0.03."""
    monkeypatch.setattr(stats, "RESAMPLES", 999)
    rng = np.random.default_rng(0)
    shift = 0.1  # a's normalised scores are b's moved up by 0.1 on every task
    mixture = np.concatenate([rng.normal(m + shift, s, 400_000) for m, s in TASKS.values()])
    true_iqm = float(stats.iqm(mixture))
    true_p = np.mean([scipy_stats.norm.cdf(shift / (s * math.sqrt(2))) for _, s in TASKS.values()])
    covered_iqm = covered_p = 0
    sims = 600
    for _ in range(sims):
        tasks = [
            _task(name, "mse", 1.0, a=rng.normal(m + shift, s, 12), b=rng.normal(m, s, 12))
            for name, (m, s) in TASKS.items()
        ]
        found = aggregate.aggregate(tasks, "a")
        covered_iqm += found.low <= true_iqm <= found.high
        better = aggregate.improvement(tasks, "a", "b")
        covered_p += better.low <= true_p <= better.high
    assert abs(covered_iqm / sims - 0.95) <= 0.03, covered_iqm / sims
    assert abs(covered_p / sims - 0.95) <= 0.03, covered_p / sims


def test_a_task_with_one_run_has_no_interval_and_identical_scores_a_point() -> None:
    one = [_task("adding", "mse", 1.0, a=np.array([0.5]), b=np.array([0.2, 0.3]))]
    assert all(math.isnan(x) for x in (aggregate.aggregate(one, "a").low,))
    same = [_task("adding", "mse", 1.0, a=np.array([0.5, 0.5]), b=np.array([0.5, 0.5]))]
    found = aggregate.aggregate(same, "a")
    assert (found.low, found.iqm, found.high) == pytest.approx((0.5, 0.5, 0.5))


def test_ranks_average_over_tasks_and_demsar_needs_five_tasks() -> None:
    rng = np.random.default_rng(1)
    level = {"lstm": 0.9, "gru": 0.6, "tanh": 0.2}

    def suite(k: int, gap: float) -> list[aggregate.TaskScores]:
        return [
            _task(
                f"t{i}",
                "mse",
                1.0,
                **{v: rng.normal(gap * m, 0.05, 5) for v, m in level.items()},
            )
            for i in range(k)
        ]

    few = aggregate.ranking(suite(2, 1.0), list(level), 0.05)
    assert few.mean_rank == {"lstm": 1.0, "gru": 2.0, "tanh": 3.0}
    assert few.friedman_p is None and few.tasks == 2  # below five tasks: ranks, no test
    clear = aggregate.ranking(suite(8, 1.0), list(level), 0.05)
    assert clear.friedman_p is not None and clear.friedman_p < 0.01
    # Demšar's table 5 (k = 3, alpha 0.05): q = 2.343, CD = q sqrt(k (k + 1) / (6 n))
    assert clear.critical_difference == pytest.approx(2.343 * math.sqrt(12 / 48), abs=1e-3)
    assert ("lstm", "tanh") in clear.different  # ranks 1 and 3 on every task: 2 apart
    assert ("lstm", "gru") not in clear.different  # 1 apart, within the critical difference
    alike = aggregate.ranking(suite(8, 0.0), list(level), 0.05)  # the same scores for all
    assert alike.friedman_p is not None and alike.friedman_p > 0.05 and not alike.different
