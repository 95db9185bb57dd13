"""The UIs, used the way a person uses them: Debian's Chromium driven by Playwright.

a. In the Prefect UI, open the `run-study` deployment, start a custom run with changed
   parameters through its form, and wait until the run shows Completed.
b. In the MLflow UI, open the study's experiment, expand the parent run to its child runs with
   `val/loss`, and open the compare view for two variants.

The servers are the team stack the session starts (`seqlab up`, `seqlab serve`). Screenshots go
to `test-outputs/screenshots/` (or `$SEQLAB_TEST_OUTPUTS/screenshots/`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
OUTPUTS = Path(os.environ.get("SEQLAB_TEST_OUTPUTS", ROOT / "test-outputs"))


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = OUTPUTS / "screenshots"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def _api(base: str, path: str, body: dict | None = None) -> object:
    request = urllib.request.Request(
        f"{base}/api/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _runs_named(base: str, name: str, within: float, failed: Callable[[], bool]) -> list:
    """The flow runs called `name`, once there is one; [] if none came `within` seconds, or as
    soon as `failed()` says the UI reported an error.

    Waited for through the API rather than through the UI's confirming toast, which shows for a
    few seconds only.
    """
    deadline = time.monotonic() + within
    while True:
        named = _api(base, "flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
        if named or failed() or time.monotonic() > deadline:
            return named
        time.sleep(1)


@pytest.fixture(scope="module")
def ui_run(served: dict, browser, screenshots: Path) -> dict:
    """A study started from the Prefect UI's custom-run form, followed until it completes."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    refused: list[str] = []  # the UI's API calls that failed, for the messages below
    page.on(
        "response",
        lambda r: (
            refused.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None
        ),
    )
    page.on("requestfailed", lambda r: refused.append(f"{r.method} {r.url}: {r.failure}"))
    page.goto(f"{served['prefect']}/deployments", wait_until="networkidle")
    page.get_by_role("link", name="run-study").click()
    page.wait_for_url(re.compile(r".*/deployments/deployment/.*"))
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").first.click()
    page.wait_for_url(re.compile(r".*/run\?.*"))

    def field(label: str):
        return page.locator(".schema-form-property").filter(has=page.get_by_text(label, exact=True))

    # The spec is a drop-down of experiments/; the keyboard opens it as it would for a person.
    spec = field("spec (Optional)").locator("button.p-select-button__control")
    spec.focus()
    page.keyboard.press("ArrowDown")
    page.get_by_role("option", name="experiments/smoke.yaml").click()
    for label, value in (("seeds (Optional)", "2"), ("max_epochs (Optional)", "1")):
        field(label).get_by_role("button", name="int", exact=True).click()
        field(label).locator("input").fill(value)
    run_name = f"from-the-ui-{int(time.time())}"
    name = page.locator(".p-label").filter(has=page.get_by_text("Run Name", exact=True))
    name.locator("input").first.fill(run_name)
    page.screenshot(path=screenshots / "prefect-1-custom-run-form.png", full_page=True)
    # In two full-suite runs on 2 busy cores the UI answered the click with its generic error
    # toast ("Oops. Something went wrong.") and created no run; the failed API calls are kept
    # for the message below. A person would press Submit again, once; so does this test.
    oops = page.get_by_text("Something went wrong").first
    for attempt in (1, 2):
        clicked = time.time()
        page.get_by_role("button", name="Submit").click()
        named = _runs_named(served["prefect"], run_name, 180, failed=oops.is_visible)
        page.screenshot(path=screenshots / f"prefect-1b-submitted-{attempt}.png", full_page=True)
        if named or not oops.is_visible():
            break
        oops.wait_for(state="hidden")
    assert len(named) == 1, f"one click, one run; the UI's failed API calls: {refused}"
    flow_run_id = named[0]["id"]
    page.goto(f"{served['prefect']}/runs/flow-run/{flow_run_id}")
    page.get_by_text(run_name).first.wait_for()
    page.screenshot(path=screenshots / "prefect-2-run-started.png", full_page=True)
    page.get_by_text("Completed", exact=True).first.wait_for(timeout=600_000)
    page.screenshot(path=screenshots / "prefect-3-run-completed.png", full_page=True)
    page.close()
    return {**served, "flow_run_id": flow_run_id, "clicked": clicked}


