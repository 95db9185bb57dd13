"""`seqlab up/down/status`: the team stack, with real servers on free ports.

The fast tests check the plan and the records without starting anything. The slow ones start
the real MLflow server, Prefect server and Ray head (`team_stack`), run a study through them,
and check what each server recorded.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, SEQLAB, descendants, free_port, seqlab

from pipelines.ops import settings, stack

# --- the plan and the records, nothing started -------------------------------------------------


def test_every_service_binds_loopback_by_default(tmp_path: Path) -> None:
    services = {s.name: s for s in stack.plan(stack.StackConfig(), tmp_path)}
    assert list(services) == ["mlflow", "prefect", "ray"]
    mlflow = services["mlflow"].command
    assert mlflow[mlflow.index("--host") + 1] == "127.0.0.1"
    assert mlflow[mlflow.index("--allowed-hosts") + 1] == "127.0.0.1:5000,localhost:5000"
    assert "--serve-artifacts" in mlflow
    assert mlflow[mlflow.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    prefect = services["prefect"].command
    assert prefect[prefect.index("--host") + 1] == "127.0.0.1"
    assert services["prefect"].env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    ray = services["ray"].command
    assert ray[ray.index("--dashboard-host") + 1] == "127.0.0.1"
    assert services["ray"].env["RAY_AUTH_MODE"] == "token"
    assert services["ray"].env[settings.RAY_SINGLE_MACHINE] == "0"  # Ray on loopback too
    assert services["ray"].address == "127.0.0.1:6379"


# What a study's own Ray (the embedded default) does, seen from outside: `ss` lists the
# listening sockets of the process and everything it started.
RAY_SESSION = """
import sys
from pipelines.ops import settings
settings.configure_environment()  # as every seqlab command does, before Ray is imported
import pipelines.study.flows  # noqa: F401  (the flow and every phase)
from pipelines import study
with study.tuning.ray_session():
    print("up", flush=True)
    sys.stdin.readline()
