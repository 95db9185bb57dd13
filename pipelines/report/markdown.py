"""The study report, built from what MLflow holds and nothing else.

`run_study` publishes it at the end of a run, and `seqlab report STUDY` rebuilds it for any past
study with no retraining: both call `collect` then `build`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from pipelines.ops import settings
from pipelines.report import budget, plots, stats
from pipelines.report.records import RunRecord, StudyRecord, collect, latest_parent
from pipelines.report.stats import metric_mode
from pipelines.spec.schema import AdaptiveSeeds
from pipelines.trial.phase import resting_config
from seqmodels.tasks import TASKS
from seqmodels.tasks.metrics import metric_range

# `mean / baseline` only where the baseline is at least this far from 0. The baselines are
# trivial predictors' errors, from 1.0 (PER) down to about 0.02 (copy memory at T=1000); one
# below 1e-3 means the trivial predictor is already almost perfect, and a ratio to it
# magnifies noise (0.0005 / 0.0001 = 5).
RATIO_MIN_BASELINE = 1e-3


def rebuild(client: MlflowClient, study: str, run_id: str | None = None) -> tuple[str, Report]:
    """The report of a study's parent run (default: its newest finished one), from MLflow alone;
    of a suite's, when the run is one.

    Returns the parent run id and the report. Raises LookupError when the study has no finished
    run, and MlflowException when `run_id` names no run.
    """
    parent = run_id or latest_parent(client, study)
    if parent is None:
        raise LookupError(f"study: no finished run of {study!r} in {settings.tracking_uri()}")
    if client.get_run(parent).data.tags.get("kind") == "suite":
        from pipelines.report import suite  # it builds on this module

        return parent, suite.build_suite(suite.collect_suite(client, parent))
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
    left_out = record.left_out
    decided = decide(record)
    scores, summaries, comparisons = decided.scores, decided.summaries, decided.comparisons
    best, tested_at, min_effect = decided.winner, decided.tested_at, decided.min_effect
    alpha, looks = decided.alpha, seed_looks(record.spec)
    found = budget.curves(
        {v: [r.best_val for r in _usable(record.of("trial", v))] for v in scores},
        record.spec["search"]["trials_per_variant"],
        "min",  # the search minimises val/loss
    )
    table = _comparison_table(record, summaries, mode) if summaries else ""
    pairwise = _pairwise_table(comparisons, mode)
    verdict = _verdict(
        best, summaries, comparisons, scores, mode, metric, list(left_out), tested_at
    )
    plain = _in_plain_words(record, summaries, mode, found)
    gone = _left_out(record)
    configurations = _configurations(record, metric)
    figures = {
        "learning_curves.png": plots.learning_curves(record),
        "final_metric.png": plots.final_metric(record, scores),
        "search_best_so_far.png": plots.best_so_far(record),
        "budget_curves.png": plots.budget_curves(found),
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
        plain,
        "",
        table,
        configurations,
        pairwise,
        _method(tested_at, min_effect) + _rounds(looks, alpha, summaries),
        gone,
        _budget(record),
        _budget_curves(found, record.spec["search"]["trials_per_variant"]),
        _reproduce(record),
        "## Figures",
        "",
        ", ".join(f"`plots/{name}`" for name in figures),
        "",
    ]
    head = [f"## {record.study}: {verdict}", "", plain, "", table, configurations, pairwise, gone]
    summary = "\n".join(head)
    return Report("\n".join(sections), summary, figures, best)


@dataclass(frozen=True)
class Decision:
    """A study's verdict: each variant's scores (the repeats of the configuration it rests
    on), their summaries, the pairs' comparisons, and the winner, if any."""

    scores: dict[str, list[float]]
    summaries: list[stats.Summary]
    comparisons: list[stats.Comparison]
    winner: str | None
    alpha: float  # the study's
    tested_at: float  # what each look tests at: alpha, or its share with seeds in rounds
    min_effect: float | None


