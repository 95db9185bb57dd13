"""`seqlab up --backend-store-uri postgresql://...`: the MLflow server on a real PostgreSQL.

A private PostgreSQL cluster is created for this module in a temporary directory: its own data
directory, its own socket directory, a free port on 127.0.0.1 and trust authentication for
loopback only. It is stopped at the end by the PID this module started; no system cluster,
`pg_ctlcluster` or service manager is involved.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, seqlab

from pipelines.ops import stack

pytestmark = pytest.mark.slow

ROLE = "seqlab"
DATABASE = "mlflow"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def _pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries Debian installed, or $SEQLAB_PG_BIN."""
    override = os.environ.get("SEQLAB_PG_BIN")
    if override:
        return Path(override) if (Path(override) / "initdb").is_file() else None
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


@dataclass(frozen=True)
class Cluster:
    """A running private PostgreSQL: where it listens, and the URI MLflow gets."""

    port: int
    pid: int
    log: Path

    @property
    def mlflow_uri(self) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def connect(self, dbname: str = DATABASE, user: str = ROLE) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, dbname=dbname, user=user, connect_timeout=2
        )


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run a command as the `postgres` user when we are root.

    initdb and postgres refuse to run as root. Switching user in Popen itself (rather than
    through `runuser`) keeps the PID we get the server's own, so we can stop it by PID.
    """
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` OS user to run PostgreSQL as")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _stop(process: subprocess.Popen) -> None:
    """Stop the postmaster we started: SIGINT, then SIGKILL if it is still there."""
    if process.poll() is not None:
        return
    # SIGINT is PostgreSQL's "fast" shutdown: it ends open sessions, where SIGTERM ("smart")
    # waits for every client (a lingering MLflow connection pool) to disconnect first.
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Cluster]:
    """A fresh PostgreSQL cluster with a `seqlab` role that owns an empty `mlflow` database."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql, or set SEQLAB_PG_BIN)"
        )
    pytest.importorskip("psycopg", reason="the postgres extra: pip install -e '.[postgres]'")
    as_postgres = _as_postgres()
    # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="seqlab-pg-"))
    if as_postgres:
        os.chown(base, as_postgres["user"], as_postgres["group"])
    data, sockets, log = base / "data", base / "sockets", base / "postgres.log"
    env = {"PATH": f"{pg_bin}:/usr/bin:/bin", "LC_ALL": "C", "HOME": str(base)}
    process: subprocess.Popen | None = None
    try:
        initdb = subprocess.run(
            [str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
            + ["-E", "UTF8", "--locale=C", "--no-sync"],
            env=env,
            cwd=base,
            capture_output=True,
            text=True,
            timeout=120,
            **as_postgres,
        )
        assert initdb.returncode == 0, initdb.stdout + initdb.stderr
        # Trust only the private socket and loopback; the server listens on nothing else.
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        sockets.mkdir(mode=0o700)
        if as_postgres:
            os.chown(sockets, as_postgres["user"], as_postgres["group"])
        port = free_port()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(pg_bin / "postgres"), "-D", str(data), "-p", str(port)]
                + ["-k", str(sockets), "-h", "127.0.0.1"]
                # A throwaway cluster: durability buys nothing and costs time on a small VM.
                + ["-c", "fsync=off", "-c", "synchronous_commit=off"]
                + ["-c", "full_page_writes=off"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=base,
                start_new_session=True,  # a Ctrl-C of pytest reaches the fixture, not the server
                **as_postgres,
            )
        cluster = Cluster(port=port, pid=process.pid, log=log)
        _wait_accepting(cluster, process)
        with cluster.connect(dbname="postgres", user="postgres") as admin:
            admin.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            admin.execute(f"CREATE ROLE {ROLE} LOGIN")
            admin.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        yield cluster
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(base, ignore_errors=True)


def _wait_accepting(cluster: Cluster, process: subprocess.Popen) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            tail = stack.log_tail(cluster.log)
            pytest.fail(f"postgres exited with {process.returncode}:\n{tail}")
        try:
            with cluster.connect(dbname="postgres", user="postgres"):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"postgres not accepting connections after {START_TIMEOUT_S:.0f}s:\n"
                    f"{stack.log_tail(cluster.log)}"
                )
            time.sleep(0.2)


def test_mlflow_server_keeps_runs_in_postgres_and_artifacts_under_home(
    postgres: Cluster, home: Path, tmp_path: Path
) -> None:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    port = free_port()
    up = seqlab(
        "up",
        *("--only", "mlflow", "--mlflow-port", str(port), "--timeout", "90"),
        *("--backend-store-uri", postgres.mlflow_uri),
        timeout=150,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = seqlab("status", "--json")
        assert status.returncode == 0, status.stderr
        mlflow_state = next(s for s in json.loads(status.stdout) if s["name"] == "mlflow")
        assert mlflow_state["healthy"], mlflow_state
        pid = mlflow_state["pid"]
        record = stack.read_records(home)["mlflow"]
        assert record.pid == pid
        assert postgres.mlflow_uri in record.command

        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        experiment_id = client.create_experiment("postgres-check")
        run = client.create_run(experiment_id, run_name="pg-run", tags={"kind": "trial"})
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            params=[Param("hidden", "64"), Param("cell", "lstm")],
            metrics=[
                Metric("val/loss", value, 1000 + step, step)
                for step, value in enumerate((0.9, 0.5, 0.25))
            ],
        )
        client.log_text(run_id, "written through the server\n", "notes/hello.txt")
        client.set_terminated(run_id, "FINISHED")

        with postgres.connect() as db:
            name, status_ = db.execute(
                "SELECT e.name, r.status FROM runs r "
                "JOIN experiments e ON e.experiment_id = r.experiment_id WHERE r.run_uuid = %s",
                (run_id,),
            ).fetchone()
            metrics = db.execute(
                "SELECT step, value FROM metrics WHERE run_uuid = %s AND key = %s ORDER BY step",
                (run_id, "val/loss"),
            ).fetchall()
            params = dict(
                db.execute("SELECT key, value FROM params WHERE run_uuid = %s", (run_id,))
            )
        assert (name, status_) == ("postgres-check", "FINISHED")
        assert metrics == [(0, 0.9), (1, 0.5), (2, 0.25)]
        assert params == {"hidden": "64", "cell": "lstm"}
        assert not (home / "mlflow.db").exists()  # no SQLite store was made on the side

        # Served artifacts: the client sent the file over HTTP, the server wrote it under home.
        stored = home / "mlartifacts" / experiment_id / run_id / "artifacts" / "notes/hello.txt"
        assert stored.read_text() == "written through the server\n"
        back = client.download_artifacts(run_id, "notes/hello.txt", str(tmp_path))
        assert Path(back).read_text() == stored.read_text()  # and serves it back
    finally:
        down = seqlab("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopped mlflow (pid {pid})" in down.stdout
    assert stack.process_started(pid) is None
    assert stack.read_records(home) == {}
