"""The study report, built from what MLflow holds and nothing else.

`run_study` publishes it at the end of a run, and `seqlab report STUDY` rebuilds it for any past
study with no retraining: both call `collect` then `build`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.ops import settings
from pipelines.report import stats
from seqmodels.tasks.metrics import metric_range

# `mean / baseline` only where the baseline is at least this far from 0. The baselines are
# trivial predictors' errors, from 1.0 (PER) down to about 0.02 (copy memory at T=1000); one
# below 1e-3 means the trivial predictor is already almost perfect, and a ratio to it
# magnifies noise (0.0005 / 0.0001 = 5).
RATIO_MIN_BASELINE = 1e-3
# ||dL/dh(t)|| at lag k, what `RecurrenceDiagnostics` logs when a spec sets `diagnostics: true`
GRAD_LAG = re.compile(r"diag/grad_h_lag_(\d+)")


def metric_mode(metric: str) -> stats.Mode:
    return "max" if metric_range(metric).maximised else "min"


@dataclass(frozen=True)
class RunRecord:
    """One child run: a search trial or a seeded repeat."""

    run_id: str
    variant: str
    kind: str
    seed: int
    status: str
    start_time: int
    params: dict[str, str]
    metrics: dict[str, float]
    history: dict[str, list[float]] = field(default_factory=dict)  # key -> value per epoch
    tags: dict[str, str] = field(default_factory=dict)  # `diverged`, `error`: why it FAILED

    @property
    def epochs(self) -> int:
        return len(self.history.get("val/loss", []))

    @property
    def best_val(self) -> float:
        return min(self.history.get("val/loss", []), default=math.nan)


@dataclass(frozen=True)
class StudyRecord:
    """Everything a report needs, read back from one parent run and its children."""

    study: str
    parent_run_id: str
    tags: dict[str, str]
    spec: dict[str, Any]
    runs: list[RunRecord]

    @property
    def metric(self) -> str:
        return self.tags["dataset.metric"]

    @property
    def baseline(self) -> float:
        return float(self.tags["dataset.baseline"])

    @property
    def variants(self) -> list[str]:
        return list(self.spec["variants"])

    @property
    def left_out(self) -> dict[str, str]:
        """The variants the study went on without, and why (`flows.LeftOut`, tagged on the
        parent run as `left_out.<variant>`), in the spec's order."""
        tags = self.tags
        return {v: tags[f"left_out.{v}"] for v in self.variants if f"left_out.{v}" in tags}

    def of(self, kind: str, variant: str | None = None) -> list[RunRecord]:
        return [
            r for r in self.runs if r.kind == kind and (variant is None or r.variant == variant)
        ]


def latest_parent(client: MlflowClient, study: str) -> str | None:
    """The newest finished parent run of a study, or None."""
    run = tracking.latest_study_run(client, study, finished=True)
    return run.info.run_id if run else None


def rebuild(client: MlflowClient, study: str, run_id: str | None = None) -> tuple[str, Report]:
    """The report of a study's parent run (default: its newest finished one), from MLflow alone.

    Returns the parent run id and the report. Raises LookupError when the study has no finished
    run, and MlflowException when `run_id` names no run.
    """
    parent = run_id or latest_parent(client, study)
    if parent is None:
        raise LookupError(f"study: no finished run of {study!r} in {settings.tracking_uri()}")
    return parent, build(collect(client, parent))


def collect(client: MlflowClient, parent_run_id: str) -> StudyRecord:
    """Read a study's parent run, its child runs and their per-epoch histories."""
    parent = client.get_run(parent_run_id)
    spec = json.loads(Path(client.download_artifacts(parent_run_id, "spec.json")).read_text())
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=10_000,
    )
    runs = []
    for child in children:
        tags = child.data.tags
        history = {
            key: [
                m.value
                for m in sorted(
                    client.get_metric_history(child.info.run_id, key), key=lambda m: m.step
                )
            ]
            for key in ("train/loss", "val/loss")
        }
        runs.append(
            RunRecord(
                run_id=child.info.run_id,
                variant=tags.get("variant", "?"),
                kind=tags.get("kind", "trial"),
                seed=int(tags.get("seed", 0) or 0),
                status=child.info.status,
                start_time=child.info.start_time or 0,
                params=dict(child.data.params),
                metrics=dict(child.data.metrics),
                history=history,
                tags=dict(tags),
            )
        )
    runs.sort(key=lambda r: (r.start_time, r.run_id))
    return StudyRecord(
        study=spec["name"],
        parent_run_id=parent_run_id,
        tags=dict(parent.data.tags),
        spec=spec,
        runs=runs,
    )


