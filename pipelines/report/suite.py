"""A suite's report: its variants compared across its tasks (`aggregate`), from what MLflow
holds and nothing else, as a study's report is (`markdown`).

The suite's parent run holds `suite.json`; its children are its tasks' studies' parent runs
(tagged `suite.task`), each with its trials and repeats below it and its own report. This one
reads each task's verdict and scores from those (`markdown.decide`), and adds the aggregate.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.report import aggregate, stats
from pipelines.report.markdown import Decision, Report, _fmt, _row, decide
from pipelines.report.records import StudyRecord, collect
from seqmodels.tasks import TASKS


@dataclass(frozen=True)
class SuiteRecord:
    """A suite as MLflow holds it: its parent run, its spec, and each finished task study."""

    suite: str
    parent_run_id: str
    tags: dict[str, str]
    spec: dict[str, Any]  # suite.json: name, description, studies (label -> study spec)
    tasks: dict[str, StudyRecord]  # label -> its study, in the spec's order

    @property
    def variants(self) -> list[str]:
        first = next(iter(self.spec["studies"].values()))
        return list(first["variants"])


def collect_suite(client: MlflowClient, parent_run_id: str) -> SuiteRecord:
    """Read a suite's parent run and the newest finished study of each of its tasks."""
    parent = client.get_run(parent_run_id)
    spec = json.loads(Path(client.download_artifacts(parent_run_id, "suite.json")).read_text())
    studies = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.kind = 'study' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    newest: dict[str, str] = {}
    for run in studies:
        newest.setdefault(run.data.tags.get(tracking.SUITE_TASK, ""), run.info.run_id)
    tasks = {label: collect(client, newest[label]) for label in spec["studies"] if label in newest}
    return SuiteRecord(spec["name"], parent_run_id, dict(parent.data.tags), spec, tasks)


def build_suite(record: SuiteRecord) -> Report:
    """The suite's statistics, tables and figure: per task, then across the tasks."""
    decisions = {label: decide(task) for label, task in record.tasks.items()}
    alpha = next(iter(decisions.values())).alpha if decisions else stats.ALPHA
    scored = [
        aggregate.TaskScores(label, task.metric, task.baseline, decisions[label].scores)
        for label, task in record.tasks.items()
    ]
    # A variant left out of any task (it could not train there) has no aggregate.
    kept = [v for v in record.variants if scored and all(len(t.normalised(v)) for t in scored)]
    pairs = math.comb(len(kept), 2)
    confidence = 1 - alpha / max(pairs, 1)  # Bonferroni over the pairs: the decision's level
    summaries = [aggregate.aggregate(scored, v) for v in kept]
    better = [
        aggregate.improvement(scored, a, b, confidence) for a, b in itertools.combinations(kept, 2)
    ]
    ranked = aggregate.ranking(scored, kept, alpha) if kept and scored else None
    best = _winner(kept, better)
    missing = [label for label in record.spec["studies"] if label not in record.tasks]
    won = {label: decided.winner for label, decided in decisions.items()}
    verdict = _verdict(record, kept, summaries, better, best, confidence, missing, won)
    per_task = _per_task(record, decisions)
    table = _aggregate_table(summaries, ranked)
    pairwise = _pairwise(better, confidence)
    sections = [
        f"# {record.suite}",
        "",
        str(record.spec.get("description", "")).strip(),
        "",
        "## Result",
        "",
        verdict,
        "",
        "### Per task",
        "",
        per_task,
        "### Across the tasks",
        "",
        table,
        pairwise,
        _ranks(ranked, alpha),
        _method(record, confidence),
        "## Figures",
        "",
        "`plots/performance_profiles.png`",
        "",
    ]
    figures = {"performance_profiles.png": _profiles(scored, kept)}
    summary = "\n".join([f"## {record.suite}: {verdict}", "", per_task, table, pairwise])
    return Report("\n".join(sections), summary, figures, best)


def _winner(kept: list[str], better: list[aggregate.Improvement]) -> str | None:
    """The variant whose P(improvement) interval lies above 1/2 against every other."""
    for v in kept:
        against = [b for b in better if v in (b.a, b.b)]
        lows = [b.low if b.a == v else 1 - b.high for b in against]
        if against and all(low > 0.5 for low in lows):
            return v
    return None


def _verdict(
    record: SuiteRecord,
    kept: list[str],
    summaries: list[aggregate.Aggregate],
    better: list[aggregate.Improvement],
    best: str | None,
    confidence: float,
    missing: list[str],
    won: dict[str, str | None],
) -> str:
    """The suite's result in a few plain sentences."""
    n = len(record.tasks)
    tasks = f"{n} tasks ({', '.join(record.tasks)})"
    lines = []
    if missing:
        lines.append(f"No finished study of {', '.join(missing)}: the aggregate leaves it out.")
    if not record.tasks:
        return " ".join([*lines, "No task's study has finished: there is nothing to compare."])
    if len(kept) < 2:
        return " ".join([*lines, f"Fewer than two variants have scores on all {tasks}."])
    ordered = sorted(summaries, key=lambda s: -s.iqm)
    scores = " against ".join(f"{s.variant} {_fmt(s.iqm)}" for s in ordered)
    level = f"{confidence:.1%}"
    if best is None:
        lines.append(
            f"No variant is better than every other across the {tasks}: no P(improvement) "
            f"interval ({level}) lies above 0.5 for one variant against all the others."
        )
    else:
        against = []
        for b in better:
            if best in (b.a, b.b):
                other = b.b if b.a == best else b.a
                p, low, high = (
                    (b.probability, b.low, b.high)
                    if b.a == best
                    else (1 - b.probability, 1 - b.high, 1 - b.low)
                )
                ahead = b.tasks_ahead if b.a == best else b.tasks - b.tasks_ahead
                against.append(
                    f"P({best} better than {other}) {_fmt(p, 2)} [{_fmt(low, 2)}, "
                    f"{_fmt(high, 2)}], ahead on {ahead} of {b.tasks} tasks"
                )
        lines.append(f"{best} beats every other variant across the {tasks}: {'; '.join(against)}.")
    lines.append(f"IQM of the normalised test scores (0 baseline, 1 ideal): {scores}.")
    words = [f"{w} on {label}" if w else f"none on {label}" for label, w in won.items()]
    lines.append("Each task's own verdict: " + ", ".join(words) + ".")
    return " ".join(lines)


