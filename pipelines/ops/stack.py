"""The team stack on one machine: an MLflow server, a Prefect server and a Ray head.

`seqlab up` starts each service in its own process group, health-checks it over HTTP and writes
a record of it (PID, URL, log) to `$SEQLAB_HOME/stack/NAME.json`; its output goes to
`$SEQLAB_HOME/stack/NAME.log`. `seqlab down` stops only the processes those records name.
While the records name live processes, `pipelines.ops.settings` points seqlab at the servers.

This module imports nothing heavy: the CLI and `settings` use it before deciding what to load.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.ops import settings

SERVICES = ("mlflow", "prefect", "ray")
LOOPBACK = "127.0.0.1"
HEALTH_TIMEOUT_S = 180.0  # Prefect's first start migrates a fresh database: slow on 2 cores
STOP_TIMEOUT_S = 30.0  # Ray drains for up to 30 s on SIGTERM before it stops its processes


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


@dataclass(frozen=True)
class Record:
    """What `up` wrote about a service it started: enough to find it, check it and stop it."""

    name: str
    pid: int
    started: str  # the process's start time as the kernel counts it; guards against PID reuse
    url: str
    health_url: str
    healthy_body: str
    log: str
    address: str = ""  # what clients connect to, where it differs from the URL (Ray's GCS)
    command: list[str] = field(default_factory=list)


class StackError(Exception):
    """A problem with the stack that the user can act on; the message is one line."""


def stack_dir(home: Path) -> Path:
    return home / "stack"


def _connect_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to `host`."""
    return LOOPBACK if host in ("0.0.0.0", "::", "") else host


def plan(config: StackConfig, home: Path) -> list[Service]:
    """The services `config` asks for, with their commands, in start order."""
    bin_dir = Path(sys.executable).parent
    host, near = config.host, _connect_host(config.host)
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


# --- records -------------------------------------------------------------------------------------


def process_started(pid: int) -> str | None:
    """The kernel's start time of `pid`, or None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no procfs: fall back to "some process has this PID"
        return "" if _pid_exists(pid) else None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie has exited; only its parent has not collected it
    return fields[19]  # field 22 of stat(5), counted after the command name


def _pid_exists(pid: int, kill: Callable[[int, int], None] = os.kill) -> bool:
    """Whether a process (or, with `kill=os.killpg`, a process group) of that id exists."""
    try:
        kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(record: Record) -> bool:
    """Whether the process `record` names still runs (and is the same process, not a reuse)."""
    started = process_started(record.pid)
    return started is not None and (started == record.started or not record.started)


def read_records(home: Path) -> dict[str, Record]:
    """The records `up` wrote, live or not, by service name."""
    records: dict[str, Record] = {}
    for name in SERVICES:
        path = stack_dir(home) / f"{name}.json"
        try:
            records[name] = Record(**json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            continue
    return records


def live_records(home: Path) -> dict[str, Record]:
    """The records whose process still runs: the stack `seqlab run` should use."""
    return {name: r for name, r in read_records(home).items() if alive(r)}


def _write_record(home: Path, record: Record) -> None:
    path = stack_dir(home) / f"{record.name}.json"
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(asdict(record), indent=2))
    partial.replace(path)  # a reader sees the old record or the new one, never half of one


def _forget(home: Path, name: str) -> None:
    (stack_dir(home) / f"{name}.json").unlink(missing_ok=True)


# --- health --------------------------------------------------------------------------------------


def probe(url: str, expected: str, timeout: float = 2.0) -> bool:
    """Whether `url` answers 200 with a body that contains `expected`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our URLs)
            body = response.read(4096).decode("utf-8", "replace")
            return response.status == 200 and expected in body
    except (urllib.error.URLError, OSError, ValueError):
        return False


def healthy(record: Record) -> bool:
    return alive(record) and probe(record.health_url, record.healthy_body)


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do, so that connections of a stopped server in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(path: str | Path, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --- up, down ------------------------------------------------------------------------------------


@dataclass
class UpResult:
    started: list[Record]
    already: list[Record]
    seconds: float


def _child_env(service: Service) -> dict[str, str]:
    env = {**os.environ, **service.env}
    # A server must not treat itself as a client of another stack.
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "RAY_ADDRESS"):
        env.pop(key, None)
    return env


def _start(service: Service, home: Path) -> Record:
    log = stack_dir(home) / f"{service.name}.log"
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {service.name} starts\n".encode())
        out.flush()
        process = subprocess.Popen(
            service.command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_child_env(service),
            cwd=home,
            start_new_session=True,  # its own process group: `down` stops exactly this tree
        )
    record = Record(
        name=service.name,
        pid=process.pid,
        started=process_started(process.pid) or "",
        url=service.url,
        health_url=service.health_url,
        healthy_body=service.healthy_body,
        log=str(log),
        address=service.address,
        command=service.command,
    )
    _write_record(home, record)
    return record


