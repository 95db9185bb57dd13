"""Seeds in rounds through the real stack (`seeds: {min, max, step}`): the study's one Tuner
hands out a round of repeats, looks at their test scores, and either ends, every pair decided,
or hands out the next round; the report says where it stopped and why. With
`repeats.configs`, each variant's best configurations are repeated and the best validated one
is compared and registered.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, embedded_env

pytestmark = pytest.mark.slow

LOSS = "val/loss"

SPEC: dict[str, Any] = {
    "name": "rounds",
    "task": {"name": "adding", "options": {"length": 6, "n_train": 128, "n_val": 32, "n_test": 32}},
    "variants": {
        "rnn": {"cell": "tanh", "hidden_size": 4},
        "gru": {"cell": "gru", "hidden_size": 4},
    },
    "search": {"space": {"lr": {"choice": [0.01]}}, "trials_per_variant": 1},
    "fixed": {"batch_size": 32, "max_epochs": 1},
    # 2 seeds each can never decide a rank test (its smallest p is 1/3), so without an
    # equivalence region the study must go on to 4
    "seeds": {"min": 2, "max": 4, "step": 2},
}


def _study(tmp_path: Path, **changes: Any) -> tuple[str, dict[str, list[int]], str, list]:
    """Run the spec, changed by `changes`, with no servers: what it printed, each variant's
    repeats' seeds, its report, and its runs."""
    spec = tmp_path / "rounds.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, **changes}))
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", str(spec)],
        cwd=ROOT,
        env=embedded_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rounds")
    runs = client.search_runs([experiment.experiment_id])
    repeats = [r for r in runs if r.data.tags.get("kind") == "repeat"]
    assert all(r.info.status == "FINISHED" for r in repeats)
    seeds = {
        v: sorted(int(r.data.tags["seed"]) for r in repeats if r.data.tags["variant"] == v)
        for v in SPEC["variants"]
    }
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    report = Path(client.download_artifacts(parent.info.run_id, "report.md")).read_text()
    return result.stdout, seeds, report, runs


def test_a_study_adds_a_round_of_seeds_when_the_first_cannot_decide(tmp_path: Path) -> None:
    out, seeds, report, _ = _study(tmp_path)
    assert seeds == {"rnn": [1, 2, 3, 4], "gru": [1, 2, 3, 4]}
    assert "[gru repeats] trial 3/2-4 started" in out
    assert "the study stopped at 4: the most the spec allows" in report
    # 2 against 2 can never reach 0.05: the look at 4 is the only one alpha is split over
    assert "Each look tests at alpha 0.05 / 1 = 0.05" in report


def test_a_study_stops_after_the_first_round_once_every_pair_is_decided(tmp_path: Path) -> None:
    """Every difference inside 100 counts as none: equivalence is shown at the first look.
    Each variant's two best configurations are repeated (`repeats.configs`), and the one whose
    repeats validate best is the one compared and registered."""
    # a grid: two different configurations, each once (a random choice may draw one twice)
    space = {"lr": {"choice": [0.01, 0.03]}}
    search = {"algorithm": "grid", "space": space, "trials_per_variant": 2}
    _, seeds, report, runs = _study(
        tmp_path, compare={"min_effect": 100.0}, search=search, repeats={"configs": 2}
    )
    assert seeds == {"rnn": [1, 1, 2, 2], "gru": [1, 1, 2, 2]}  # each seed, each configuration
    assert "the study stopped at 2: every pair of variants was decided there" in report
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    section = report.split("### Configurations repeated")[1].split("###")[0]
    for variant in SPEC["variants"]:
        mine = [r for r in runs if r.data.tags.get("variant") == variant]
        repeats = [r for r in mine if r.data.tags["kind"] == "repeat"]
        val = {
            r.info.run_id: min(m.value for m in client.get_metric_history(r.info.run_id, LOSS))
            for r in repeats
        }
        means = {
            trial: sum(val[r.info.run_id] for r in repeats if r.data.tags["of_trial"] == trial) / 2
            for trial in {r.data.tags["of_trial"] for r in repeats}
        }
        assert len(means) == 2  # both of its trials, each under both seeds
        resting = min(means, key=lambda t: means[t])
        assert f"| {variant} | {resting} |" in section
        rows = [line for line in section.splitlines() if line.startswith(f"| {variant} |")]
        assert [row.endswith("| yes |") for row in rows].count(True) == 1
        assert next(r for r in rows if r.endswith("| yes |")).startswith(f"| {variant} | {resting}")
        version = client.get_model_version_by_alias(f"rounds-{variant}", "champion")
        (champion,) = [r for r in mine if r.info.run_id == version.run_id]
        assert champion.data.tags["trial_id"] == resting  # the configuration the verdict rests on
