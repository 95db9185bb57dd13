"""What `seqlab up` starts: an MLflow server, a Prefect server and a Ray head, each with its
command, its ports and how to ask it whether it is well (`plan`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.ops import settings
from pipelines.ops.records import SERVICES

LOOPBACK = "127.0.0.1"


class StackError(Exception):
    """A problem with the stack that the user can act on; the message is one line."""


@dataclass(frozen=True)
class StackConfig:
    """What `seqlab up` starts and where. Every port is the service's usual default."""

    host: str = LOOPBACK
    mlflow_port: int = 5000
    prefect_port: int = 4200
    ray_port: int = 6379
    dashboard_port: int = 8265
    ray_client_port: int = 10001
    backend_store_uri: str | None = None  # None: SQLite under $SEQLAB_HOME
    num_cpus: int | None = None  # None: every core
    num_gpus: int | None = None  # None: what Ray detects
    prefect_auth: bool = False  # protect the Prefect API with $PREFECT_API_AUTH_STRING
    services: tuple[str, ...] = SERVICES


@dataclass(frozen=True)
class Service:
    """One server process: how to start it, which ports it takes, how to ask it if it is well."""

    name: str
    command: list[str]
    ports: dict[str, int]  # the CLI option that sets it -> port
    url: str  # what a person opens
    health_url: str
    healthy_body: str  # the health endpoint's answer when all is well
    env: dict[str, str] = field(default_factory=dict)
    address: str = ""  # what clients connect to, where it differs from the URL (Ray's GCS)


def connect_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to `host`."""
    return LOOPBACK if host in ("0.0.0.0", "::", "") else host


def plan(config: StackConfig, home: Path) -> list[Service]:
    """The services `config` asks for, with their commands, in start order."""
    bin_dir = Path(sys.executable).parent
    host, near = config.host, connect_host(config.host)
    services: dict[str, Service] = {}
    store = config.backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"
    allowed = {f"{near}:{config.mlflow_port}", f"localhost:{config.mlflow_port}"}
    if host not in (LOOPBACK, "localhost"):
        allowed.add(f"{host}:{config.mlflow_port}")
    services["mlflow"] = Service(
        name="mlflow",
        command=[
            str(bin_dir / "mlflow"),
            "server",
            "--host",
            host,
            "--port",
            str(config.mlflow_port),
            "--backend-store-uri",
            store,
            # Artifacts go through the server, so clients need no access to its disk.
            "--serve-artifacts",
            "--artifacts-destination",
            (home / "mlartifacts").as_uri(),
            "--allowed-hosts",
            ",".join(sorted(allowed)),
            "--workers",
            "1",
        ],
        ports={"--mlflow-port": config.mlflow_port},
        url=f"http://{near}:{config.mlflow_port}",
        health_url=f"http://{near}:{config.mlflow_port}/health",
        healthy_body="OK",
        env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "GIT_PYTHON_REFRESH": "quiet"},
    )
    prefect_env = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://{near}:{config.prefect_port}/api",
    }
    if config.prefect_auth:
        secret = os.environ.get("PREFECT_API_AUTH_STRING")
        if not secret:
            raise StackError("--prefect-auth: set PREFECT_API_AUTH_STRING to the 'user:password'")
        prefect_env["PREFECT_SERVER_API_AUTH_STRING"] = secret
    services["prefect"] = Service(
        name="prefect",
        command=[
            str(bin_dir / "prefect"),
            "server",
            "start",
            "--host",
            host,
            "--port",
            str(config.prefect_port),
        ],
        ports={"--prefect-port": config.prefect_port},
        url=f"http://{near}:{config.prefect_port}",
        health_url=f"http://{near}:{config.prefect_port}/api/health",
        healthy_body="true",
        env=prefect_env,
    )
    ray_command = [
        str(bin_dir / "ray"),
        "start",
        "--head",
        "--block",  # stay in the foreground, so the PID we record owns the whole node
        "--port",
        str(config.ray_port),
        "--include-dashboard",
        "true",
        "--dashboard-host",
        host,
        "--dashboard-port",
        str(config.dashboard_port),
        "--ray-client-server-port",
        str(config.ray_client_port),
        "--disable-usage-stats",
    ]
    if config.num_cpus is not None:
        ray_command += ["--num-cpus", str(config.num_cpus)]
    if config.num_gpus is not None:
        ray_command += ["--num-gpus", str(config.num_gpus)]
    services["ray"] = Service(
        name="ray",
        command=ray_command,
        ports={
            "--ray-port": config.ray_port,
            "--dashboard-port": config.dashboard_port,
            "--ray-client-port": config.ray_client_port,
        },
        url=f"http://{near}:{config.dashboard_port}",
        health_url=f"http://{near}:{config.dashboard_port}/api/gcs_healthz",
        healthy_body="success",
        # Token authentication (the token is in ~/.ray/auth_token, made on first start);
        # clients need the same mode, which `settings.configure_environment` sets.
        env={
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            # on loopback only, unless the stack serves other machines (see settings)
            settings.RAY_SINGLE_MACHINE: "0" if host in settings.LOOPBACK_HOSTS else "1",
        },
        address=f"{near}:{config.ray_port}",
    )
    unknown = set(config.services) - set(services)
    if unknown:
        raise StackError(f"--only: unknown service {sorted(unknown)[0]!r}; one of {SERVICES}")
    return [services[name] for name in SERVICES if name in config.services]