def _per_task(record: SuiteRecord, decisions: dict[str, Decision]) -> str:
    """One row per task: its metric, baseline, each variant's mean test score, its winner."""
    variants = record.variants
    head = ["task", "metric", "baseline", *variants, "winner"]
    lines = [_row(head), "|---" * len(head) + "|"]
    for label, task in record.tasks.items():
        decided = decisions[label]
        means = {s.variant: f"{_fmt(s.mean)} (n={s.n})" for s in decided.summaries}
        cells = [label, task.metric, _fmt(task.baseline)]
        cells += [means.get(v, "left out") for v in variants]
        cells += [decided.winner or "none"]
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def _aggregate_table(summaries: list[aggregate.Aggregate], ranked: aggregate.Ranking | None) -> str:
    if not summaries:
        return ""
    head = ["variant", "runs", "IQM normalised [95% CI]", "mean normalised", "mean rank"]
    lines = [_row(head), "|---" * len(head) + "|"]
    for s in sorted(summaries, key=lambda s: -s.iqm):
        rank = _fmt(ranked.mean_rank[s.variant], 2) if ranked else "n/a"
        interval = f"{_fmt(s.iqm)} [{_fmt(s.low)}, {_fmt(s.high)}]"
        lines.append(_row([s.variant, str(s.runs), interval, _fmt(s.mean), rank]))
    return "\n".join(lines) + "\n"


def _pairwise(better: list[aggregate.Improvement], confidence: float) -> str:
    if not better:
        return ""
    head = ["A", "B", f"P(A better than B) [{confidence:.1%} CI]", "tasks A ahead"]
    lines = [_row(head), "|---" * len(head) + "|"]
    for b in better:
        interval = f"{_fmt(b.probability, 3)} [{_fmt(b.low, 3)}, {_fmt(b.high, 3)}]"
        lines.append(_row([b.a, b.b, interval, f"{b.tasks_ahead} of {b.tasks}"]))
    return "\n".join(lines) + "\n"


def _ranks(ranked: aggregate.Ranking | None, alpha: float) -> str:
    if ranked is None:
        return ""
    if ranked.friedman_p is None:
        return (
            f"Average ranks over {ranked.tasks} tasks are in the table; with fewer than "
            f"{aggregate.MIN_TASKS_TO_RANK} tasks no rank test (Friedman, then Nemenyi, as "
            "Demšar 2006) has the power to say anything, so none is run.\n"
        )
    if ranked.friedman_p >= alpha:
        return (
            f"Average ranks over {ranked.tasks} tasks do not differ significantly (Friedman's "
            f"test, p = {ranked.friedman_p:.3g}).\n"
        )
    pairs = ", ".join(f"{a} and {b}" for a, b in ranked.different) or "no pair"
    apart = _fmt(ranked.critical_difference, 2)
    return (
        f"Average ranks over {ranked.tasks} tasks differ (Friedman's test, p = "
        f"{ranked.friedman_p:.3g}); Nemenyi's test separates {pairs} (mean ranks more than "
        f"{apart} apart, Demšar 2006).\n"
    )


def _method(record: SuiteRecord, confidence: float) -> str:
    baselines = "; ".join(
        f"{label}: {task.metric} {_fmt(task.baseline)}, "
        f"{TASKS.get(task.spec['task']['name']).baseline_note}"
        for label, task in record.tasks.items()
    )
    return (
        "Method: each task's test scores are the repeats of the configuration its verdict rests "
        "on, normalised to 0 at the task's baseline and 1 at the metric's ideal "
        f"({baselines}), so that tasks pool. The IQM pools every run of every task; its "
        "interval, and P(improvement)'s (the mean over tasks of each task's share of pairs of "
        "runs in which A scores higher), are stratified bootstrap intervals: each task's runs "
        "resampled on their own (as rliable computes them). A variant beats the others when "
        f"its P(improvement) interval, at {confidence:.1%} (Bonferroni over the pairs), lies "
        "above 0.5 against each.\n"
    )


def _profiles(scored: list[aggregate.TaskScores], kept: list[str]) -> Figure:
    """Performance profiles: the share of runs above each normalised score."""
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    taus = np.asarray(aggregate.PROFILE_TAUS)
    for v in kept:
        ax.plot(taus, aggregate.profile(scored, v, taus), label=v)
    ax.set(
        xlabel="normalised test score τ (0 baseline, 1 ideal)",
        ylabel="share of runs with score > τ",
        title="Performance profiles across the tasks",
        ylim=(0, 1.02),
    )
    if kept:
        ax.legend()
    figure.tight_layout()
    return figure
