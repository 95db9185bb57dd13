"""A mistake in how `seqlab` is called is one line on stderr and exit status 2, no traceback."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pipelines.cli import main
from tests.conftest import seqlab

# (class of mistake, argv, what the one line says)
USAGE = [
    ("unknown command", ["rnu"], "No such command 'rnu'. Did you mean 'run'? See 'seqlab --help'."),
    ("no command", [], "missing command. See 'seqlab --help'."),
    ("no data command", ["data"], "missing command. See 'seqlab data --help'."),
    (
        "unknown option",
        ["run", "experiments/smoke.yaml", "--dryrun"],
        "No such option '--dryrun'. Did you mean '--dry-run'? See 'seqlab run --help'.",
    ),
    ("missing argument", ["run"], "Missing argument 'SPEC'. See 'seqlab run --help'."),
    (
        "missing task",
        ["data", "prepare"],
        "Missing argument 'TASK'. See 'seqlab data prepare --help'.",
    ),
    (
        "non-integer --top-k",
        ["sample", "models:/m@champion", "--top-k", "many"],
        "Invalid value for '--top-k': 'many' is not a valid integer. See 'seqlab sample --help'.",
    ),
    (
        "non-number --temperature",
        ["sample", "models:/m@champion", "--temperature", "hot"],
        "Invalid value for '--temperature': 'hot' is not a valid float.",
    ),
    ("a flag given a value", ["tasks", "--json=yes"], "Option '--json' does not take a value."),
    (
        "--set without =",
        ["run", "experiments/smoke.yaml", "--set", "seeds"],
        "--set seeds: expected KEY=VALUE, e.g. seeds=2",
    ),
    (
        "data --set without =",
        ["data", "prepare", "adding", "--set", "length"],
        "--set length: task.options: expected KEY=VALUE, e.g. length=50",
    ),
]


@pytest.mark.parametrize(("argv", "says"), [u[1:] for u in USAGE], ids=[u[0] for u in USAGE])
def test_a_usage_mistake_is_one_line_and_exit_2(
    argv: list[str], says: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"seqlab: error: {says}")
    assert "Traceback" not in captured.err and "Usage:" not in captured.err
    assert not home.exists()  # refused before anything was written


def test_a_usage_mistake_in_a_real_process_has_no_traceback(home: Path) -> None:
    result = seqlab("sample", "models:/m@champion", "--top-k", "many")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "seqlab: error: Invalid value for '--top-k': 'many' is not a valid integer. "
        "See 'seqlab sample --help'."
    ]


def test_help_is_quick_and_lists_every_command() -> None:
    start = time.perf_counter()
    result = seqlab("--help")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0 and result.stderr == ""
    listed = re.findall(r"^  (\w+)  ", result.stdout, flags=re.MULTILINE)
    assert listed == [
        "run",
        "validate",
        "report",
        "rerun",
        "resume",
        "tasks",
        "models",
        "sample",
        "data",
        "up",
        "down",
        "serve",
        "status",
    ]
    assert elapsed < 5.0, f"seqlab --help took {elapsed:.1f} s"  # ~0.2 s; a loaded machine


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        (["run", "--help"], ["--dry-run", "--set KEY=VALUE"]),
        (["data", "prepare", "--help"], ["--set KEY=VALUE", "--seed TEXT", "--json"]),
        (["up", "--help"], ["--mlflow-port INTEGER", "--ray-client-port INTEGER", "--only TEXT"]),
        (["sample", "--help"], ["--top-k INTEGER", "--input TEXT", "--beam INTEGER"]),
    ],
)
def test_each_command_has_its_help(
    argv: list[str], options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: seqlab {' '.join(argv[:-1])} [OPTIONS]")
    for option in options:
        assert option in out, option
