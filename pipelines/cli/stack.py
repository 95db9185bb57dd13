"""`seqlab up`, `down` and `status`: the team stack (MLflow, Prefect, Ray) on this machine."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from pipelines.cli.common import EXIT_USAGE, error
from pipelines.ops import settings, stack

DEFAULTS = stack.StackConfig()
PORTS = (  # (option, StackConfig field, the service that listens there)
    ("--mlflow-port", "mlflow_port", "MLflow tracking server"),
    ("--prefect-port", "prefect_port", "Prefect server and UI"),
    ("--ray-port", "ray_port", "Ray head (GCS)"),
    ("--dashboard-port", "dashboard_port", "Ray dashboard"),
    ("--ray-client-port", "ray_client_port", "Ray client server"),
)


def _port_options(command: Callable[..., int]) -> Callable[..., int]:
    """The five `--*-port` options, each defaulting to StackConfig's port."""
    for option, field, what in reversed(PORTS):  # click lists the last applied first
        default = getattr(DEFAULTS, field)
        command = click.option(
            option, type=int, default=default, help=f"{what} (default: {default})"
        )(command)
    return command


@click.command(
    short_help="start the team stack on this machine: MLflow server, Prefect server, Ray head",
    help="Start an MLflow tracking server, a Prefect server with its UI and a Ray head with its "
    "dashboard, each health-checked, with PIDs and logs under $SEQLAB_HOME/stack. While they "
    "run, `seqlab run` uses them.",
)
@click.option(
    "--host", default="127.0.0.1", help="interface every service binds (default: 127.0.0.1)"
)
@_port_options
@click.option(
    "--backend-store-uri",
    help="MLflow's store, e.g. postgresql://user@127.0.0.1:5432/mlflow "
    "(default: SQLite under $SEQLAB_HOME)",
)
@click.option("--num-cpus", type=int, help="CPUs the Ray head offers (default: all)")
@click.option("--num-gpus", type=int, help="GPUs the Ray head offers (default: detected)")
@click.option(
    "--prefect-auth",
    is_flag=True,
    help="protect the Prefect API with the 'user:password' in $PREFECT_API_AUTH_STRING",
)
@click.option(
    "--timeout",
    type=float,
    default=stack.HEALTH_TIMEOUT_S,
    help=f"seconds each service gets to become healthy (default: {stack.HEALTH_TIMEOUT_S:.0f})",
)
@click.option(
    "--only", help="a comma-separated subset of mlflow,prefect,ray to start (default: all three)"
)
def up(
    host: str,
    mlflow_port: int,
    prefect_port: int,
    ray_port: int,
    dashboard_port: int,
    ray_client_port: int,
    backend_store_uri: str | None,
    num_cpus: int | None,
    num_gpus: int | None,
    prefect_auth: bool,
    timeout: float,
    only: str | None,
) -> int:
    ports = {
        "mlflow_port": mlflow_port,
        "prefect_port": prefect_port,
        "ray_port": ray_port,
        "dashboard_port": dashboard_port,
        "ray_client_port": ray_client_port,
    }
    for option, field, _ in PORTS:
        if not 0 < ports[field] < 65536:
            return error(f"{option}: {ports[field]} is not a port (1-65535)")
    services = tuple(only.split(",")) if only else stack.SERVICES
    config = stack.StackConfig(
        host=host,
        **ports,
        backend_store_uri=backend_store_uri,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        prefect_auth=prefect_auth,
        services=services,
    )
    home = settings.seqlab_home()
    try:
        result = stack.up(
            config, home, say=lambda line: print(line, flush=True), health_timeout=timeout
        )
    except stack.StackError as err:
        first, _, rest = str(err).partition("\n")
        error(first)
        if rest:
            print(rest, file=sys.stderr)
        # A taken port or a bad option is the user's to fix; a crashed service is not.
        return EXIT_USAGE if first.startswith("--") else 1
    if not result.started:
        print(f"the stack under {home} is already up; nothing started")
    else:
        print(f"healthy after {result.seconds:.1f}s")
    _print_status(stack.status(home, services))
    print("`seqlab run` and `seqlab serve` now use these servers; `seqlab down` stops them.")
    print('Other tools (mlflow, prefect, ray) follow them after: eval "$(seqlab status --env)"')
    return 0


@click.command(
    short_help="stop the services `seqlab up` started, by PID",
    help="Stop the services `seqlab up` started, by PID.",
)
def down() -> int:
    home = settings.seqlab_home()
    if not stack.down(home):
        print(f"nothing to stop: no stack is running under {home}")
    return 0


@click.command(
    short_help="each stack service's URL and health", help="Each stack service's URL and health."
)
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable list")
@click.option(
    "--env",
    is_flag=True,
    help="print `export` lines that point other tools (mlflow, prefect, ray) at the stack",
)
def status(as_json: bool, env: bool) -> int:
    states = stack.status(settings.seqlab_home())
    if env:
        for key, value in stack.client_environment(settings.seqlab_home()).items():
            print(f"export {key}='{value}'")
        return 0
    if as_json:
        print(json.dumps([state.__dict__ for state in states], indent=2))
    else:
        _print_status(states)
    return 0


def _print_status(states: list[stack.State]) -> None:
    for state in states:
        if state.pid is None:
            health = "not started"
        elif not state.running:
            health = f"stopped (pid {state.pid} has exited)"
        else:
            health = f"{'healthy' if state.healthy else 'UNHEALTHY'} (pid {state.pid})"
        print(f"  {state.name:8} {state.url or '-':28} {health}")
