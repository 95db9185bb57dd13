"""The report's comparison table, built from fabricated MLflow records: no misleading numbers."""

from __future__ import annotations

import dataclasses
import math

from pipelines import report
from pipelines.report import RunRecord, StudyRecord
from pipelines.report.suite import SuiteRecord, build_suite
from pipelines.trial.phase import resting_config


def _record(metric: str, baseline: float, scores: dict[str, list[float]]) -> StudyRecord:
    """A finished study of two variants, two trials each, with `scores` as the repeats' tests."""
    runs = []
    for variant, values in scores.items():
        for i in range(2):
            runs.append(
                RunRecord(
                    run_id=f"{variant}-trial-{i}",
                    variant=variant,
                    kind="trial",
                    seed=0,
                    status="FINISHED",
                    start_time=i,
                    params={"lr": str(0.01 * (i + 1))},
                    metrics={"val/loss": 0.5 - 0.1 * i},
                    history={"train/loss": [0.6, 0.5 - 0.1 * i], "val/loss": [0.6, 0.5 - 0.1 * i]},
                )
            )
        for seed, value in enumerate(values, start=1):
            runs.append(
                RunRecord(
                    run_id=f"{variant}-repeat-{seed}",
                    variant=variant,
                    kind="repeat",
                    seed=seed,
                    status="FINISHED",
                    start_time=10 + seed,
                    params={"lr": "0.02"},
                    metrics={f"test/{metric}": value},
                    history={"train/loss": [0.6, 0.4], "val/loss": [0.6, 0.4]},
                )
            )
    spec = {
        "name": "fabricated",
        "description": "two variants",
        "variants": {v: {"cell": v} for v in scores},
        "search": {
            "space": {"lr": {"loguniform": [0.001, 0.1]}},
            "trials_per_variant": 2,
            "algorithm": "random",
            "scheduler": {"name": "fifo"},
        },
        "fixed": {"max_epochs": 2},
        "seeds": 3,
    }
    tags = {"dataset.metric": metric, "dataset.baseline": str(baseline)}
    return StudyRecord("fabricated", "parent", tags, spec, runs)


def _table(built: report.Report) -> list[dict[str, str]]:
    """The comparison table's rows, each as {column: cell}."""
    lines = built.summary.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant |"))
    head, _, *rows = lines[start : lines.index("", start)]

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip("|").split("|")]

    return [dict(zip(cells(head), cells(row), strict=True)) for row in rows]


def test_interval_of_a_small_mse_does_not_reach_below_zero() -> None:
    built = report.build(
        _record("mse", 0.167, {"lstm": [0.0001, 0.0002, 0.0018], "rnn": [0.16, 0.17, 0.165]})
    )
    rows = {row["variant"]: row for row in _table(built)}
    low, high = (float(x) for x in rows["lstm"]["95% CI"].strip("[]").split(","))
    # a t-interval would start near -0.0016; the bootstrap's stays where the means can be
    assert 0.0 <= low <= 0.0002 and high > 0.0016
    assert "[-" not in built.summary and "[-" not in built.markdown


def test_ratio_to_the_baseline_of_an_error_metric() -> None:
    built = report.build(
        _record("mse", 0.2, {"lstm": [0.01, 0.02, 0.03], "rnn": [0.19, 0.2, 0.21]})
    )
    rows = {row["variant"]: row for row in _table(built)}
    assert rows["lstm"]["mean / baseline"] == "0.100"
    assert rows["rnn"]["mean / baseline"] == "1.000"


def test_no_ratio_for_a_maximised_metric_or_a_baseline_near_zero() -> None:
    exact = report.build(
        _record("exact_match", 0.001, {"lstm": [0.68, 0.69, 0.70], "rnn": [0.1, 0.2, 0.15]})
    )
    assert "mean / baseline" not in exact.summary and "690.000" not in exact.summary
    rows = {row["variant"]: row for row in _table(exact)}
    assert rows["lstm"]["baseline exact_match"] == "0.0010"  # the baseline itself still shows
    assert float(rows["lstm"]["95% CI"].strip("[]").split(",")[1]) <= 1.0
    tiny = report.build(
        _record("mse", 0.0001, {"lstm": [0.0005, 0.0006, 0.0004], "rnn": [0.1, 0.1, 0.2]})
    )
    assert "mean / baseline" not in tiny.summary
    assert len(_table(tiny)) == 2


def test_the_table_shows_the_trial_the_repeats_retrained() -> None:
    """A trial that diverged after a good epoch is not the search's best, as the flow chose."""
    record = _record("mse", 0.2, {"lstm": [0.01, 0.02, 0.03], "rnn": [0.19, 0.2, 0.21]})
    blown = dataclasses.replace(
        record.runs[0],
        run_id="lstm-trial-blown",
        status="FAILED",
        params={"lr": "1000000.0"},
        history={"val/loss": [0.001, float("nan")]},
        tags={"diverged": "val/loss is nan at epoch 2"},
    )
    record.runs.append(blown)
    rows = {row["variant"]: row for row in _table(report.build(record))}
    assert rows["lstm"]["best val/loss (search)"] == "0.4000"
    assert rows["lstm"]["lr"] == "0.02"