def test_prefect_ui_custom_run_completes_with_the_changed_parameters(ui_run: dict) -> None:
    flow_run = _api(ui_run["prefect"], f"flow_runs/{ui_run['flow_run_id']}")
    assert flow_run["state_type"] == "COMPLETED"
    given = {k: v for k, v in flow_run["parameters"].items() if v is not None}
    assert given == {"spec": "experiments/smoke.yaml", "seeds": 2, "max_epochs": 1}
    deployment = _api(ui_run["prefect"], f"deployments/{flow_run['deployment_id']}")
    assert deployment["name"] == "run-study"


def _study_runs(ui_run: dict) -> tuple[object, object, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=ui_run["mlflow"])
    experiment = client.get_experiment_by_name("smoke")
    parents = client.search_runs(
        [experiment.experiment_id],
        f"tags.`prefect.root_flow_run_id` = '{ui_run['flow_run_id']}'",
    )
    assert len(parents) == 1, "the UI's flow run is named on exactly one MLflow parent run"
    parent = parents[0]
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    return client, parent, children


def test_the_ui_run_landed_in_mlflow_with_links_both_ways(ui_run: dict) -> None:
    client, parent, children = _study_runs(ui_run)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["prefect.flow_run_url"].startswith(ui_run["prefect"])
    # The form's overrides reached the study: 2 seeded repeats per variant, 1 epoch each.
    repeats = [r for r in children if r.data.tags["kind"] == "repeat"]
    assert sorted(r.info.run_name for r in repeats) == [
        "lstm-repeat-1",
        "lstm-repeat-2",
        "rnn-repeat-1",
        "rnn-repeat-2",
    ]
    for run in children:
        assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 1
    # The Prefect run links to the MLflow run.
    artifacts = _api(
        ui_run["prefect"],
        "artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [ui_run["flow_run_id"]]}}},
    )
    links = [a["data"] for a in artifacts if a["type"] == "markdown" and "](" in a["data"]]
    links += [a["data"] for a in artifacts if a["type"] == "link"]
    url = f"{ui_run['mlflow']}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
    assert any(url in link for link in links), artifacts
    # From the click to the first trial's MLflow run: the figure the README quotes.
    first_trial = min(r.info.start_time for r in children) / 1000
    (OUTPUTS / "ui-click-to-first-trial.json").write_text(
        json.dumps({"seconds": round(first_trial - ui_run["clicked"], 1)})
    )


def test_mlflow_ui_shows_parent_children_and_compares_two_variants(
    ui_run: dict, browser, screenshots: Path
) -> None:
    client, parent, children = _study_runs(ui_run)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(
        f"{ui_run['mlflow']}/#/experiments/{parent.info.experiment_id}/runs",
        wait_until="domcontentloaded",
    )

    def link(name: str):
        return page.get_by_role("link", name=name, exact=True)

    link(parent.info.run_name).wait_for()
    page.screenshot(path=screenshots / "mlflow-1-experiment.png")
    # Expand the parent run: its child runs appear beneath it.
    page.get_by_role("gridcell").filter(has=link(parent.info.run_name)).get_by_role(
        "button"
    ).click()
    for run in children:
        link(run.info.run_name).wait_for()
    page.screenshot(path=screenshots / "mlflow-2-child-runs.png")
    # A child run's page shows its val/loss.
    trial = next(r for r in children if r.data.tags["kind"] == "trial")
    page.goto(
        f"{ui_run['mlflow']}/#/experiments/{parent.info.experiment_id}/runs/{trial.info.run_id}",
        wait_until="domcontentloaded",
    )
    page.get_by_text("val/loss").first.wait_for()
    page.screenshot(path=screenshots / "mlflow-3-child-run.png")
    # Compare the first seeded repeat of each variant.
    page.go_back()
    page.get_by_role("gridcell").filter(has=link(parent.info.run_name)).get_by_role(
        "button"
    ).first.wait_for()
    if not link("rnn-repeat-1").is_visible():
        page.get_by_role("gridcell").filter(has=link(parent.info.run_name)).get_by_role(
            "button"
        ).click()
    for name in ("rnn-repeat-1", "lstm-repeat-1"):
        page.get_by_role("row").filter(has=link(name)).get_by_role("checkbox").first.check()
    page.get_by_role("button", name=re.compile("^Compare")).first.click()
    page.wait_for_url(re.compile(r".*compare-runs.*"))
    page.get_by_text("Comparing 2 Runs").wait_for()
    for name in ("rnn-repeat-1", "lstm-repeat-1"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.screenshot(path=screenshots / "mlflow-4-compare.png", full_page=True)
    compared = {r.info.run_id for r in children if r.info.run_name.endswith("repeat-1")}
    assert all(run_id in page.url for run_id in compared)
    page.close()