@dataclass
class Report:
    """The Markdown text and the figures, named by their file names."""

    markdown: str
    summary: str  # the verdict and the tables, for the terminal
    figures: dict[str, Figure]
    winner: str | None


def build(record: StudyRecord) -> Report:
    """Statistics, tables and plots of a study.

    A variant left out (every trial failed or diverged, or a seeded repeat diverged) is in no
    table and no decision: its scores, if any, are no result. It has a section of its own.
    """
    metric, mode = record.metric, metric_mode(record.metric)
    key = f"test/{metric}"
    left_out = record.left_out
    scores = {
        v: [r.metrics[key] for r in record.of("repeat", v) if key in r.metrics]
        for v in record.variants
        if v not in left_out
    }
    bounds = metric_range(metric).bounds
    summaries = [stats.summarize(v, s, bounds=bounds) for v, s in scores.items()]
    comparisons = stats.compare(scores)
    best = stats.winner(summaries, comparisons, mode)
    table = _comparison_table(record, summaries, mode) if summaries else ""
    pairwise = _pairwise_table(comparisons)
    verdict = _verdict(best, summaries, mode, metric, list(left_out))
    gone = _left_out(record)
    figures = {
        "learning_curves.png": _learning_curves(record),
        "final_metric.png": _final_metric(record, scores),
        "search_best_so_far.png": _best_so_far(record),
    }
    by_lag = _gradient_by_lag(record)
    if by_lag:  # the study ran with `diagnostics: true`
        figures["gradient_norm_by_lag.png"] = _gradient_norm_by_lag(by_lag)
    sections = [
        f"# {record.study}",
        "",
        record.spec.get("description", "").strip(),
        "",
        "## Result",
        "",
        verdict,
        "",
        table,
        pairwise,
        gone,
        _budget(record),
        _reproduce(record),
        "## Figures",
        "",
        ", ".join(f"`plots/{name}`" for name in figures),
        "",
    ]
    summary = "\n".join([f"## {record.study}: {verdict}", "", table, pairwise, gone])
    return Report("\n".join(sections), summary, figures, best)


def publish(client: MlflowClient, parent_run_id: str, report: Report) -> None:
    """Attach the report to the parent run: `report.md`, `comparison.md` and `plots/*.png`."""
    client.log_text(parent_run_id, report.markdown, "report.md")
    client.log_text(parent_run_id, report.summary, "comparison.md")
    for name, figure in report.figures.items():
        client.log_figure(parent_run_id, figure, f"plots/{name}")


def write(report: Report, directory: Path) -> None:
    """Write the report and its plots under `directory`."""
    (directory / "plots").mkdir(parents=True, exist_ok=True)
    (directory / "report.md").write_text(report.markdown)
    for name, figure in report.figures.items():
        figure.savefig(directory / "plots" / name, dpi=100)


def _verdict(
    best: str | None,
    summaries: list[stats.Summary],
    mode: str,
    metric: str,
    left_out: list[str] | None = None,
) -> str:
    gone = f" Left out of the comparison: {', '.join(left_out)} (see below)." if left_out else ""
    if not summaries:
        return "**No result:** every variant failed or diverged (see below)."
    if best is not None:
        return (
            f"**Winner: {best}.** Its test {metric} is significantly "
            f"{'lower' if mode == 'min' else 'higher'} than every other variant's "
            "(Welch's t-test, Holm-corrected, alpha 0.05)." + gone
        )
    if len(summaries) == 1 and left_out:
        return f"No winner declared: only {summaries[0].variant} is left to compare." + gone
    if any(s.n < 2 for s in summaries):
        return (
            "No winner declared: significance needs at least two seeded repeats per variant." + gone
        )
    return "**No significant difference** between the best variant and every other." + gone


def _left_out(record: StudyRecord) -> str:
    """The variants left out, why, and each of their runs with its status and what it says."""
    left_out = record.left_out
    if not left_out:
        return ""
    lines = ["## Left out of the comparison", ""]
    for variant, reason in left_out.items():
        lines.append(f"- **{variant}**: {reason}")
        for run in record.of("trial", variant) + record.of("repeat", variant):
            if "diverged" in run.tags:
                said = f", diverged: {run.tags['diverged']}"
            else:
                said = f": {run.tags['error']}" if "error" in run.tags else ""
            lines.append(f"  - {run.kind} run `{run.run_id}` {run.status}{said}")
    return "\n".join(lines) + "\n"


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def shows_ratio(mode: str, baseline: float) -> bool:
    """Whether `mean / baseline` means something: for an error (a minimised metric), as a
    fraction of the trivial predictor's error, and not when that error is near 0. For a
    maximised metric a ratio to a near-0 baseline is large and says nothing (688 for an
    exact match of 0.69 against 0.001)."""
    return mode == "min" and math.isfinite(baseline) and baseline >= RATIO_MIN_BASELINE


