"""Ctrl-C in the middle of an MLflow write: the interrupt waits for the write, and the process
can still write to its store afterwards (the study's runs end KILLED)."""

from __future__ import annotations

import os
import random
import signal
import threading
import traceback
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines.cli import process


def _interrupt_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_during_mlflow_writes_is_raised_outside_the_database_layer(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("interrupted")).info.run_id
    draw = random.Random(0)
    for attempt in range(20):
        timer = _interrupt_after(draw.uniform(0.01, 0.2))
        writes = 0
        try:
            with process.interruptible("interrupted", embedded=False):
                while True:
                    client.set_tag(run_id, f"tag{writes % 5}", str(writes))
                    writes += 1
        except KeyboardInterrupt as err:
            where = [
                frame.f_globals.get("__name__", "")
                for frame, _ in traceback.walk_tb(err.__traceback__)
            ]
        finally:
            timer.cancel()
        assert not [name for name in where if name.startswith(("sqlalchemy", "sqlite3"))], (
            attempt,
            where,
        )
        # The write that follows an interrupt finds the database unlocked: a lock left behind
        # fails it after SQLite's busy timeout with "database is locked".
        client.set_tag(run_id, "after", str(attempt))
    assert client.get_run(run_id).data.tags["after"] == "19"


def test_in_database_sees_a_caller_in_sqlalchemy() -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine("sqlite://")
    seen: list[bool] = []
    sqlalchemy.event.listen(
        engine, "before_cursor_execute", lambda *_: seen.append(process.in_database(_frame()))
    )
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("select 1"))
    assert seen == [True]
    assert not process.in_database(_frame())


def _frame():
    import sys

    return sys._getframe(1)
