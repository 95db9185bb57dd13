"""Shared fixtures of the three tiers (`unit/`, `integration/`, `infra/`). Every test that writes
state gets its own SEQLAB_HOME. A test marked `gpu` is skipped where torch sees no CUDA device."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEQLAB = [sys.executable, "-m", "pipelines.cli"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    import torch  # only when a gpu test is collected: the unit tier's collection stays light

    if torch.cuda.is_available():
        return
    for item in gpu:
        item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private store, with the standard variables cleared so the embedded default applies."""
    store = tmp_path / "home"
    monkeypatch.setenv("SEQLAB_HOME", str(store))
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    return store


def embedded_env(home: Path) -> dict[str, str]:
    """This process's environment for a user with no servers configured (the embedded
    default) and `home` as SEQLAB_HOME: a subprocess's `env`."""
    clean = {k: v for k, v in os.environ.items() if k not in _SERVER_VARS}
    return {**clean, "SEQLAB_HOME": str(home)}


def seqlab(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the CLI in a subprocess, as a user would."""
    return subprocess.run(
        [*SEQLAB, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from procfs parent links."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def foreground(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`seqlab ARGS` as a terminal's foreground job: in a session of its own, so that Ctrl-C is
    SIGINT to its whole process group, and with SIGINT handled (a job started in the background
    inherits it ignored). Its output, stdout and stderr together, is on `.stdout`."""
    return subprocess.Popen(
        [*SEQLAB, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick, outside Ray's worker-port range)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory: pytest.TempPathFactory):
    """`seqlab up` on free ports in a private home, shared by the tests that need servers.

    Yields the environment a client of that stack runs with. `seqlab down` stops it at the
    end, by the PIDs `up` recorded; nothing else on the machine is touched.
    """
    home = tmp_path_factory.mktemp("stack") / "home"
    ports = {
        "--mlflow-port": free_port(),
        "--prefect-port": free_port(),
        "--ray-port": free_port(),
        "--dashboard-port": free_port(),
        "--ray-client-port": free_port(),
    }
    env = {"SEQLAB_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    clean = {k: v for k, v in os.environ.items() if k not in _SERVER_VARS}
    args = [item for pair in ports.items() for item in (pair[0], str(pair[1]))]
    started = subprocess.run(
        [*SEQLAB, "up", "--num-cpus", "2", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=400,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield {
            "home": home,
            "env": {**clean, **env},
            "ports": ports,
            "up": started,
            "mlflow": f"http://127.0.0.1:{ports['--mlflow-port']}",
            "prefect": f"http://127.0.0.1:{ports['--prefect-port']}",
        }
    finally:
        subprocess.run(
            [*SEQLAB, "down"], cwd=ROOT, env={**clean, **env}, capture_output=True, timeout=120
        )


_SERVER_VARS = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL", "SEQLAB_HOME")


@pytest.fixture(scope="session")
def served(team_stack: dict):
    """`seqlab serve` against the team stack, until the session ends (stopped by its PID)."""
    import json
    import signal
    import time
    import urllib.request

    log = open(team_stack["home"] / "serve.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [*SEQLAB, "serve"],
        cwd=ROOT,
        env=team_stack["env"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    request = urllib.request.Request(
        f"{team_stack['prefect']}/api/deployments/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    deployments: list[dict] = []
    deadline = time.monotonic() + 180
    while len(deployments) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(1)
        with urllib.request.urlopen(request, timeout=10) as response:
            deployments = json.loads(response.read())
    try:
        assert len(deployments) == 3, (team_stack["home"] / "serve.log").read_text()[-3000:]
        yield {**team_stack, "deployments": deployments, "serve": process}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


class Driver:
    """A `seqlab` CLI process in its own session, as a terminal's foreground job would be."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = foreground(list(args), env)
        self.printed: str | None = None

    def wait_for(self, done: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.process.poll() is None, self.output()[-4000:]
            assert time.monotonic() < deadline, "the study made no progress in time"
            time.sleep(0.5)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the process group, then wait for the driver to wind down."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=90)  # seqlab exits within 30 s of a Ctrl-C

    def kill(self) -> None:
        """SIGKILL the driver, its process group, and every process it started (Ray's)."""
        below = descendants(self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)

    def finish(self, timeout: float = 600) -> int:
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        """Everything the driver printed, once it has exited."""
        if self.process.poll() is None:
            return "(still running)"
        if self.printed is None:
            self.printed = self.process.stdout.read()
        return self.printed

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self.process.stdout.close()