def _comparison_table(record: StudyRecord, summaries: list[stats.Summary], mode: str) -> str:
    metric, baseline = record.metric, record.baseline
    searched = sorted(record.spec["search"]["space"])
    ratio = shows_ratio(mode, baseline)
    head = ["variant", "repeats", f"test {metric} mean ± sd", "95% CI", f"baseline {metric}"]
    head += ["mean / baseline"] if ratio else []
    head += ["best val/loss (search)", *searched]
    lines = [_row(head), "|---" * len(head) + "|"]
    ordered = sorted(summaries, key=lambda s: s.mean if mode == "min" else -s.mean)
    for s in ordered:
        best_trial = _chosen_trial(record.of("trial", s.variant))
        config = [best_trial.params.get(k, "") if best_trial else "" for k in searched]
        cells = [s.variant, str(s.n), f"{_fmt(s.mean)} ± {_fmt(s.std)}"]
        cells += [f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]", _fmt(baseline)]
        cells += [_fmt(s.mean / baseline, 3)] if ratio else []
        cells += [_fmt(best_trial.best_val) if best_trial else "n/a"]
        cells += [_short(c) for c in config]
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _chosen_trial(trials: list[RunRecord]) -> RunRecord | None:
    """The search trial whose configuration the repeats retrained, as the flow chose it: the
    lowest finite val/loss among the trials that neither failed nor diverged."""
    usable = [
        r
        for r in trials
        if r.status != "FAILED" and "diverged" not in r.tags and math.isfinite(r.best_val)
    ]
    return min(usable, key=lambda r: r.best_val, default=None)


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() else f"{number:.3g}"


def _pairwise_table(comparisons: list[stats.Comparison]) -> str:
    if not comparisons:
        return ""
    lines = [
        "### Pairwise",
        "",
        "| a vs b | mean(a) - mean(b) | Welch p (Holm) | Mann-Whitney p | Cohen's d "
        "| Cliff's delta | significant |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.a} vs {c.b} | {c.difference:+.4f} | {c.welch_p_holm:.3g} "
            f"| {c.mannwhitney_p:.3g} | {c.cohens_d:.2f} | {c.cliffs_delta:+.2f} "
            f"| {'yes' if c.significant else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _budget(record: StudyRecord) -> str:
    search = record.spec["search"]
    max_epochs = record.spec["fixed"]["max_epochs"]
    lines = [
        "## Search budget",
        "",
        f"{search['trials_per_variant']} trials per variant, {search['algorithm']} search, "
        f"{search['scheduler']['name']} scheduler, at most {max_epochs} epochs each; then "
        f"{record.spec['seeds']} seeded repeats of each variant's best configuration.",
        "",
        "| variant | trials | early-stopped | failed | diverged | epochs trained |",
        "|---|---|---|---|---|---|",
    ]
    for v in record.variants:
        trials = record.of("trial", v)
        diverged = sum("diverged" in r.tags for r in trials)
        failed = sum(r.status == "FAILED" for r in trials) - diverged
        early = sum(r.status != "FAILED" and r.epochs < max_epochs for r in trials)
        lines.append(
            f"| {v} | {len(trials)} | {early} | {failed} | {diverged} "
            f"| {sum(r.epochs for r in trials)} |"
        )
    return "\n".join(lines) + "\n"


def _reproduce(record: StudyRecord) -> str:
    t = record.tags
    versions = ", ".join(
        f"{k.removeprefix('version.')} {v}"
        for k, v in sorted(t.items())
        if k.startswith("version.")
    )
    sha = t.get("mlflow.source.git.commit", "unknown")
    dirty = " (with uncommitted changes)" if t.get("git.dirty") == "True" else ""
    return "\n".join(
        [
            "## Reproduce",
            "",
            f"- command: `seqlab run {t.get('spec.source', '<spec>')}`",
            f"- code: git {sha}{dirty}",
            f"- spec hash {t.get('spec.hash')}, dataset digest {t.get('dataset.digest')}",
            f"- Python {t.get('python')}; {versions}",
            f"- MLflow parent run {record.parent_run_id}",
            "",
        ]
    )


def _learning_curves(record: StudyRecord) -> Figure:
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


def _final_metric(record: StudyRecord, scores: dict[str, list[float]]) -> Figure:
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


def _best_so_far(record: StudyRecord) -> Figure:
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


def _gradient_by_lag(record: StudyRecord) -> dict[str, dict[int, float]]:
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


def _gradient_norm_by_lag(curves: dict[str, dict[int, float]]) -> Figure:
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
