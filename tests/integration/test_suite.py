"""A suite through the real stack (a local Ray, Prefect flow runs, an MLflow SQLite store), as a
user runs one: interrupted by Ctrl-C once its first task's study has finished, then resumed.

Afterwards MLflow holds one suite run with the report across the tasks, one study run per task
below it, and each study's trials and repeats below that; the task that had finished ran no
trial again; `seqlab report` rebuilds the suite's report from MLflow alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, SEQLAB, Driver, embedded_env
from tests.tiny import SIZES

pytestmark = pytest.mark.slow

SUITE, VARIANTS, TRIALS, SEEDS = "cells", ("rnn", "lstm"), 2, 2
SPEC = {
    "name": SUITE,
    "description": "two cells on two tasks",
    "tasks": [
        {"name": "adding", "options": {"length": 8, **SIZES}},
        {"name": "sunspots", "options": {"window": 8}},
    ],
    "variants": {
        "rnn": {"cell": "tanh", "hidden_size": 8},
        "lstm": {"cell": "lstm", "hidden_size": 8},
    },
    "search": {
        "space": {"lr": {"loguniform": [0.003, 0.01]}},
        "trials_per_variant": TRIALS,
        "scheduler": {"name": "fifo"},
    },
    "fixed": {"batch_size": 16, "max_epochs": 2},
    "seeds": SEEDS,
}
LABELS = ["adding", "sunspots"]


def _runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name(SUITE)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], max_results=1000)


def _study(client: MlflowClient, label: str) -> list:
    return [r for r in _runs(client) if r.data.tags.get("suite.task") == label]


def test_a_suite_interrupted_after_its_first_task_resumes_and_reports(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = tmp_path / "suite.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    env = embedded_env(home)
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    drivers: list[Driver] = []
    try:
        first = Driver(env, "run", str(spec))
        drivers.append(first)
        first.wait_for(lambda: [r.info.status for r in _study(client, "adding")] == ["FINISHED"])
        assert first.interrupt() == 130, first.output()[-4000:]
        assert "seqlab resume cells" in first.output()
        assert "suite cells: task 1/2, adding: study cells.adding" in first.output()
        (top,) = [r for r in _runs(client) if r.data.tags.get("kind") == "suite"]
        assert top.info.status == "KILLED", first.output()[-6000:]
        assert not [r for r in _runs(client) if r.info.status == "RUNNING"]
        adding = _study(client, "adding")[0].info.run_id
        before = {
            r.info.run_id: r.info.end_time
            for r in _runs(client)
            if r.data.tags.get("mlflow.parentRunId") == adding
        }

        second = Driver(env, "resume", SUITE)
        drivers.append(second)
        assert second.finish() == 0, second.output()[-4000:]
        printed = second.output()
    finally:
        for driver in drivers:
            driver.stop()

    assert f"resuming parent run {top.info.run_id}" in printed
    assert "suite cells: task 1/2, adding: finished in an earlier run" in printed
    assert "## cells: " in printed and "| adding |" in printed  # the suite's table, at the end
    runs = _runs(client)
    assert client.get_run(top.info.run_id).info.status == "FINISHED"
    assert not [(r.info.run_name, r.info.status) for r in runs if r.info.status != "FINISHED"]
    for label in LABELS:
        (study,) = _study(client, label)  # one study per task, resumed in place if it began
        assert study.data.tags["mlflow.parentRunId"] == top.info.run_id
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study.info.run_id]
        kinds = sorted(r.data.tags["kind"] for r in children)
        assert kinds == ["repeat"] * SEEDS * len(VARIANTS) + ["trial"] * TRIALS * len(VARIANTS)
        for variant in VARIANTS:
            assert client.get_model_version_by_alias(f"{SUITE}.{label}-{variant}", "champion")
    after = {
        r.info.run_id: r.info.end_time
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == adding
    }
    assert after == before, "the finished task trained nothing again"
    report = Path(client.download_artifacts(top.info.run_id, "report.md")).read_text()
    assert report.startswith(f"# {SUITE}\n") and "### Across the tasks" in report
    assert "IQM normalised" in report and "P(A better than B)" in report

    out = tmp_path / "report"
    rebuilt = subprocess.run(
        [*SEQLAB, "report", SUITE, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert (out / "report.md").read_text() == report  # from MLflow alone, the same report
    assert (out / "plots" / "performance_profiles.png").is_file()
    task = subprocess.run(
        [*SEQLAB, "report", f"{SUITE}.adding", "--out", str(tmp_path / "task")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert task.returncode == 0, task.stderr[-3000:]  # a task's study, by its own name
    assert (tmp_path / "task" / "report.md").read_text().startswith(f"# {SUITE}.adding\n")


def _run(env: dict[str, str], spec: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SEQLAB, "run", str(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bad_data_in_a_suite_is_one_line_before_or_after_the_other_tasks(tmp_path: Path) -> None:
    """A user's file that does not parse is refused before anything starts; one that only the
    generator can refuse (too short to split) fails its task's study, the other tasks finish,
    the suite's report covers them, and the error is one line naming the field."""
    home = tmp_path / "home"
    env = embedded_env(home)
    tasks = [{"name": "adding", "options": {"length": 6, **SIZES}}]

    def suite(csv: str, text: str) -> Path:
        data = tmp_path / csv
        data.write_text(text)
        raw = {
            **SPEC,
            "name": "mine",
            "seeds": 1,
            "search": {**SPEC["search"], "trials_per_variant": 1},
        }
        raw["tasks"] = [*tasks, {"name": "series_csv", "options": {"path": str(data), "window": 4}}]
        path = tmp_path / f"{csv}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    unreadable = _run(env, suite("bad.csv", "a,b\n1,x\n"))
    assert unreadable.returncode == 2, unreadable.stderr[-2000:]
    assert unreadable.stderr.splitlines() == [
        f"seqlab: error: {tmp_path / 'bad.csv'}: tasks.1.options.path: row 2, column 'b': "
        "'x' is not a number"
    ]
    assert not home.exists()  # nothing started, nothing written

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")

    short = _run(env, suite("short.csv", "a\n1\n2\n3\n"))
    assert short.returncode == 2, short.stderr[-2000:]
    (line,) = [x for x in short.stderr.splitlines() if x.startswith("seqlab: error:")]
    assert line.startswith(
        f"seqlab: error: {tmp_path / 'short.csv.yaml'}: tasks.1.options.window: "
    )
    assert "Traceback" not in short.stderr + short.stdout
    assert "suite mine: task series_csv failed: " in short.stdout
    runs = _runs_of(client, "mine")
    (top,) = [r for r in runs if r.data.tags["kind"] == "suite"]
    assert top.info.status == "FAILED"
    (study,) = [r for r in runs if r.data.tags["kind"] == "study"]  # its data never prepared
    assert (study.data.tags["suite.task"], study.info.status) == ("adding", "FINISHED")
    report = Path(client.download_artifacts(top.info.run_id, "report.md")).read_text()
    assert "No finished study of series_csv" in report


def _runs_of(client: MlflowClient, name: str) -> list:
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], max_results=1000)
