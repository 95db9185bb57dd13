"""`seqlab run` starts Prefect's ephemeral API server before its heavy imports, beside them.

The flow run must then use that server, not start a second one, and with a Prefect server
configured nothing is started at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, descendants, embedded_env

PROBE = """
import json
from pipelines.cli import process as cli
from pipelines.ops import settings

settings.configure_environment()
ready = cli.start_embedded_prefect()
import torch  # noqa: F401  (what the server's start runs beside)
ready()
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.server.api.server import SubprocessASGIServer

server = SubprocessASGIServer()
started = server.server_process.pid

@flow(name="probe-flow")
def probe() -> int:
    return 1

probe()
with get_client(sync_client=True) as client:
    names = [client.read_flow(run.flow_id).name for run in client.read_flow_runs()]
    api = str(client.api_url)
print(json.dumps({
    "started": started,
    "after": SubprocessASGIServer().server_process.pid,
    "servers": len(SubprocessASGIServer._instances),
    "api": api,
    "server_api": server.api_url,
    "flows": names,
}))
"""


@pytest.mark.slow
def test_the_flow_run_uses_the_server_started_before_the_imports(tmp_path: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=embedded_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["servers"] == 1, found
    assert found["after"] == found["started"], "the flow run started a server of its own"
    assert found["api"].rstrip("/") == found["server_api"], found
    assert found["flows"] == ["probe-flow"], found
    assert (tmp_path / "home" / "prefect").is_dir(), "its database lives under SEQLAB_HOME"


@pytest.mark.parametrize(
    "configured",
    [{"PREFECT_API_URL": "http://127.0.0.1:9/api"}, {"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": False}],
    ids=["api-url", "ephemeral-off"],
)
def test_with_a_prefect_server_configured_nothing_is_started(configured: dict) -> None:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import temporary_settings

    from pipelines.cli import process as cli

    before = dict(SubprocessASGIServer._instances)
    children = set(descendants(os.getpid()))
    with temporary_settings(updates=configured):
        cli.start_embedded_prefect()()
    assert SubprocessASGIServer._instances == before
    assert set(descendants(os.getpid())) == children
