"""The study report, built from what MLflow holds and nothing else.

`run_study` publishes it at the end of a run, and `seqlab report STUDY` rebuilds it for any past
study with no retraining: both call `collect` then `build`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from pipelines.ops import settings
from pipelines.report import plots, stats
from pipelines.report.records import RunRecord, StudyRecord, collect, latest_parent
from seqmodels.tasks.metrics import metric_range

# `mean / baseline` only where the baseline is at least this far from 0. The baselines are
# trivial predictors' errors, from 1.0 (PER) down to about 0.02 (copy memory at T=1000); one
# below 1e-3 means the trivial predictor is already almost perfect, and a ratio to it
# magnifies noise (0.0005 / 0.0001 = 5).
RATIO_MIN_BASELINE = 1e-3


def metric_mode(metric: str) -> stats.Mode:
    return "max" if metric_range(metric).maximised else "min"


def rebuild(client: MlflowClient, study: str, run_id: str | None = None) -> tuple[str, Report]:
    """The report of a study's parent run (default: its newest finished one), from MLflow alone.

    Returns the parent run id and the report. Raises LookupError when the study has no finished
    run, and MlflowException when `run_id` names no run.
    """
    parent = run_id or latest_parent(client, study)
    if parent is None:
        raise LookupError(f"study: no finished run of {study!r} in {settings.tracking_uri()}")
    return parent, build(collect(client, parent))


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
        "learning_curves.png": plots.learning_curves(record),
        "final_metric.png": plots.final_metric(record, scores),
        "search_best_so_far.png": plots.best_so_far(record),
    }
    by_lag = plots.gradient_by_lag(record)
    if by_lag:  # the study ran with `diagnostics: true`
        figures["gradient_norm_by_lag.png"] = plots.gradient_norm_by_lag(by_lag)
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
