"""What `seqlab up` wrote about the servers it started, one JSON record a service under
`$SEQLAB_HOME/stack`, and whether each still runs.

Settings read it to find a running stack (`settings.tracking_uri`), and the stack writes it
(`pipelines.ops.stack`); it imports neither, so neither imports the other back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

SERVICES = ("mlflow", "prefect", "ray")


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


def stack_dir(home: Path) -> Path:
    return home / "stack"


def process_started(pid: int) -> str | None:
    """The kernel's start time of `pid`, or None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no procfs: fall back to "some process has this PID"
        return "" if pid_exists(pid) else None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie has exited; only its parent has not collected it
    return fields[19]  # field 22 of stat(5), counted after the command name


def pid_exists(pid: int, kill: Callable[[int, int], None] = os.kill) -> bool:
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


def write_record(home: Path, record: Record) -> None:
    path = stack_dir(home) / f"{record.name}.json"
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(asdict(record), indent=2))
    partial.replace(path)  # a reader sees the old record or the new one, never half of one


def forget(home: Path, name: str) -> None:
    (stack_dir(home) / f"{name}.json").unlink(missing_ok=True)
