"""The team stack on one machine: an MLflow server, a Prefect server and a Ray head.

`seqlab up` starts each service in its own process group, health-checks it over HTTP and writes
a record of it (PID, URL, log) to `$SEQLAB_HOME/stack/NAME.json`; its output goes to
`$SEQLAB_HOME/stack/NAME.log`. `seqlab down` stops only the processes those records name.
While the records name live processes, `pipelines.ops.settings` points seqlab at the servers.

This module imports nothing heavy: the CLI and `settings` use it before deciding what to load.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pipelines.ops.records import (
    SERVICES,
    Record,
    alive,
    forget,
    live_records,
    pid_exists,
    process_started,
    read_records,
    stack_dir,
    write_record,
)
from pipelines.ops.services import Service, StackConfig, StackError, plan

HEALTH_TIMEOUT_S = 180.0  # Prefect's first start migrates a fresh database: slow on 2 cores
STOP_TIMEOUT_S = 30.0  # Ray drains for up to 30 s on SIGTERM before it stops its processes


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
    write_record(home, record)
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
    if was_alive and pid_exists(record.pid, os.killpg):
        deadline = time.monotonic() + 5.0
        try:
            os.killpg(record.pid, signal.SIGTERM)
            while pid_exists(record.pid, os.killpg) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_exists(record.pid, os.killpg):
                os.killpg(record.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    forget(home, record.name)
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
