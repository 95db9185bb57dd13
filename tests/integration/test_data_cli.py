"""`seqlab tasks` and `seqlab data prepare`, and logging a dataset to MLflow.

Each CLI run that starts Prefect costs tens of seconds here, so the few that must are run as two
concurrent lanes, once for the module. Bad input is refused before Prefect starts, so those cases
call the CLI's `main` in-process; one runs as a real subprocess to show what a user sees.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipelines.cli.app import main
from seqmodels.tasks import TASKS
from tests.conftest import ROOT, SEQLAB, seqlab

ADDING = ["data", "prepare", "adding", "--set", "length=12", "--set", "n_train=50"]
SMALL = ["--set", "n_val=20", "--set", "n_test=20"]


def _env(home: Path) -> dict[str, str]:
    """The embedded default in a private store, as the `home` fixture sets it up."""
    cleared = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL", "PREFECT_HOME")
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env.pop("PREFECT_LOCAL_STORAGE_PATH", None)
    # Two fresh ephemeral Prefect servers starting at once on a busy 2-core machine can take
    # longer than Prefect's default of 20 s to answer.
    return {
        **env,
        "SEQLAB_HOME": str(home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEQLAB, *args], cwd=ROOT, env=_env(home), capture_output=True, text=True, timeout=600
    )


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def lanes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two concurrent lanes of CLI runs, each in its own store.

    Lane a: prepare, record the files' mtimes, prepare again with --json (a cache hit).
    Lane b: a changed option; then a JSONL file that only the generator can refuse.
    """
    a, b = tmp_path_factory.mktemp("a") / "home", tmp_path_factory.mktemp("b") / "home"
    few = tmp_path_factory.mktemp("files") / "few.jsonl"
    few.write_text('{"source": "ab", "target": "ba"}\n{"source": "cd", "target": "dc"}\n')

    def lane_a() -> dict:
        first = _run(*ADDING, *SMALL, home=a)
        files = _mtimes(Path(first.stdout.split("uri:", 1)[1].split()[0])) if first.stdout else {}
        return {"first": first, "mtimes": files, "second": _run(*ADDING, *SMALL, "--json", home=a)}

    def lane_b() -> dict:
        # Both commands in one process, so that the imports and Prefect start once for both:
        # stdout is the first one's; stderr the second one's, then the exit codes as JSON.
        argvs = [
            [*ADDING[:-1], "n_train=51", *SMALL],
            ["data", "prepare", "pairs_jsonl", "--set", f"path={few}"],
        ]
        code = (
            "import json, sys; from pipelines.cli.app import main; "
            "codes = [main(argv) for argv in json.loads(sys.argv[1])]; "
            "print(json.dumps(codes), file=sys.stderr)"
        )
        both = subprocess.run(
            [sys.executable, "-c", code, json.dumps(argvs)],
            cwd=ROOT,
            env=_env(b),
            capture_output=True,
            text=True,
            timeout=600,
        )
        *lines, codes = both.stderr.splitlines() or [both.stderr]
        return {"both": both, "codes": json.loads(codes), "too_few_err": lines}

    with ThreadPoolExecutor(2) as pool:
        fa, fb = pool.submit(lane_a), pool.submit(lane_b)
        return {**fa.result(), **fb.result(), "a": a, "b": b, "few": few}


def _field(stdout: str, name: str) -> str:
    return stdout.split(f"{name}:", 1)[1].split()[0]


