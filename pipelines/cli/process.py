"""The process-level tricks of `seqlab`: a quick exit, Prefect's server started early, Ctrl-C.

Each exists for a measured reason, given where it is defined.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPT_GRACE_S = 30.0  # after Ctrl-C, how long the study may take to wind down

# Code a KeyboardInterrupt must not be raised in: see `in_database`.
_DATABASE_LAYER = ("sqlalchemy.", "sqlite3.", "alembic.")


def freeze_at_exit() -> None:
    """Leave the objects alive at exit to the operating system, instead of collecting them.

    Why: with torch, Lightning, Ray, Prefect and MLflow loaded, CPython's collection at exit took
    seconds on 2 cores after `seqlab run` had printed its last line (`benchmarks/cli_exit.py`).
    Registered before those libraries register theirs, `gc.freeze` runs after their exit
    handlers (Prefect's server stopped, Ray shut down, MLflow flushed). The price: reference
    cycles among them are not finalized at exit, so seqlab writes and closes its files and ends
    its runs explicitly. Only the console script calls this: tests calling `main` keep the
    collector.
    """
    atexit.register(gc.freeze)


def start_embedded_prefect() -> Callable[[], None]:
    """Start Prefect's ephemeral API server now, in the background; return a wait for it.

    Why: a flow run starts that server anyway at its first API call, and waits for it (14 s on
    2 cores in a fresh SEQLAB_HOME, 6 s after). Started before the heavy imports, its start runs
    beside them, and the flow run finds it running: it is the one Prefect's own client uses
    (`SubprocessASGIServer`, one per process). With a Prefect server configured
    (PREFECT_API_URL, `seqlab up`), or the ephemeral API turned off, this starts nothing.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return lambda: None
    from prefect.server.api.server import SubprocessASGIServer

    failed: list[BaseException] = []

    def start() -> None:
        try:
            SubprocessASGIServer().start()
        except BaseException as err:  # raised where the flow would have met it
            failed.append(err)

    starting = threading.Thread(target=start, name="prefect-ephemeral-start", daemon=True)
    starting.start()

    def wait() -> None:
        starting.join()
        if failed:
            raise failed[0]

    return wait


def in_database(frame: FrameType | None) -> bool:
    """Whether `frame`, or a frame that called it, is in SQLAlchemy's or sqlite3's code.

    Why it matters: a KeyboardInterrupt raised there, in the middle of a write to MLflow's
    SQLite store, can leave that connection holding the database's write lock; every later
    write of the process (the study's runs ended KILLED) then waits out SQLite's busy timeout
    (20 s, MLflow's) and fails with "database is locked": 38 of 60 interrupts of a loop of
    MLflow writes did (`tests/unit/test_interrupt.py` interrupts such a loop).
    """
    while frame is not None:
        if f"{frame.f_globals.get('__name__', '')}.".startswith(_DATABASE_LAYER):
            return True
        frame = frame.f_back
    return False


def once_outside_database(then: Callable[[FrameType], None]) -> None:
    """Call `then` with the first frame of this thread that runs outside the database layer.

    Why a profile function and not Ctrl-C sent again a moment later: the signal is handled
    when the interpreter next runs Python code, and in a loop of writes that is almost always
    SQLAlchemy's code that called SQLite (where the time goes), so a Ctrl-C sent again meets
    the database again. The profile function sees each call and return; it is this thread's
    only while a Ctrl-C waits, and what `then` raises is raised in the frame it is given.
    """
    before = sys.getprofile()

    def watch(frame: FrameType, event: str, arg: object) -> None:
        if in_database(frame):
            return
        sys.setprofile(before)
        then(frame)

    sys.setprofile(watch)


@contextmanager
def interruptible(message: str, embedded: bool) -> Iterator[None]:
    """Ctrl-C stops the study: a Tuner that is fitting stops as Tune's own Ctrl-C stops it
    (`tuning.stop_tuning`: its state saved once more, then StudyInterrupted); anywhere else it
    raises KeyboardInterrupt at once, or, in the middle of a database write, once the write is
    done (`in_database`). A second Ctrl-C raises KeyboardInterrupt wherever the
    study is. With `embedded`, the process also exits 130, printing `message`: as soon as the
    study has closed (`tuning.INTERRUPTED_STUDY_CLOSED`) if Prefect's API server no longer
    answers, at once on a second Ctrl-C, and within `INTERRUPT_GRACE_S` in any case.

    Why `os._exit`: Ctrl-C stops Prefect's ephemeral API server too (it is in the foreground
    process group), and Prefect would then retry for minutes to report the crashed flow run to
    it, printing each failure; the study's own clean-up (Tune's last save, its MLflow runs
    ended KILLED, Ray stopped) takes seconds.
    """

    def leave() -> None:
        from pipelines.study import parent

        parent.end_open_runs("KILLED")  # those the study could not end before it had to go
        print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)

    def later() -> None:
        import pipelines.study.flows  # noqa: F401  (the flow and every phase)
        from pipelines import study

        deadline = time.monotonic() + INTERRUPT_GRACE_S
        if study.tuning.INTERRUPTED_STUDY_CLOSED.wait(INTERRUPT_GRACE_S) and not _prefect_answers():
            leave()  # nothing left to wait for: Prefect cannot record the crash anywhere
        time.sleep(max(0.0, deadline - time.monotonic()))
        leave()

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if in_database(frame):  # once the write is done: see `in_database`
            once_outside_database(lambda outside: on_interrupt(signum, outside))
            return
        import pipelines.study.flows  # noqa: F401  (the flow and every phase)
        from pipelines import study

        study.tuning.CTRL_C.set()
        stopping = study.tuning.stop_tuning(frame)  # Tune's handler sets SIGINT's back to this one
        if embedded:
            signal.signal(signal.SIGINT, lambda *_: leave())
            threading.Thread(target=later, daemon=True).start()
        else:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if not stopping:
            raise KeyboardInterrupt

    from pipelines.study import tuning

    tuning.CTRL_C.clear()  # a study run before in this process (a test's) may have set it
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _prefect_answers() -> bool:
    """Whether the ephemeral Prefect API server of this process still accepts connections.

    After Ctrl-C its process can live on for a while, shutting down, with its socket closed.
    """
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if server.port is None:
        return False
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    except OSError:
        return False
    return True