def decide(record: StudyRecord) -> Decision:
    """The verdict of a study, from its records: every variant not left out."""
    metric, mode = record.metric, metric_mode(record.metric)
    key = f"test/{metric}"
    scores = {
        v: [r.metrics[key] for r in _resting(record, v) if key in r.metrics]
        for v in record.variants
        if v not in record.left_out
    }
    rule = record.spec.get("compare", {})  # a study recorded before the section existed: none
    alpha, min_effect = rule.get("alpha", stats.ALPHA), rule.get("min_effect")
    # seeds in rounds: each look's share of alpha (`stats.Sequential`)
    tested_at = stats.Sequential(seed_looks(record.spec), alpha).alpha_per_look
    bounds = metric_range(metric).bounds
    summaries = [stats.summarize(v, s, bounds=bounds) for v, s in scores.items()]
    comparisons = stats.compare(scores, tested_at, mode, min_effect)
    best = stats.winner(summaries, comparisons, mode)
    return Decision(scores, summaries, comparisons, best, alpha, tested_at, min_effect)


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
    comparisons: list[stats.Comparison],
    scores: dict[str, list[float]],
    mode: str,
    metric: str,
    left_out: list[str] | None = None,
    alpha: float = stats.ALPHA,
) -> str:
    """The verdict in one sentence or two: the winner and by how much, too few seeds to tell,
    or no difference and the smallest one the study could have found."""
    gone = f" Left out of the comparison: {', '.join(left_out)} (see below)." if left_out else ""
    if not summaries:
        return "**No result:** every variant failed or diverged (see below)."
    if len(summaries) == 1 and left_out:
        return f"No winner declared: only {summaries[0].variant} is left to compare." + gone
    if any(s.n < 2 for s in summaries):
        return (
            "No winner declared: a comparison needs at least two seeded repeats per variant." + gone
        )
    better = "lower" if mode == "min" else "higher"
    leader = (min if mode == "min" else max)(summaries, key=lambda s: s.mean).variant
    mine = [_oriented(c, leader) for c in comparisons if leader in (c.a, c.b)]
    odds = ", ".join(
        f"P({leader} better than {other}) {p:.2f} [{low:.2f}, {high:.2f}]"
        for other, p, low, high, _ in mine
    )
    if best is not None:
        return (
            f"**Winner: {best}.** Its test {metric} is {better} than every other variant's: "
            f"{odds} (Mann-Whitney, Holm-corrected, alpha {alpha:g})." + gone
        )
    undecidable = [c for c in comparisons if leader in (c.a, c.b) and not c.decidable]
    if undecidable:
        n = min(s.n for s in summaries)
        floor = stats.smallest_p(n, n)
        return (
            f"**Too few seeds to decide.** With {n} seeded repeats per variant no rank test can "
            f"reach p < {alpha:g} (its smallest p is {floor:.2g}); run at least "
            f"{stats.seeds_to_decide(alpha / max(len(comparisons), 1))} seeds per variant. "
            f"As they stand: {odds}." + gone
        )
    beaten = [(other, p, low, high) for other, p, low, high, c in mine if c.significant]
    if beaten:
        wins = ", ".join(
            f"{other} (P({leader} better) {p:.2f} [{low:.2f}, {high:.2f}])"
            for other, p, low, high in beaten
        )
        lines = [f"**No winner.** {leader}, best on average, beats {wins}, but not every other."]
    else:
        lines = [f"**No significant difference** between {leader} and every other variant."]
    pairs = len(comparisons)
    for other, _, _, _, c in mine:
        if c.significant:
            continue
        a, b = np.asarray(scores[leader]), np.asarray(scores[other])
        mde = stats.minimum_detectable_effect(a, b, alpha / pairs)
        lines.append(
            f"Against {other}: with {len(a)} and {len(b)} seeds and the spread observed, the "
            f"study could have detected a difference in test {metric} of {_fmt(mde, 3)} or more "
            f"(80% power, alpha {alpha / pairs:.3g}); the observed difference is "
            f"{abs(c.difference):.3g}, P({leader} better) {c.p_improvement:.2f}."
        )
    return " ".join(lines) + gone


Oriented = tuple[str, float, float, float, stats.Comparison]


def _oriented(c: stats.Comparison, leader: str) -> Oriented:
    """A comparison seen from `leader`: the other variant, and P(leader better) with its
    interval."""
    if c.a == leader:
        return c.b, c.p_improvement, c.p_improvement_low, c.p_improvement_high, c
    return c.a, 1 - c.p_improvement, 1 - c.p_improvement_high, 1 - c.p_improvement_low, c