def test_a_table_without_a_shared_search_space_has_no_empty_column() -> None:
    record = _record("mse", 0.2, {"lstm": [0.01, 0.02, 0.03], "rnn": [0.19, 0.2, 0.21]})
    record.spec["search"]["space"] = {}
    table = [line for line in report.build(record).summary.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1
    assert "|  |" not in table[0] and table[0].endswith("| best val/loss (search) |")


def test_three_seeds_cannot_decide_and_the_verdict_says_how_many_can() -> None:
    built = report.build(
        _record("mse", 0.2, {"lstm": [0.01, 0.02, 0.03], "rnn": [0.19, 0.2, 0.21]})
    )
    assert built.winner is None
    assert "**Too few seeds to decide.**" in built.summary
    assert "smallest p is 0.1" in built.summary and "at least 4 seeds" in built.summary
    assert "too few seeds |" in built.summary  # the pairwise table's last column


def test_no_difference_says_how_large_a_difference_the_study_could_have_found() -> None:
    scores = {"lstm": [0.10, 0.12, 0.11, 0.13, 0.09], "rnn": [0.11, 0.10, 0.12, 0.14, 0.10]}
    built = report.build(_record("mse", 0.2, scores))
    assert built.winner is None and "**No significant difference**" in built.summary
    assert "could have detected a difference in test mse of" in built.summary
    assert "80% power" in built.summary


def test_a_search_result_better_than_its_repeats_is_named_luck() -> None:
    record = _record("mse", 0.2, {"lstm": [0.01, 0.02, 0.03, 0.02], "rnn": [0.19, 0.2, 0.21, 0.2]})
    lucky = dataclasses.replace(
        record.runs[0], run_id="lstm-trial-lucky", history={"val/loss": [0.3, 0.001]}
    )
    record.runs.append(lucky)
    built = report.build(record)
    assert "lstm's best search trial reached val/loss 0.001" in built.summary
    assert "depended on its seed" in built.summary and "rnn's best search" not in built.summary


def test_the_table_shows_the_trial_the_repeats_name() -> None:
    record = _record("mse", 0.2, {"lstm": [0.01, 0.02, 0.03], "rnn": [0.19, 0.2, 0.21]})
    runs = []
    for run in record.runs:  # lstm's repeats retrained its first trial, not its lowest
        tags = {"trial_id": run.run_id}
        if run.kind == "repeat" and run.variant == "lstm":
            tags["of_trial"] = "lstm-trial-0"
        runs.append(dataclasses.replace(run, tags=tags))
    rows = {
        row["variant"]: row for row in _table(report.build(dataclasses.replace(record, runs=runs)))
    }
    assert rows["lstm"]["best val/loss (search)"] == "0.5000" and rows["lstm"]["lr"] == "0.01"
    assert rows["rnn"]["best val/loss (search)"] == "0.4000"


def test_a_leader_that_beats_some_but_not_all_is_no_winner_and_says_whom_it_beats() -> None:
    scores = {
        "leaky": [0.030, 0.031, 0.032, 0.033, 0.034],
        "lstm": [0.031, 0.0335, 0.036, 0.0305, 0.035],
        "gru": [0.040, 0.041, 0.042, 0.043, 0.044],
    }
    record = _record("mse", 0.1, scores)
    built = report.build(record)
    assert built.winner is None
    assert built.summary.startswith(
        "## fabricated: **No winner.** leaky, best on average, beats gru"
    )
    assert "Against lstm: with 5 and 5 seeds" in built.summary


def test_with_several_configurations_repeated_the_verdict_rests_on_the_best_validated() -> None:
    """lstm's search winner (trial 1) validates worse over its repeats than its runner-up
    (trial 0): the verdict compares trial 0's repeats, though trial 1's test better. The
    choice reads validation only (`resting_config`): a choice by test would bias the verdict."""
    record = _record("mse", 0.2, {"lstm": [], "rnn": [0.19, 0.2, 0.21, 0.22]})
    runs = [dataclasses.replace(r, tags={"trial_id": r.run_id}) for r in record.runs]
    for trial, val, tests in (
        ("lstm-trial-1", 0.30, [0.001, 0.002, 0.003, 0.004]),  # tests best, validates worst
        ("lstm-trial-0", 0.20, [0.05, 0.06, 0.07, 0.08]),
    ):
        for seed, value in enumerate(tests, start=1):
            runs.append(
                RunRecord(
                    run_id=f"{trial}-repeat-{seed}",
                    variant="lstm",
                    kind="repeat",
                    seed=seed,
                    status="FINISHED",
                    start_time=20 + seed,
                    params={"lr": "0.01"},
                    metrics={"test/mse": value},
                    history={"train/loss": [0.6, 0.4], "val/loss": [0.6, val]},
                    tags={"of_trial": trial},
                )
            )
    built = report.build(dataclasses.replace(record, runs=runs))
    rows = {row["variant"]: row for row in _table(built)}
    assert rows["lstm"]["repeats"] == "4" and rows["lstm"]["lr"] == "0.01"
    assert rows["lstm"]["best val/loss (search)"] == "0.5000"  # trial 0's, not the winner's
    assert rows["lstm"]["test mse mean ± sd"].startswith("0.0650")
    section = built.markdown.split("### Configurations repeated")[1].split("###")[0]
    lines = [line for line in section.splitlines() if line.startswith("| lstm")]
    assert lines == [
        "| lstm | lstm-trial-1 | 0.4000 | 4 | 0.3000 | 0.0025 |  |",
        "| lstm | lstm-trial-0 | 0.5000 | 4 | 0.2000 | 0.0650 | yes |",
    ]
    assert "### Configurations repeated" in built.summary


def test_resting_config_reads_validation_only_and_breaks_ties_by_order() -> None:
    assert resting_config([("a", 0.3), ("b", 0.2), ("a", 0.1), ("b", 0.2)]) == "a"  # 0.2 = 0.2
    assert resting_config([("a", math.nan), ("b", 0.5)]) == "b"
    assert resting_config([("a", math.nan)]) is None


def _suite(tasks: dict[str, StudyRecord]) -> SuiteRecord:
    studies = {label: {**r.spec, "task": {"name": "adding"}} for label, r in tasks.items()}
    tasks = {label: dataclasses.replace(r, spec=studies[label]) for label, r in tasks.items()}
    spec = {"name": "suite", "description": "", "studies": studies}
    return SuiteRecord("suite", "suite-run", {"kind": "suite"}, spec, tasks)


def test_a_suite_names_the_variant_better_across_its_tasks() -> None:
    clear = {
        "adding": _record(
            "mse",
            0.17,
            {
                "lstm": [0.010, 0.012, 0.011, 0.013, 0.009, 0.010],
                "rnn": [0.150, 0.160, 0.155, 0.149, 0.158, 0.152],
            },
        ),
        "digits": _record(
            "accuracy",
            0.1,
            {
                "lstm": [0.95, 0.96, 0.94, 0.95, 0.97, 0.96],
                "rnn": [0.50, 0.55, 0.52, 0.48, 0.51, 0.53],
            },
        ),
    }
    built = build_suite(_suite(clear))
    assert built.winner == "lstm"
    verdict = built.summary.splitlines()[0]
    assert "lstm beats every other variant across the 2 tasks (adding, digits)" in verdict
    assert "P(lstm better than rnn) 1.00 [1.00, 1.00], ahead on 2 of 2 tasks" in verdict
    assert "Each task's own verdict: lstm on adding, lstm on digits." in verdict
    assert "performance_profiles.png" in built.figures
    assert "no rank test" in built.markdown  # two tasks: ranks, no Friedman


def test_a_suite_whose_tasks_disagree_has_no_winner_and_leaves_out_a_variant_left_out() -> None:
    mixed = {
        "adding": _record(
            "mse", 0.17, {"lstm": [0.01, 0.02, 0.01, 0.02], "rnn": [0.15] * 4, "gru": [0.05] * 4}
        ),
        "copy": _record(
            "mse", 0.17, {"lstm": [0.15, 0.16, 0.15, 0.16], "rnn": [0.01] * 4, "gru": [0.05] * 4}
        ),
    }
    mixed["copy"] = dataclasses.replace(
        mixed["copy"], tags={**mixed["copy"].tags, "left_out.gru": "every trial diverged"}
    )
    built = build_suite(_suite(mixed))
    assert built.winner is None
    assert "No variant is better than every other across the 2 tasks" in built.summary
    across = built.markdown.split("### Across the tasks")[1]
    assert "| gru |" not in across  # it has no scores on copy: no aggregate
    assert "left out" in built.summary  # its cell in the per-task table


def test_a_suite_of_three_variants_states_the_bonferroni_level_and_an_empty_one_says_so() -> None:
    three = {
        "adding": _record(
            "mse",
            0.17,
            {
                "lstm": [0.01, 0.012, 0.011, 0.013, 0.009, 0.01],
                "gru": [0.05, 0.052, 0.051, 0.053, 0.049, 0.05],
                "rnn": [0.15, 0.16, 0.155, 0.149, 0.158, 0.152],
            },
        ),
        "copy": _record(
            "mse",
            0.17,
            {
                "lstm": [0.02, 0.022, 0.021, 0.023, 0.019, 0.02],
                "gru": [0.06, 0.062, 0.061, 0.063, 0.059, 0.06],
                "rnn": [0.14, 0.15, 0.145, 0.139, 0.148, 0.142],
            },
        ),
    }
    built = build_suite(_suite(three))
    assert built.winner == "lstm"
    assert "[98.3% CI]" in built.summary  # three pairs: each interval at 1 - 0.05 / 3
    empty = dataclasses.replace(_suite(three), tasks={})
    assert "No task's study has finished" in build_suite(empty).summary
