"""No barrier between the phases: a variant's seeded repeats start, and its champion is
registered, as soon as its own search is over, while a slower variant still searches; and a study
killed at that moment resumes.

The spec's two variants differ a lot in cost: a tanh RNN of 4 units and a 2-layer LSTM of 256.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import embedded_env
from tests.integration.test_resume import SEEDS, SPEC, Driver

pytestmark = pytest.mark.slow


OVERLAP, TRIALS = "overlapping", 3
OVERLAP_SPEC = {
    **SPEC,
    "name": OVERLAP,
    "search": {**SPEC["search"], "trials_per_variant": TRIALS},
    "task": {"name": "adding", "options": {"length": 30, "n_train": 2048, "n_val": 64}},
    # A fast variant and a slow one: the fast one's repeats start while the slow one searches.
    "variants": {
        "rnn": {"cell": "tanh", "hidden_size": 4},
        "lstm": {"cell": "lstm", "hidden_size": 256, "num_layers": 2},
    },
    "fixed": {"batch_size": 64, "max_epochs": 3},
}


def _runs(client: MlflowClient, study: str, **tags: str) -> list:
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return []
    clauses = ["tags.mlflow.parentRunId != ''"] + [f"tags.{k} = '{v}'" for k, v in tags.items()]
    return client.search_runs([experiment.experiment_id], " and ".join(clauses))


def test_a_fast_variant_repeats_and_registers_while_a_slow_one_still_searches(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    spec = tmp_path / f"{OVERLAP}.yaml"
    spec.write_text(yaml.safe_dump(OVERLAP_SPEC))
    driver = Driver(embedded_env(home), "run", str(spec))  # this environment only, as a user's
    try:
        assert driver.finish() == 0, driver.output()[-4000:]
        assert "overlapping in that time: search " in driver.output()
    finally:
        driver.stop()
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")

    def span(kind: str, variant: str) -> tuple[int, int]:
        runs = _runs(client, OVERLAP, kind=kind, variant=variant)
        assert len(runs) == (TRIALS if kind == "trial" else SEEDS), (kind, variant)
        return min(r.info.start_time for r in runs), max(r.info.end_time for r in runs)

    slow_search_ended = span("trial", "lstm")[1]
    fast_search, fast_repeats = span("trial", "rnn"), span("repeat", "rnn")
    assert fast_search[1] <= fast_repeats[0] < slow_search_ended
    (champion,) = client.search_model_versions(f"name = '{OVERLAP}-rnn'")
    assert champion.creation_timestamp < slow_search_ended
    assert span("trial", "lstm")[1] <= span("repeat", "lstm")[0]  # its own search first
    assert client.get_model_version_by_alias(f"{OVERLAP}-lstm", "champion")


def test_a_study_killed_while_one_variant_repeats_and_another_searches_resumes(
    tmp_path: Path,
) -> None:
    """The driver is killed once a repeat of the fast variant has started while a search trial
    of the slow one still runs: a moment no barrier between the phases would allow (the wait
    times out). Resumed, the study completes with one run per trial and per repeat."""
    home = tmp_path / "home"
    spec = tmp_path / f"{OVERLAP}.yaml"
    spec.write_text(yaml.safe_dump(OVERLAP_SPEC))
    env = embedded_env(home)
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = lambda: client.get_experiment_by_name(OVERLAP)  # noqa: E731

    def runs(**tags: str) -> list:
        return _runs(client, OVERLAP, **tags)

    def overlapping() -> bool:
        searching = [r for r in runs(kind="trial", variant="lstm") if r.info.status == "RUNNING"]
        return bool(searching) and bool(runs(kind="repeat", variant="rnn"))

    drivers: list[Driver] = []
    try:
        first = Driver(env, "run", str(spec))
        drivers.append(first)
        first.wait_for(overlapping)
        first.kill()
        (parent,) = client.search_runs([experiment().experiment_id], "tags.kind = 'study'")
        assert parent.info.status == "RUNNING"  # nobody could end it
        resumed = Driver(env, "resume", OVERLAP)
        drivers.append(resumed)
        assert resumed.finish() == 0, resumed.output()[-4000:]
    finally:
        for driver in drivers:
            driver.stop()

    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert not [r for r in runs() if r.info.status != "FINISHED"]
    for variant in OVERLAP_SPEC["variants"]:
        trials = runs(kind="trial", variant=variant)
        assert len({r.data.tags["trial_id"] for r in trials}) == len(trials) == TRIALS
        repeats = runs(kind="repeat", variant=variant)
        assert sorted(int(r.data.tags["seed"]) for r in repeats) == [1, 2]
        assert all(r.data.metrics["test/mse"] >= 0 for r in repeats)
        versions = client.search_model_versions(f"name = '{OVERLAP}-{variant}'")
        assert len(versions) == 1, "each champion is registered once"
    for run in runs():
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
        assert sorted(steps) == [0, 1, 2], f"run {run.info.run_id}: each epoch once"
