"""The report's figures, from a study's records: learning curves, the final metric per variant,
the best score found so far, the expected best against the search budget, and the gradient's
norm against time lag (10.7's symptom).
"""

from __future__ import annotations

import math
import re

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipelines.report.budget import Curve
from pipelines.report.records import RunRecord, StudyRecord

# ||dL/dh(t)|| at lag k, what `RecurrenceDiagnostics` logs when a spec sets `diagnostics: true`
GRAD_LAG = re.compile(r"diag/grad_h_lag_(\d+)")


def learning_curves(record: StudyRecord) -> Figure:
    """Validation loss per epoch: median and interquartile band of each variant's repeats."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    for v in record.variants:
        runs = record.of("repeat", v) or record.of("trial", v)
        curves = [r.history["val/loss"] for r in runs if r.history.get("val/loss")]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        values = np.array([c[:length] for c in curves])  # (runs, epochs)
        epochs = np.arange(1, length + 1)
        ax.plot(epochs, np.median(values, axis=0), label=f"{v} (n={len(curves)})")
        ax.fill_between(epochs, *np.percentile(values, [25, 75], axis=0), alpha=0.25)
    ax.axhline(record.baseline, color="grey", linestyle="--", label="baseline")
    ax.set(xlabel="epoch", ylabel="val/loss", title="Learning curves (median, IQR)")
    ax.set_yscale("log")
    ax.legend()
    figure.tight_layout()
    return figure


def final_metric(record: StudyRecord, scores: dict[str, list[float]]) -> Figure:
    """Each repeat's test metric, per variant, with the mean."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    for i, values in enumerate(scores.values()):
        jitter = np.linspace(-0.08, 0.08, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(i + np.asarray(jitter), values, alpha=0.8)
        if values:
            ax.hlines(np.mean(values), i - 0.2, i + 0.2, color="black")
    ax.axhline(record.baseline, color="grey", linestyle="--", label="baseline")
    ax.set_xticks(range(len(scores)), list(scores))
    ax.set(ylabel=f"test {record.metric}", title="Final metric per seeded repeat")
    ax.legend()
    figure.tight_layout()
    return figure


def best_so_far(record: StudyRecord) -> Figure:
    """Best validation loss found so far against trials started, per variant."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    for v in record.variants:
        best = [r.best_val for r in record.of("trial", v) if not math.isnan(r.best_val)]
        if best:
            ax.step(range(1, len(best) + 1), np.minimum.accumulate(best), where="post", label=v)
    ax.set(xlabel="trials started", ylabel="best val/loss so far", title="Search progress")
    ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:  # none when every trial failed: matplotlib would warn
        ax.legend()
    figure.tight_layout()
    return figure


def gradient_by_lag(record: StudyRecord) -> dict[str, dict[int, float]]:
    """Per variant, ||dL/dh(t)|| against the time lag k = tau - t at the last epoch (10.7).

    The median over the variant's repeats, or over its trials when no repeat logged the
    diagnostics; a run's value is its last epoch's (MLflow's latest). Empty when no run has them.
    """
    curves = {}
    for v in record.variants:
        runs = [r for r in record.of("repeat", v) if _lags(r)]
        runs = runs or [r for r in record.of("trial", v) if _lags(r)]
        lags = sorted({lag for r in runs for lag in _lags(r)})
        curves[v] = {lag: _median_at(runs, f"diag/grad_h_lag_{lag}") for lag in lags}
    return {v: curve for v, curve in curves.items() if curve}


def _median_at(runs: list[RunRecord], key: str) -> float:
    return float(np.median([r.metrics[key] for r in runs if key in r.metrics]))


def _lags(run: RunRecord) -> list[int]:
    """The lags at which a run logged the gradient norm."""
    return [int(m.group(1)) for key in run.metrics if (m := GRAD_LAG.fullmatch(key))]


def gradient_norm_by_lag(curves: dict[str, dict[int, float]]) -> Figure:
    """Gradient norm against time lag: vanishing gradients (10.7) fall as the lag grows."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    for v, curve in curves.items():
        lags = sorted(curve)
        ax.plot(lags, [curve[k] for k in lags], marker="o", label=v)
    ax.set(
        xlabel="time lag k = tau - t",
        ylabel="||dL/dh(t)|| (median, last epoch)",
        title="Gradient norm against time lag",
    )
    ax.set_yscale("log")
    ax.legend()
    figure.tight_layout()
    return figure


def budget_curves(found: list[Curve]) -> Figure:
    """Each variant's expected best validation loss after n search trials, ± one standard
    deviation (`budget.expected_best`)."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    for c in found:
        if not c.trials:
            continue
        n = np.arange(1, len(c.mean) + 1)
        ax.plot(n, c.mean, marker="o", label=f"{c.variant} ({c.trials} trials)")
        ax.fill_between(n, c.mean - c.std, c.mean + c.std, alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # n counts trials
    ax.set(
        xlabel="search trials n",
        ylabel="expected best val/loss",
        title="Expected best against the search budget",
    )
    if any(c.trials for c in found):
        ax.legend()
    figure.tight_layout()
    return figure
