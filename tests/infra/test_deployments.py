"""The Prefect deployments `seqlab serve` offers, their forms, and runs of them without a browser.

The fast tests read the parameter schemas Prefect builds the UI's forms from. The slow ones
serve the deployments to the team stack's Prefect server and run them with
`prefect deployment run`, as a user's script would.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, seqlab


def _schemas(*flow_names: str) -> dict[str, dict]:
    """The JSON schemas of flows' parameters, as the Prefect UI receives them.

    Read in a fresh interpreter, as `seqlab serve` builds them, and in one: the import of
    `pipelines.ops.deployments` (torch, Ray, Lightning, Prefect) is most of the time.
    """
    code = (
        "import json\n"
        "from prefect.utilities.callables import parameter_schema\n"
        "from pipelines.ops import deployments\n"
        f"names = {list(flow_names)!r}\n"
        "print(json.dumps({n: parameter_schema(getattr(deployments, n)).model_dump() "
        "for n in names}))\n"
    )
    out = subprocess.run(
        [str(Path(ROOT, ".venv/bin/python")), "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    return _schemas("study", "prepare_data", "report")


def test_the_study_form_offers_every_spec_in_experiments(schemas: dict[str, dict]) -> None:
    spec = schemas["study"]["properties"]["spec"]
    on_disk = sorted(f"experiments/{p.name}" for p in (ROOT / "experiments").glob("*.yaml"))
    assert spec["enum"] == on_disk
    assert spec["default"] == "experiments/quickstart.yaml"
    assert "experiments/" in spec["description"]


def test_the_study_form_types_its_overrides(schemas: dict[str, dict]) -> None:
    properties = schemas["study"]["properties"]
    for name, bounds in (
        ("trials_per_variant", {"minimum": 1}),
        ("seeds", {"minimum": 1, "maximum": 1000}),
        ("max_epochs", {"minimum": 1}),
    ):
        integer, null = properties[name]["anyOf"]
        assert integer == {"type": "integer", **bounds}, name
        assert null == {"type": "null"}
        assert properties[name]["default"] is None
        assert properties[name]["description"]  # the form explains each field
    assert schemas["study"].get("required", []) == []  # every field has a default


def test_the_data_form_lists_the_tasks(schemas: dict[str, dict]) -> None:
    from seqmodels.tasks import TASKS

    properties = schemas["prepare_data"]["properties"]
    assert properties["task"]["enum"] == list(TASKS.names())
    assert properties["seed"]["minimum"] == 0


def test_the_report_form_names_a_study(schemas: dict[str, dict]) -> None:
    properties = schemas["report"]["properties"]
    assert properties["study"]["type"] == "string"
    assert properties["study"]["minLength"] == 1


def test_serve_without_a_prefect_server_is_a_one_line_error(home: Path) -> None:
    result = seqlab("serve")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "seqlab up" in result.stderr and "PREFECT_API_URL" in result.stderr


def test_run_overrides_are_checked_like_the_spec(home: Path) -> None:
    result = seqlab("run", "experiments/smoke.yaml", "--set", "seeds=0", "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "seqlab: error: experiments/smoke.yaml: seeds: Input should be greater than or equal to 1"
    )
    result = seqlab("run", "experiments/smoke.yaml", "--set", "seeds", "--dry-run")
    assert result.returncode == 2
    assert "--set seeds: expected KEY=VALUE" in result.stderr
    ok = seqlab(
        "run", "experiments/smoke.yaml", "--set", "search.trials_per_variant=3", "--dry-run"
    )
    assert ok.returncode == 0, ok.stderr
    assert "3 trials each" in ok.stdout


# --- served to a real Prefect server ----------------------------------------------------------


def _prefect(served: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The `prefect` CLI, pointed at the stack the way `eval "$(seqlab status --env)"` does."""
    exports = seqlab("status", "--env", env=served["env"])
    assert exports.returncode == 0, exports.stderr
    env = dict(served["env"])
    for line in exports.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    assert env["PREFECT_API_URL"] == f"{served['prefect']}/api"
    return subprocess.run(
        [str(Path(ROOT, ".venv/bin/prefect")), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_serve_registers_the_three_deployments(served: dict) -> None:
    names = {d["name"] for d in served["deployments"]}
    assert names == {"run-study", "prepare-data", "report"}


def _prepare(served: dict, options: dict) -> tuple[subprocess.CompletedProcess, dict]:
    """`prefect deployment run` of prepare-data, watched to its end, and its flow run."""
    result = _prefect(
        served,
        "deployment",
        "run",
        "seqlab-prepare-data/prepare-data",
        *("--param", "task=adding", "--params", json.dumps({"options": options}), "--watch"),
    )
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout).group(1)
    with urllib.request.urlopen(f"{served['prefect']}/api/flow_runs/{flow_run_id}") as response:
        return result, json.loads(response.read())


@pytest.mark.slow
def test_prepare_data_runs_from_prefect_deployment_run(served: dict) -> None:
    result, flow_run = _prepare(served, {"length": 12, "n_train": 64, "n_val": 16, "n_test": 16})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert flow_run["state_type"] == "COMPLETED"
    cards = list((served["home"] / "data").rglob("card.json"))
    assert any(json.loads(c.read_text())["options"]["length"] == 12 for c in cards), cards


@pytest.mark.slow
def test_a_bad_parameter_fails_the_run_with_the_field_named(served: dict) -> None:
    result, flow_run = _prepare(served, {"length": -3})
    assert flow_run["state_type"] == "FAILED", result.stdout[-2000:]
    assert "task.options.length" in flow_run["state"]["message"], flow_run["state"]
    assert not any(
        json.loads(c.read_text())["options"].get("length") == -3
        for c in (served["home"] / "data").rglob("card.json")
    )