def _wait_healthy(records: list[Record], timeout: float) -> list[Record]:
    """Poll until every record is healthy; the ones that are not (by the deadline, or because
    one of them exited, which ends the wait at once)."""
    deadline = time.monotonic() + timeout
    pending = list(records)
    while pending and time.monotonic() < deadline:
        if not all(alive(r) for r in records):
            break
        pending = [r for r in pending if not healthy(r)]
        if pending:
            time.sleep(0.5)
    return [r for r in records if not healthy(r)]


def up(
    config: StackConfig,
    home: Path,
    say: Callable[[str], None] = print,
    health_timeout: float = HEALTH_TIMEOUT_S,
) -> UpResult:
    """Start what is not running yet, wait until it is healthy, and record it.

    Raises:
        StackError: a port is taken, or a service failed its health check (everything this
            call started has been stopped again by then, and the message carries the log tail).
    """
    began = time.monotonic()
    stack_dir(home).mkdir(parents=True, exist_ok=True)
    running = live_records(home)
    wanted = plan(config, home)
    todo = [s for s in wanted if s.name not in running]
    for service in todo:
        for option, port in service.ports.items():
            if not port_free(config.host, port):
                raise StackError(
                    f"{option}: port {port} on {config.host} is already in use "
                    f"(needed by {service.name})"
                )
    started = [_start(service, home) for service in todo]
    for record in started:
        say(f"starting {record.name} (pid {record.pid}), log {record.log}")
    failed = _wait_healthy(started, health_timeout)
    if failed:
        first = next((r for r in failed if not alive(r)), failed[0])
        reason = "exited" if not alive(first) else f"not healthy after {health_timeout:.0f}s"
        for record in started:
            stop(record, home)
        raise StackError(
            f"{first.name} {reason} ({first.health_url}); stopped what this call started. "
            f"Last lines of {first.log}:\n{log_tail(first.log)}"
        )
    return UpResult(
        started=started,
        already=[running[s.name] for s in wanted if s.name in running],
        seconds=time.monotonic() - began,
    )


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it exited between our check and the signal


def stop(
    record: Record, home: Path, timeout: float = STOP_TIMEOUT_S, was_alive: bool | None = None
) -> bool:
    """Stop the process group `record` started; True when something was running.

    `was_alive`: whether it ran before the caller signalled it (`down` signals all at once).
    """
    was_alive = alive(record) if was_alive is None else was_alive
    if alive(record):
        # The leader first: `ray start --block` and the servers shut their children down.
        _signal(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(record) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(record):
            _signal(record.pid, signal.SIGKILL)
    # What is left of the group (the leader set it up with its own PID) gets a short grace.
    if was_alive and _pid_exists(record.pid, os.killpg):
        deadline = time.monotonic() + 5.0
        try:
            os.killpg(record.pid, signal.SIGTERM)
            while _pid_exists(record.pid, os.killpg) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_exists(record.pid, os.killpg):
                os.killpg(record.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _forget(home, record.name)
    return was_alive


def down(home: Path, say: Callable[[str], None] = print) -> list[str]:
    """Stop every service `up` recorded under `home`; the names of those that were running.

    All are asked to stop at once (each may take seconds to drain), then each is waited for.
    """
    records = list(read_records(home).values())
    running = {record.name for record in records if alive(record)}
    for record in records:
        if record.name in running:
            _signal(record.pid, signal.SIGTERM)
    stopped = []
    for record in reversed(records):
        if stop(record, home, was_alive=record.name in running):
            say(f"stopped {record.name} (pid {record.pid})")
            stopped.append(record.name)
    return stopped


def client_environment(home: Path) -> dict[str, str]:
    """The standard variables that point a client at the running stack's servers."""
    records = live_records(home)
    env = {}
    if "mlflow" in records:
        env["MLFLOW_TRACKING_URI"] = records["mlflow"].url
    if "prefect" in records:
        env["PREFECT_API_URL"] = f"{records['prefect'].url}/api"
    if "ray" in records:
        env["RAY_ADDRESS"] = records["ray"].address
        env["RAY_AUTH_MODE"] = "token"
    return env


@dataclass(frozen=True)
class State:
    name: str
    url: str
    pid: int | None
    running: bool
    healthy: bool


def status(home: Path, names: Iterable[str] = SERVICES) -> list[State]:
    records = read_records(home)
    states = []
    for name in names:
        record = records.get(name)
        if record is None:
            states.append(State(name, "", None, False, False))
            continue
        running = alive(record)
        states.append(State(name, record.url, record.pid, running, running and healthy(record)))
    return states