def _in_plain_words(
    record: StudyRecord, summaries: list[stats.Summary], mode: str, found: list[budget.Curve]
) -> str:
    """The study in a few plain sentences: each variant's score, what varied between repeats,
    whether the ranking depends on the search budget, and any search result that was luck."""
    if not summaries:
        return ""
    ordered = sorted(summaries, key=lambda s: s.mean if mode == "min" else -s.mean)
    counts = sorted({s.n for s in summaries})
    seeds = (
        f"{counts[0]} seeds each"
        if len(counts) == 1
        else "seeds: " + ", ".join(f"{s.variant} {s.n}" for s in ordered)
    )
    scores = " against ".join(f"{s.variant} {_fmt(s.mean)}" for s in ordered)
    lines = [
        f"Test {record.metric}, mean over the seeded repeats: {scores} ({seeds}; "
        f"{_what_varied(record)})."
    ]
    stable = budget.stable_from([c for c in found if c.trials], "min")
    budget_size = len(found[0].mean) if found else 0
    if stable is not None and budget_size > 1:
        lines.append(
            "By their expected best search score the variants rank the same at every search "
            f"budget from {_trials(stable)} to the {budget_size} each ran."
            if stable < budget_size
            else "Their ranking by expected best search score still changes at the full budget "
            f"of {budget_size} trials: a larger search could change it."
        )
    lines += _lucky(record, ordered)
    return " ".join(lines)


# What a repeat's seed drew afresh, in words (`trial.phase.varied`, tagged `varied`).
VARIED_WORDS = {"init": "the initial weights", "order": "the order of the training batches"}
DATA_WORDS = {
    "redraw": "the training and validation data (drawn again from the task's generator)",
    "resplit": "the split of the training and validation examples",
    "bootstrap": "the training data (a bootstrap sample of the training split)",
}


def _what_varied(record: StudyRecord) -> str:
    """What varied between the seeded repeats, read from their runs; runs recorded before
    the data could vary (no `varied` tag) varied their weights and their batches' order."""
    tagged = {run.tags.get("varied", "init,order") for run in record.of("repeat")}
    sources = {source for tag in tagged for source in tag.split(",")} - {""} or {"init", "order"}
    words = [VARIED_WORDS[s] for s in VARIED_WORDS if s in sources]
    if "data" in sources:
        words.append(DATA_WORDS[TASKS.get(record.spec["task"]["name"]).resample])
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    held = "the test set did not" if "data" in sources else "the data did not"
    return f"{listed} varied between repeats, {held}"


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def _lucky(record: StudyRecord, summaries: list[stats.Summary]) -> list[str]:
    """A sentence for each variant whose search score is better than the interval of its
    repeats' own best validation losses: the configuration's search result depended on its
    seed (the search picked it for a score its seed gave it)."""
    said = []
    for s in summaries:
        chosen = _chosen_trial(record, s.variant)
        repeats = [r.best_val for r in record.of("repeat", s.variant)]
        repeats = [v for v in repeats if math.isfinite(v)]
        if chosen is None or len(repeats) < 2:
            continue
        low, _ = stats.bootstrap_interval(np.asarray(repeats))
        if chosen.best_val >= low:  # no better than its repeats: no luck to speak of
            continue
        said.append(
            f"{s.variant}'s best search trial reached val/loss {chosen.best_val:.4g}, but its "
            f"{len(repeats)} repeats of that configuration reached {np.mean(repeats):.4g} on "
            f"average (95% interval from {low:.4g}): that search result depended on its seed."
        )
    return said


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
    head = ["variant", "repeats", f"test {metric} mean ± sd", "95% CI", "IQM [95% CI]"]
    head += [f"baseline {metric}"]
    head += ["mean / baseline"] if ratio else []
    head += ["best val/loss (search)", *searched]
    lines = [_row(head), "|---" * len(head) + "|"]
    ordered = sorted(summaries, key=lambda s: s.mean if mode == "min" else -s.mean)
    for s in ordered:
        best_trial = _chosen_trial(record, s.variant)
        config = [best_trial.params.get(k, "") if best_trial else "" for k in searched]
        cells = [s.variant, str(s.n), f"{_fmt(s.mean)} ± {_fmt(s.std)}"]
        cells += [f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]"]
        cells += [f"{_fmt(s.iqm)} [{_fmt(s.iqm_low)}, {_fmt(s.iqm_high)}]", _fmt(baseline)]
        cells += [_fmt(s.mean / baseline, 3)] if ratio else []
        cells += [_fmt(best_trial.best_val) if best_trial else "n/a"]
        cells += [_short(c) for c in config]
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _usable(trials: list[RunRecord]) -> list[RunRecord]:
    """The search trials that neither failed nor diverged, with a finite val/loss."""
    return [
        r
        for r in trials
        if r.status != "FAILED" and "diverged" not in r.tags and math.isfinite(r.best_val)
    ]


