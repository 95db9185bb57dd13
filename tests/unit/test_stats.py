"""The comparison statistics, checked on distributions whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.report.stats import cliffs_delta, cohens_d, compare, holm, summarize, winner
from seqmodels.tasks.metrics import metric_range


def test_t_interval_covers_the_mean_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    trials, covered = 4000, 0
    for _ in range(trials):
        s = summarize("v", list(rng.normal(1.0, 2.0, size=5)))
        covered += s.ci_low <= 1.0 <= s.ci_high
    assert covered / trials == pytest.approx(0.95, abs=0.015)


def test_summary_of_known_values() -> None:
    s = summarize("v", [1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean) == (4, 2.5)
    assert s.std == pytest.approx(math.sqrt(5 / 3))
    # t(0.975, 3) = 3.182446...
    assert s.ci_high - s.mean == pytest.approx(3.182446 * math.sqrt(5 / 3) / 2, rel=1e-5)
    single = summarize("v", [1.0])
    assert single.n == 1 and math.isnan(single.ci_low)


def test_interval_stays_inside_the_metric_range() -> None:
    small_mses = [0.0001, 0.0002, 0.0018]  # three seeds, one of them much worse
    assert summarize("v", small_mses).ci_low < 0  # the bare t-interval leaves the range
    mse = summarize("v", small_mses, bounds=metric_range("mse").bounds)
    assert mse.ci_low == 0.0 and mse.ci_high == summarize("v", small_mses).ci_high
    accuracies = [0.999, 1.0, 0.97]
    acc = summarize("v", accuracies, bounds=metric_range("accuracy").bounds)
    assert acc.ci_high == 1.0 and 0.0 < acc.ci_low < acc.mean
    inside = summarize("v", [10.0, 11.0, 12.0], bounds=metric_range("perplexity").bounds)
    assert inside == summarize("v", [10.0, 11.0, 12.0])  # inside the range: untouched


def test_holm_adjustment() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_effect_sizes() -> None:
    a, b = np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0])
    assert cliffs_delta(a, b) == 1.0 and cliffs_delta(b, a) == -1.0
    assert cliffs_delta(a, a) == 0.0
    assert cohens_d(a, b) == pytest.approx(3.0)  # means differ by 3, pooled sd 1


def test_clear_difference_is_significant_and_names_the_winner() -> None:
    rng = np.random.default_rng(1)
    scores = {
        "lstm": list(rng.normal(0.01, 0.005, size=5)),
        "rnn": list(rng.normal(0.16, 0.005, size=5)),
        "gru": list(rng.normal(0.05, 0.005, size=5)),
    }
    comparisons = compare(scores)
    assert len(comparisons) == 3 and all(c.significant for c in comparisons)
    summaries = [summarize(v, s) for v, s in scores.items()]
    assert winner(summaries, comparisons, "min") == "lstm"
    assert winner(summaries, comparisons, "max") == "rnn"


def test_same_distribution_is_rarely_declared_different() -> None:
    rng = np.random.default_rng(2)
    sims, rejections = 600, 0
    for _ in range(sims):
        (c,) = compare({"a": list(rng.normal(size=5)), "b": list(rng.normal(size=5))})
        rejections += c.significant
    assert rejections / sims < 0.08  # nominal level 0.05


def test_no_winner_without_significance() -> None:
    scores = {"a": [1.0, 2.0, 3.0], "b": [1.5, 2.5, 3.5]}
    comparisons = compare(scores)
    summaries = [summarize(v, s) for v, s in scores.items()]
    assert not comparisons[0].significant
    assert winner(summaries, comparisons, "min") is None
    assert winner([summarize("a", [1.0])], [], "min") is None


def test_identical_repeats_compare_without_a_warning_on_the_terminal() -> None:
    """Two repeats with the same score (a seq2seq task's exact match, say) are a real outcome."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (comparison,) = compare({"a": [0.3333, 0.3333], "b": [0.3333, 0.3333]})
    assert not comparison.significant