def test_prepare_prints_the_reference_and_writes_the_store(lanes: dict) -> None:
    first = lanes["first"]
    assert first.returncode == 0, first.stderr
    uri, digest = Path(_field(first.stdout, "uri")), _field(first.stdout, "digest")
    assert uri == lanes["a"] / "data" / f"adding-{digest}"
    assert sorted(p.name for p in uri.iterdir()) == [
        "card.json",
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    assert "train 50, val 20, test 20" in first.stdout
    assert "metric:   mse" in first.stdout and "baseline: 0.1667" in first.stdout
    assert "Traceback" not in first.stderr
    assert not [p for p in uri.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_second_prepare_is_a_cache_hit_that_rewrites_nothing(lanes: dict) -> None:
    second = lanes["second"]
    assert second.returncode == 0, second.stderr
    ref = json.loads(second.stdout)
    assert ref["digest"] == _field(lanes["first"].stdout, "digest")
    assert ref["cached"] is True and ref["sizes"] == {"train": 50, "val": 20, "test": 20}
    assert ref["baseline_note"].startswith("predict the mean 1")
    assert _mtimes(Path(ref["uri"])) == lanes["mtimes"]
    assert len(list((lanes["a"] / "data").iterdir())) == 1
    # Answered from the store: only the first call ran a flow (Prefect's start is the cost).
    with sqlite3.connect(lanes["a"] / "prefect" / "prefect.db") as db:
        assert db.execute("select count(*) from flow_run").fetchone() == (1,)


def test_a_cache_hit_loads_neither_torch_nor_the_orchestration(lanes: dict) -> None:
    """Answering from the store needs the task's options checked and the card read: no torch
    (the task section is validated without the networks), no Prefect, Ray or MLflow."""
    code = (
        "import json, sys; from pipelines.cli import main; rc = main(json.loads(sys.argv[1])); "
        "heavy = {'torch', 'lightning', 'prefect', 'ray', 'mlflow'} & set(sys.modules); "
        "print('loaded:', json.dumps([rc, sorted(heavy)]), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps([*ADDING, *SMALL, "--json"])],
        cwd=ROOT,
        env=_env(lanes["a"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("loaded: ")]
    rc, heavy = json.loads(line.removeprefix("loaded: "))
    assert rc == 0 and json.loads(done.stdout)["cached"] is True, done.stderr
    assert heavy == []


def test_a_changed_option_gives_a_new_digest(lanes: dict) -> None:
    both = lanes["both"]
    assert lanes["codes"][0] == 0, both.stderr
    assert _field(both.stdout, "digest") != _field(lanes["first"].stdout, "digest")
    assert "train 51" in both.stdout


def test_data_only_the_generator_can_refuse_is_one_line(lanes: dict) -> None:
    assert lanes["codes"][1] == 2
    assert lanes["too_few_err"] == [
        f"seqlab: error: {lanes['few']}: task.options.path: "
        "2 pairs are too few to split into train, val and test"
    ]
    assert not list((lanes["b"] / "data").glob("pairs_jsonl*"))
    assert not [p for p in (lanes["b"] / "data").iterdir() if p.name.startswith(".")]


def test_tasks_lists_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in TASKS.names():
        assert f"\n{name} (" in f"\n{out}"
    assert "  baseline: predict the mean 1: MSE 1/6" in out
    assert "    length: int = 30" in out
    assert "    path: str = required" in out


def test_tasks_json_is_complete_and_imports_no_orchestration() -> None:
    code = (
        "import sys; from pipelines.cli.app import main; rc = main(['tasks', '--json']); "
        "heavy = {'ray', 'prefect', 'mlflow'} & set(sys.modules); "
        "sys.exit(f'imported {heavy}' if heavy else rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == TASKS.names()
    adding = rows[0]
    assert adding["family"] == "regression" and adding["metric"] == "mse"
    assert adding["options"][0] == {
        "name": "length",
        "type": "int",
        "default": 30,
        "required": False,
    }
    for row in rows:
        assert row["baseline_note"] and row["metrics"][0] == row["metric"] and row["options"]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Bad user files, outside the store."""
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (folder / "words.csv").write_text("a,b\n1,2\n3,x\n")
    (folder / "nan.csv").write_text("a\n1.0\nnan\n2.0\n")
    (folder / "pairs.jsonl").write_text('{"source": "ab", "target": "ba"}\n{"source": "cd"}\n')
    return folder


# (class of mistake, arguments after `data prepare`, the input and field named, message fragment)
BAD = [
    ("unknown task", ["addng"], "addng: task.name", "unknown task 'addng'; choose from: adding"),
    ("--set without =", ["adding", "--set", "length"], "--set length: task.options", "KEY=VALUE"),
    (
        "unknown option",
        ["adding", "--set", "lenght=5"],
        "--set lenght=5: task.options.lenght",
        "unknown key",
    ),
    (
        "wrong type",
        ["adding", "--set", "length=long"],
        "--set length=long: task.options.length",
        "valid integer",
    ),
    (
        "out of range",
        ["adding", "--set", "length=1"],
        "--set length=1: task.options.length",
        "must be >= 2",
    ),
    ("bad seed", ["adding", "--seed", "-1"], "--seed -1: task.seed", "greater than or equal to 0"),
    ("no path", ["text"], "text: task.options.path", "required"),
    ("missing file", ["text", "--set", "path={f}/nope.txt"], "{f}/nope.txt", "no such file"),
    ("empty file", ["text", "--set", "path={f}/empty.txt"], "{f}/empty.txt", "empty file"),
    ("not UTF-8", ["text", "--set", "path={f}/latin1.txt"], "{f}/latin1.txt", "not UTF-8"),
    (
        "CSV text",
        ["series_csv", "--set", "path={f}/words.csv"],
        "{f}/words.csv: task.options.path",
        "row 3, column 'b': 'x' is not a number",
    ),
    (
        "CSV NaN",
        ["series_csv", "--set", "path={f}/nan.csv"],
        "{f}/nan.csv: task.options.path",
        "row 3, column 'a': NaN",
    ),
    (
        "JSONL without target",
        ["pairs_jsonl", "--set", "path={f}/pairs.jsonl"],
        "{f}/pairs.jsonl: task.options.path",
        "line 2: no 'target'",
    ),
]


@pytest.mark.parametrize(
    ("args", "named", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_is_one_line_before_anything_starts(
    args: list[str],
    named: str,
    fragment: str,
    home: Path,
    files: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["data", "prepare", *(a.format(f=files) for a in args)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"seqlab: error: {named.format(f=files)}")
    assert fragment in line
    assert not home.exists()  # nothing written, Prefect never started (it would make prefect/)


@pytest.mark.parametrize(
    ("store", "fragment"),
    [
        ("nosuch://bucket/seqlab", "Protocol not known: nosuch"),
        ("gs://bucket/seqlab", "gcsfs"),  # its backend is not installed here
    ],
)
@pytest.mark.parametrize("command", ["data", "run"])
def test_a_store_url_that_cannot_be_used_is_one_line(
    store: str,
    fragment: str,
    command: str,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if store.startswith("gs://") and importlib.util.find_spec("gcsfs"):
        pytest.skip("gcsfs is installed here")
    monkeypatch.setenv("SEQLAB_STORE", store)
    argv = ["data", "prepare", "adding"] if command == "data" else ["run", "experiments/smoke.yaml"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(f"seqlab: error: SEQLAB_STORE: {store}: ") and fragment in line
    assert captured.out == "" and not home.exists()


def test_a_store_that_holds_data_but_not_studies_refuses_a_study(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """fsspec's in-memory store serves datasets; Ray Tune, which keeps a study's state beside
    them, reaches object stores through pyarrow, which has no such filesystem."""
    monkeypatch.setenv("SEQLAB_STORE", "memory://seqlab")
    for argv in (["run", "experiments/smoke.yaml"], ["resume", "smoke"]):
        assert main(argv) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("seqlab: error: SEQLAB_STORE: memory://seqlab: Ray Tune cannot")
    assert not home.exists()


def test_bad_input_in_a_real_process_has_no_traceback(home: Path, files: Path) -> None:
    result = seqlab("data", "prepare", "series_csv", "--set", f"path={files}/words.csv")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"seqlab: error: {files}/words.csv: task.options.path: "
        "row 3, column 'b': 'x' is not a number"
    ]
    assert not home.exists()


def test_log_dataset_records_the_digest_on_the_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from pipelines.data.store import prepare
    from pipelines.tracking.runs import log_dataset

    ref = prepare("adding", {"length": 6, "n_train": 8, "n_val": 4, "n_test": 4}, 0, tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("data", artifact_location=(tmp_path / "a").as_uri())
    run_id = client.create_run(experiment).info.run_id
    log_dataset(run_id, ref, mlflow=client)
    (logged,) = client.get_run(run_id).inputs.dataset_inputs
    assert logged.dataset.name == "adding"
    assert logged.dataset.digest == ref.digest
    assert json.loads(logged.dataset.source) == {"uri": ref.uri}
    assert logged.dataset.source_type == "local"
    assert json.loads(logged.dataset.profile)["sizes"] == {"train": 8, "val": 4, "test": 4}
    assert {t.key: t.value for t in logged.tags} == {"mlflow.data.context": "training"}