def _configurations(record: StudyRecord, metric: str) -> str:
    """For a study that repeated several configurations of each variant (`repeats.configs`),
    each one: its search score, its repeats' validation and test means, and which one the
    verdict rests on. Nothing otherwise."""
    key = f"test/{metric}"
    rows = []
    for variant in record.variants:
        repeats = record.of("repeat", variant)
        named = list(dict.fromkeys(r.tags.get("of_trial", "") for r in repeats))
        if len(named) < 2:
            continue
        resting = {r.tags.get("of_trial") for r in _resting(record, variant)}
        searched = {r.tags.get("trial_id"): r for r in record.of("trial", variant)}
        for trial in named:
            mine = [r for r in repeats if r.tags.get("of_trial", "") == trial]
            val = np.nanmean([r.best_val for r in mine])
            test = np.nanmean([r.metrics.get(key, math.nan) for r in mine])
            search = searched[trial].best_val if trial in searched else math.nan
            rows.append(
                f"| {variant} | {trial} | {_fmt(search)} | {len(mine)} | {_fmt(float(val))} "
                f"| {_fmt(float(test))} | {'yes' if trial in resting else ''} |"
            )
    if not rows:
        return ""
    return "\n".join(
        [
            "### Configurations repeated",
            "",
            "Each variant's best search configurations were repeated (`repeats.configs`); the "
            "verdict rests on the one whose repeats validate best (the lowest mean val/loss), "
            "so that a configuration that won the search by its seed's luck carries no verdict, "
            "and the test scores play no part in the choice.",
            "",
            f"| variant | search trial | best val/loss (search) | repeats | mean val/loss "
            f"(repeats) | mean test {metric} | verdict rests on it |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def _resting(record: StudyRecord, variant: str) -> list[RunRecord]:
    """The variant's repeats the verdict compares: those of the configuration whose repeats
    validate best (`phase.resting_config`), when the study repeated more than one
    (`repeats.configs`); all of them otherwise."""
    repeats = record.of("repeat", variant)
    resting = resting_config((r.tags.get("of_trial", ""), r.best_val) for r in repeats)
    return [r for r in repeats if r.tags.get("of_trial", "") == resting]


def _chosen_trial(record: StudyRecord, variant: str) -> RunRecord | None:
    """The search trial whose configuration the verdict on the variant rests on: the one its
    compared repeats name (`of_trial`); for a study recorded before they named it, the one the
    flow chose, the lowest finite val/loss among the trials that neither failed nor
    diverged."""
    trials = record.of("trial", variant)
    named = {r.tags.get("of_trial") for r in _resting(record, variant)} - {None}
    chosen = [r for r in trials if r.tags.get("trial_id") in named]
    if chosen:
        return chosen[0]
    return min(_usable(trials), key=lambda r: r.best_val, default=None)


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() else f"{number:.3g}"


def _pairwise_table(comparisons: list[stats.Comparison], mode: str) -> str:
    if not comparisons:
        return ""
    lines = [
        "### Pairwise",
        "",
        "| a vs b | mean(a) - mean(b) | P(a better) [95% CI] | Mann-Whitney p (Holm) "
        "| Welch p | Cohen's d | Cliff's delta | significant |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        decided = "yes" if c.significant else "no" if c.decidable else "too few seeds"
        lines.append(
            f"| {c.a} vs {c.b} | {c.difference:+.4f} | {c.p_improvement:.2f} "
            f"[{c.p_improvement_low:.2f}, {c.p_improvement_high:.2f}] | {c.rank_p_holm:.3g} "
            f"| {c.welch_p:.3g} | {c.cohens_d:.2f} | {c.cliffs_delta:+.2f} | {decided} |"
        )
    return "\n".join(lines) + "\n"


def seed_looks(spec: dict[str, Any]) -> tuple[int, ...]:
    """The seeds per variant at each look a recorded spec planned (`StudySpec.seed_looks`)."""
    seeds = spec.get("seeds", 5)  # a spec recorded before rounds: always a number
    return (seeds,) if isinstance(seeds, int) else AdaptiveSeeds(**seeds).looks


def _looks(k: int) -> str:
    return "one look" if k == 1 else f"{k} looks"


def _rounds(looks: tuple[int, ...], alpha: float, summaries: list[stats.Summary]) -> str:
    """How the seeds were added, for a study that ran them in rounds; else nothing."""
    if len(looks) == 1:
        return ""
    ran = max((s.n for s in summaries), default=0)
    k = stats.Sequential(looks, alpha).deciding_looks
    split = (
        f"a Bonferroni split over the {k} looks planned"
        if k == len(looks)
        else f"a Bonferroni split over the {_looks(k)} of the {len(looks)} planned at which "
        "a rank test can reach that level at all"
    )
    why = (
        "every pair of variants was decided there"
        if ran < looks[-1]
        else "the most the spec allows; not every pair was decided before"
    )
    return (
        f"\nThe seeds ran in rounds, the scores looked at after {', '.join(map(str, looks))} "
        f"seeds per variant; the study stopped at {ran}: {why}. Each look tests at alpha "
        f"{alpha:g} / {k} = {alpha / k:.3g} ({split}), so that looking more than once does "
        f"not raise the chance of a false "
        f"winner above {alpha:g}; the verdict above is at that level.\n"
    )


def _method(alpha: float, min_effect: float | None) -> str:
    """How the verdict was reached, in a paragraph."""
    equivalence = (
        f" A difference in means of at most {min_effect:g} counts as none (`compare.min_effect`)."
        if min_effect is not None
        else ""
    )
    return (
        "### Method\n\n"
        "A variant beats another when a two-sided Mann-Whitney test, its p-value from the "
        "permutation distribution of the statistic (exact for few seeds, right with ties), "
        f'rejects "neither is better" at alpha {alpha:g} after Holm\'s correction over the '
        f"pairs.{equivalence} P(a better) is the share of pairs of repeats in which a scores "
        "better (ties count half), with a stratified bootstrap interval; it describes, the test "
        "decides: at a few seeds that interval is too narrow ([1.00, 1.00] whenever every "
        "repeat of a beats every repeat of b). The means' and IQMs' intervals are "
        f"{stats.INTERVAL_METHOD}, clipped to the range the metric can take. A rank test "
        "needs no assumption about the scores' shape, which is often skewed "
        "(a seed that failed to learn) or pressed against a bound. Welch's t, Cohen's d and "
        "Cliff's delta are shown beside it.\n"
    )


def _repeats(spec: dict[str, Any]) -> str:
    looks = seed_looks(spec)
    return str(looks[0]) if len(looks) == 1 else f"{looks[0]} to {looks[-1]} (in rounds)"


def _configs(spec: dict[str, Any]) -> str:
    k = spec.get("repeats", {}).get("configs", 1)
    return "best configuration" if k == 1 else f"{k} best configurations"


def _budget(record: StudyRecord) -> str:
    search = record.spec["search"]
    max_epochs = record.spec["fixed"]["max_epochs"]
    lines = [
        "## Search budget",
        "",
        f"{search['trials_per_variant']} trials per variant, {search['algorithm']} search, "
        f"{search['scheduler']['name']} scheduler, at most {max_epochs} epochs each; then "
        f"{_repeats(record.spec)} seeded repeats of each variant's {_configs(record.spec)}.",
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


def _budget_curves(found: list[budget.Curve], trials: int) -> str:
    """The table of expected best search scores against the number of trials."""
    found = [c for c in found if c.trials]
    if not found or trials < 2:
        return ""
    shown = sorted({1, 2, *range(4, trials + 1, max(1, trials // 4)), trials})
    lines = [
        "## Expected best against the search budget",
        "",
        "The expected best validation loss of a variant's search after n trials, ± its standard "
        "deviation, from the trials it ran (Dodge et al. 2019).",
        "",
        "| variant | " + " | ".join(f"n = {n}" for n in shown) + " |",
        "|---" * (len(shown) + 1) + "|",
    ]
    for c in found:
        cells = [f"{c.mean[n - 1]:.4g} ± {c.std[n - 1]:.2g}" for n in shown]
        lines.append(f"| {c.variant} | " + " | ".join(cells) + " |")
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