"""


def _listening(pids: set[int]) -> list[str]:
    """The local addresses that processes `pids` listen on (TCP), from `ss`."""
    lines = subprocess.run(
        ["ss", "-Hltnp"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    found = []
    for line in lines:
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append(line.split()[3].rsplit(":", 1)[0].strip("[]"))
    return found


@pytest.mark.slow
def test_the_embedded_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    """Every server of the Ray that a study starts for itself binds loopback, as the other
    servers seqlab starts do: no other machine can reach it."""
    unset = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", settings.RAY_SINGLE_MACHINE)
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["SEQLAB_HOME"] = str(tmp_path / "home")
    driver = subprocess.Popen(
        [sys.executable, "-c", RAY_SESSION],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout.readline().strip() == "up"
        addresses = _listening({driver.pid, *descendants(driver.pid)})
    finally:
        driver.stdin.close()  # the session ends and stops its Ray
        driver.wait(timeout=60)
    assert len(addresses) >= 3, addresses  # the GCS, the raylet, the driver's own worker...
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    assert set(addresses) <= loopback, addresses


def test_ports_host_and_backend_are_options(tmp_path: Path) -> None:
    config = stack.StackConfig(
        host="0.0.0.0",
        mlflow_port=15001,
        prefect_port=14201,
        backend_store_uri="postgresql://seqlab@127.0.0.1:5432/mlflow",
    )
    services = {s.name: s for s in stack.plan(config, tmp_path)}
    mlflow = services["mlflow"].command
    assert mlflow[mlflow.index("--port") + 1] == "15001"
    assert "0.0.0.0:15001" in mlflow[mlflow.index("--allowed-hosts") + 1]
    assert "postgresql://seqlab@127.0.0.1:5432/mlflow" in mlflow
    assert services["mlflow"].url == "http://127.0.0.1:15001"  # clients here use loopback
    assert services["prefect"].health_url == "http://127.0.0.1:14201/api/health"
    assert services["ray"].env[settings.RAY_SINGLE_MACHINE] == "1"  # reachable from elsewhere


def test_prefect_auth_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    with pytest.raises(stack.StackError, match="PREFECT_API_AUTH_STRING"):
        stack.plan(stack.StackConfig(prefect_auth=True), tmp_path)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:s3cret")
    prefect = {s.name: s for s in stack.plan(stack.StackConfig(prefect_auth=True), tmp_path)}
    assert prefect["prefect"].env["PREFECT_SERVER_API_AUTH_STRING"] == "admin:s3cret"
    assert "s3cret" not in " ".join(prefect["prefect"].command)  # not visible in `ps`


def _record(home: Path, name: str, pid: int, started: str | None = None) -> stack.Record:
    record = stack.Record(
        name=name,
        pid=pid,
        started=stack.process_started(pid) if started is None else started,
        url="http://127.0.0.1:1",
        health_url="http://127.0.0.1:1/health",
        healthy_body="OK",
        log=str(home / f"{name}.log"),
        address="127.0.0.1:1" if name == "ray" else "",
    )
    stack.stack_dir(home).mkdir(parents=True, exist_ok=True)
    stack.write_record(home, record)
    return record


def test_a_record_of_a_reused_pid_is_not_alive(tmp_path: Path) -> None:
    mine = _record(tmp_path, "mlflow", os.getpid())
    assert stack.alive(mine)
    assert not stack.alive(_record(tmp_path, "prefect", os.getpid(), started="1"))


def test_settings_follow_a_live_stack_and_the_standard_variables_win(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.tracking_uri().startswith("sqlite:///")
    assert settings.ray_address() is None
    assert settings.prefect_api_url() is None
    for name in stack.SERVICES:
        _record(home, name, os.getpid())  # "running": this very process
    assert settings.tracking_uri() == "http://127.0.0.1:1"
    assert settings.ray_address() == "127.0.0.1:1"
    assert settings.prefect_api_url() == "http://127.0.0.1:1/api"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("RAY_ADDRESS", "ray.example:6379")
    assert settings.tracking_uri() == "http://mlflow.example:5000"
    assert settings.ray_address() == "ray.example:6379"


def test_a_dead_stack_is_ignored(home: Path) -> None:
    for name in stack.SERVICES:
        _record(home, name, 2**22 + 1, started="0")  # above pid_max: no such process
    assert settings.tracking_uri().startswith("sqlite:///")
    assert settings.ray_address() is None


def test_down_with_nothing_running_says_so(home: Path) -> None:
    result = seqlab("down")
    assert result.returncode == 0
    assert "nothing to stop" in result.stdout


def test_status_without_a_stack(home: Path) -> None:
    result = seqlab("status", "--json")
    assert result.returncode == 0
    states = json.loads(result.stdout)
    assert [s["name"] for s in states] == ["mlflow", "prefect", "ray"]
    assert not any(s["running"] for s in states)


def test_a_taken_port_is_a_one_line_error_naming_port_and_service(home: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = seqlab("up", "--only", "prefect", "--prefect-port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"--prefect-port: port {port}" in result.stderr
    assert "prefect" in result.stderr.split("(")[-1]
    assert "Traceback" not in result.stderr
    assert not any(stack.read_records(home).values())  # nothing started, nothing recorded


def test_a_bad_port_is_a_one_line_error(home: Path) -> None:
    result = seqlab("up", "--mlflow-port", "70000")
    assert result.returncode == 2
    assert result.stderr.strip() == "seqlab: error: --mlflow-port: 70000 is not a port (1-65535)"


# --- real servers --------------------------------------------------------------------------------


def test_a_service_that_exits_is_reported_with_its_log(home: Path) -> None:
    result = seqlab(
        "up",
        *("--only", "mlflow", "--mlflow-port", str(free_port())),
        *("--backend-store-uri", "sqlite:////proc/no-such-dir/mlflow.db"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    first, *tail = result.stderr.splitlines()
    assert first.startswith("seqlab: error: mlflow exited")
    assert "Last lines of" in first
    assert "/proc/no-such-dir" in "\n".join(tail)  # the log's tail says why
    assert stack.read_records(home) == {}


@pytest.mark.slow
def test_a_service_failing_its_health_check_is_stopped_and_its_log_shown(home: Path) -> None:
    closed = free_port()  # nothing listens there: MLflow keeps retrying its database
    result = seqlab(
        "up",
        *("--only", "mlflow", "--mlflow-port", str(free_port()), "--timeout", "15"),
        *("--backend-store-uri", f"postgresql://seqlab@127.0.0.1:{closed}/mlflow"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("seqlab: error: mlflow not healthy after 15s"), first
    assert "Last lines of" in first
    assert stack.read_records(home) == {}  # its record is gone
    started = int(result.stdout.split("(pid ")[1].split(")")[0])
    assert stack.process_started(started) is None  # and so is its process


@pytest.mark.slow
def test_up_starts_each_service_healthy_and_records_it(team_stack: dict) -> None:
    out = team_stack["up"].stdout
    assert "healthy after" in out
    records = stack.read_records(team_stack["home"])
    assert sorted(records) == ["mlflow", "prefect", "ray"]
    for record in records.values():
        assert stack.healthy(record), record
        assert (
            Path(record.log).is_file() and Path(record.log).parent == team_stack["home"] / "stack"
        )
    with urllib.request.urlopen(f"{team_stack['prefect']}/api/health", timeout=5) as r:
        assert r.read() == b"true"
    with urllib.request.urlopen(f"{team_stack['mlflow']}/health", timeout=5) as r:
        assert r.read() == b"OK"


@pytest.mark.slow
def test_status_prints_urls_and_health(team_stack: dict) -> None:
    result = subprocess.run(
        [*SEQLAB, "status"], cwd=ROOT, env=team_stack["env"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert f"{team_stack['mlflow']}" in result.stdout
    assert f"{team_stack['prefect']}" in result.stdout
    assert result.stdout.count("healthy (pid") == 3


@pytest.mark.slow
def test_up_while_up_starts_nothing_twice(team_stack: dict) -> None:
    before = {n: r.pid for n, r in stack.read_records(team_stack["home"]).items()}
    args = [x for pair in team_stack["ports"].items() for x in (pair[0], str(pair[1]))]
    again = subprocess.run(
        [*SEQLAB, "up", *args], cwd=ROOT, env=team_stack["env"], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "already up; nothing started" in again.stdout
    assert "starting" not in again.stdout
    after = {n: r.pid for n, r in stack.read_records(team_stack["home"]).items()}
    assert after == before


SECRET = "seqlab-test-secret-7f3a9c"


@pytest.fixture(scope="module")
def stacked_study(team_stack: dict) -> dict:
    """`seqlab run` of the smoke spec while the stack is up, with secrets in its environment."""
    env = {
        **team_stack["env"],
        # Credentials a user's shell may well hold; none may leak into what MLflow records.
        "MLFLOW_TRACKING_PASSWORD": SECRET,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "SEQLAB_TEST_TOKEN": SECRET,
    }
    result = subprocess.run(
        [*SEQLAB, "run", "experiments/smoke.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Other tests may run studies on the same stack: this one's parent run is the one it printed.
    parent = re.search(r"MLflow parent run ([0-9a-f]+) in experiment", result.stdout).group(1)
    return {**team_stack, "run": result, "parent_run_id": parent}


@pytest.mark.slow
def test_run_logs_to_the_mlflow_server_not_to_sqlite(stacked_study: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stacked_study["mlflow"])
    experiment = client.get_experiment_by_name("smoke")
    assert experiment is not None
    runs = f"{stacked_study['mlflow']}/#/experiments/{experiment.experiment_id}/runs"
    assert (
        f"{runs}  (the study's runs)" in stacked_study["run"].stdout
    )  # the server, no `mlflow ui`
    assert (
        f"{runs}/{stacked_study['parent_run_id']}  (this parent run)" in stacked_study["run"].stdout
    )
    assert "mlflow ui" not in stacked_study["run"].stdout
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # served by the server
    parent_id = stacked_study["parent_run_id"]
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert sorted(r.data.tags["kind"] for r in children) == ["repeat"] * 4 + ["trial"] * 4
    assert all("val/loss" in r.data.metrics for r in children)
    # The run's artifacts went through the server into the stack's artifact store.
    names = {a.path for a in client.list_artifacts(parent_id)}
    assert "comparison.md" in names
    stored = list((stacked_study["home"] / "mlartifacts").rglob("comparison.md"))
    assert stored


def _prefect(base: str, path: str, body: dict) -> list[dict]:
    request = urllib.request.Request(
        f"{base}/api/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_run_is_recorded_by_the_prefect_server(stacked_study: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stacked_study["mlflow"])
    parent = client.get_run(stacked_study["parent_run_id"])
    flow_run_id = parent.data.tags["prefect.flow_run_id"]  # the MLflow run names its flow run
    (flow_run,) = _prefect(
        stacked_study["prefect"], "flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    )
    assert flow_run["state_type"] == "COMPLETED"
    (flow,) = _prefect(
        stacked_study["prefect"], "flows/filter", {"flows": {"id": {"any_": [flow_run["flow_id"]]}}}
    )
    assert flow["name"] == "run_study"
    assert parent.data.tags["prefect.flow_run_url"].startswith(stacked_study["prefect"])


def _dashboard(stacked: dict, path: str) -> list[dict]:
    """A Ray state-API listing from the stack's dashboard, which wants the cluster's token."""
    dashboard = f"http://127.0.0.1:{stacked['ports']['--dashboard-port']}"
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    request = urllib.request.Request(
        f"{dashboard}/api/v0/{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]["result"]["result"]


@pytest.mark.slow
def test_trials_ran_on_the_stacks_ray_head(stacked_study: dict) -> None:
    drivers = [j for j in _dashboard(stacked_study, "jobs") if j["type"] == "DRIVER"]
    assert [j["status"] for j in drivers if "experiments/smoke.yaml" in j["entrypoint"]] == [
        "SUCCEEDED"
    ]
    (head,) = _dashboard(stacked_study, "nodes")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stacked_study["mlflow"])
    experiment = client.get_experiment_by_name("smoke")
    children = client.search_runs([experiment.experiment_id], "tags.kind = 'trial'")
    assert {r.data.tags.get("ray.node_id") for r in children} == {head["node_id"]}


@pytest.mark.slow
def test_no_credential_reaches_mlflow_or_the_logs(stacked_study: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stacked_study["mlflow"])
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    for run in runs:
        recorded = json.dumps([run.data.params, run.data.tags, run.data.metrics])
        assert SECRET not in recorded, run.info.run_id
    # Nor in any artifact, the spec and the dataset card included.
    for path in (stacked_study["home"] / "mlartifacts").rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert SECRET.encode() not in path.read_bytes(), path
    for log in (stacked_study["home"] / "stack").glob("*.log"):
        assert SECRET not in log.read_text(errors="replace"), log
    run = stacked_study["run"]
    assert SECRET not in run.stdout + run.stderr


@pytest.mark.slow
def test_prefect_auth_protects_the_api(home: Path) -> None:
    port = free_port()
    secret = "seqlab:auth-test-4d2e"
    env = {"PREFECT_API_AUTH_STRING": secret}
    started = seqlab(
        "up", "--only", "prefect", "--prefect-port", str(port), "--prefect-auth", env=env
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        url = f"http://127.0.0.1:{port}/api/flows/filter"

        def post(headers: dict[str, str]) -> int:
            request = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                return err.code

        json_only = {"Content-Type": "application/json"}
        assert post(json_only) == 401
        token = base64.b64encode(secret.encode()).decode()
        assert post({**json_only, "Authorization": f"Basic {token}"}) == 200
        # The secret went to the server through its environment, never its command line.
        record = stack.read_records(home)["prefect"]
        assert secret not in " ".join(record.command)
        assert secret not in Path(record.log).read_text()
    finally:
        assert seqlab("down").returncode == 0
