"""The `seqlab` command. Heavy libraries load only inside the command that needs them."""

from __future__ import annotations

import argparse
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
from typing import TYPE_CHECKING, NoReturn

from pipelines.ops import settings, stack

if TYPE_CHECKING:
    from pipelines.spec import StudySpec

EXIT_USAGE = 2  # a user's mistake: bad spec, bad data, bad arguments


def entry() -> NoReturn:
    """The `seqlab` command (and `python -m pipelines.cli.app`): `main`, then a quick exit.

    A study's process holds millions of objects once torch, Lightning, Ray, Prefect and MLflow
    are loaded. At exit CPython collects garbage over all of them, and on 2 cores that took 5-7 s
    after `seqlab run` had printed its last line (`benchmarks/cli_exit.py`). Registered before
    those libraries register theirs, `gc.freeze` runs after their exit handlers (Prefect's
    server stopped, Ray shut down, MLflow's writers flushed), and what it freezes is left to the
    operating system instead of being traversed. The price: garbage in reference cycles among
    them is not finalized at exit, so nothing of seqlab's may rely on that (its files are
    written and closed, and its runs ended, explicitly). Tests that call `main` in-process keep
    the collector.
    """
    atexit.register(gc.freeze)
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seqlab",
        description="Comparison studies of recurrent sequence models (Deep Learning, chapter 10).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run a study spec end to end")
    run.add_argument("spec", help="path to a study spec (YAML), e.g. experiments/quickstart.yaml")
    run.add_argument(
        "--dry-run", action="store_true", help="validate the spec and show the plan; start nothing"
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field, repeatable; dotted keys, YAML values: "
        "search.trials_per_variant=5, seeds=2, fixed.max_epochs=3",
    )
    check = commands.add_parser("validate", help="validate study specs without running them")
    check.add_argument("specs", nargs="+", help="paths to study specs (YAML)")
    rebuild = commands.add_parser(
        "report", help="rebuild a past study's report from MLflow, with no retraining"
    )
    rebuild.add_argument("study", help="the study's name (its MLflow experiment)")
    rebuild.add_argument("--run", help="a parent run id (default: the study's newest finished run)")
    rebuild.add_argument(
        "--out", help="folder for report.md and plots/ (default: $SEQLAB_HOME/reports/STUDY)"
    )
    again = commands.add_parser(
        "rerun",
        help="retrain one trial from its MLflow run and compare its losses with the original's",
    )
    again.add_argument("run_id", help="a trial's or repeat's MLflow run id (a child run)")
    carry_on = commands.add_parser(
        "resume",
        help="continue an interrupted study: no finished trial runs again, no run is duplicated",
    )
    carry_on.add_argument("study", help="the study's name (its MLflow experiment)")
    carry_on.add_argument(
        "--run", help="the parent run to resume (default: the study's newest unfinished one)"
    )
    carry_on.add_argument(
        "--force",
        action="store_true",
        help="resume a run still marked RUNNING whose driver ran on another host",
    )
    listing = commands.add_parser(
        "tasks", help="list the tasks: family, metrics, baseline and options"
    )
    listing.add_argument("--json", action="store_true", help="print a machine-readable list")
    zoo = commands.add_parser(
        "models", help="list the cells and architectures a variant can name, with book references"
    )
    zoo.add_argument("--json", action="store_true", help="print a machine-readable list")
    draw = commands.add_parser(
        "sample",
        help="generate from a registered model (a classifier or regressor predicts instead)",
    )
    draw.add_argument("model_uri", help="e.g. models:/smoke-lstm@champion or runs:/RUN_ID/model")
    draw.add_argument(
        "--stop", help="how a sequence ends: eos, bernoulli or length (default: the model's own)"
    )
    draw.add_argument("--temperature", type=float, help="0: greedy (default: the model's)")
    draw.add_argument("--top-k", type=int, help="draw from the k likeliest tokens (0: all)")
    draw.add_argument("--max-length", type=int, help="longest sequence drawn, in tokens")
    draw.add_argument("--seed", type=int, help="seed of the draws (default: 0)")
    draw.add_argument(
        "--beam",
        type=int,
        help="an encoder-decoder's most likely target under a beam this wide (default: 1, none)",
    )
    draw.add_argument(
        "--input",
        dest="inputs",
        action="append",
        metavar="TEXT",
        help="a source or prompt, repeatable; for a classifier or regressor one JSON array of "
        "x, or {x, x_parent} (default: the model's input example, from its test split)",
    )
    data = commands.add_parser("data", help="prepare datasets in the store")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    prepare = data_commands.add_parser(
        "prepare",
        help="prepare a task's dataset in the store (cached by content)",
        description="Prepare a task's dataset in the data store: $SEQLAB_STORE (a directory or "
        "an fsspec URL such as s3://bucket/seqlab) or else $SEQLAB_HOME.",
    )
    prepare.add_argument("task", help="a task name, e.g. adding (`seqlab tasks` lists them)")
    prepare.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task option, repeatable; the value reads as YAML: length=50, permuted=true",
    )
    prepare.add_argument("--seed", default="0", help="seed of data generation (default: 0)")
    prepare.add_argument("--json", action="store_true", help="print the reference as JSON")
    start = commands.add_parser(
        "up",
        help="start the team stack on this machine: MLflow server, Prefect server, Ray head",
        description="Start an MLflow tracking server, a Prefect server with its UI and a Ray head "
        "with its dashboard, each health-checked, with PIDs and logs under $SEQLAB_HOME/stack. "
        "While they run, `seqlab run` uses them.",
    )
    start.add_argument(
        "--host", default="127.0.0.1", help="interface every service binds (default: 127.0.0.1)"
    )
    defaults = stack.StackConfig()
    for option, default, what in (
        ("--mlflow-port", defaults.mlflow_port, "MLflow tracking server"),
        ("--prefect-port", defaults.prefect_port, "Prefect server and UI"),
        ("--ray-port", defaults.ray_port, "Ray head (GCS)"),
        ("--dashboard-port", defaults.dashboard_port, "Ray dashboard"),
        ("--ray-client-port", defaults.ray_client_port, "Ray client server"),
    ):
        start.add_argument(option, type=int, default=default, help=f"{what} (default: {default})")
    start.add_argument(
        "--backend-store-uri",
        help="MLflow's store, e.g. postgresql://user@127.0.0.1:5432/mlflow "
        "(default: SQLite under $SEQLAB_HOME)",
    )
    start.add_argument("--num-cpus", type=int, help="CPUs the Ray head offers (default: all)")
    start.add_argument("--num-gpus", type=int, help="GPUs the Ray head offers (default: detected)")
    start.add_argument(
        "--prefect-auth",
        action="store_true",
        help="protect the Prefect API with the 'user:password' in $PREFECT_API_AUTH_STRING",
    )
    start.add_argument(
        "--timeout",
        type=float,
        default=stack.HEALTH_TIMEOUT_S,
        help=f"seconds each service gets to become healthy (default: {stack.HEALTH_TIMEOUT_S:.0f})",
    )
    start.add_argument(
        "--only",
        help="a comma-separated subset of mlflow,prefect,ray to start (default: all three)",
    )
    commands.add_parser("down", help="stop the services `seqlab up` started, by PID")
    serving = commands.add_parser(
        "serve",
        help="serve the Prefect deployments run-study, prepare-data and report (Ctrl-C stops)",
        description="Serve seqlab's flows as Prefect deployments, so that runs started from the "
        "Prefect UI or `prefect deployment run` execute here, on the configured Ray cluster. "
        "Needs a Prefect server: `seqlab up`, or PREFECT_API_URL.",
    )
    serving.add_argument("--limit", type=int, help="flow runs at most at once (default: no limit)")
    state = commands.add_parser("status", help="each stack service's URL and health")
    state.add_argument("--json", action="store_true", help="print a machine-readable list")
    state.add_argument(
        "--env",
        action="store_true",
        help="print `export` lines that point other tools (mlflow, prefect, ray) at the stack",
    )
    args = parser.parse_args(argv)
    handlers = {
        "up": _up,
        "serve": _serve,
        "down": _down,
        "status": _status,
        "run": _run,
        "validate": _validate,
        "report": _report,
        "rerun": _rerun,
        "resume": _resume,
        "tasks": _tasks,
        "models": _models,
        "sample": _sample,
        "data": _data,
    }
    return handlers[args.command](args)


def _load(path: str, overrides: list[str] | None = None):
    """The validated spec, or None after printing the one-line error.

    `overrides` are `--set KEY=VALUE` items; a mistake in one is named by the item.
    """
    from pipelines.spec import SpecError, load_spec

    values: dict[str, object] = {}
    for item in overrides or []:
        key, sep, text = item.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError("expected KEY=VALUE, e.g. seeds=2")
            values[key.strip()] = _yaml_value(text)
        except ValueError as err:
            print(f"seqlab: error: --set {item}: {err}", file=sys.stderr)
            return None
    try:
        return load_spec(path, values)
    except SpecError as err:
        print(f"seqlab: error: {err}", file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    specs = [_load(path) for path in args.specs]
    for path, spec in zip(args.specs, specs, strict=True):
        if spec is not None:
            print(f"{path}: ok ({spec.name}, {len(spec.variants)} variants)")
    return 0 if all(specs) else EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    spec = _load(args.spec, args.overrides)
    if spec is None or not _store_usable(study=True):
        return EXIT_USAGE  # before anything is started or written
    variants = ", ".join(spec.variants)
    trials = spec.search.trials_per_variant
    home, data = str(settings.seqlab_home()), settings.data_store()
    print(
        f"study {spec.name}: task {spec.task.name}, variants {variants}, "
        f"{trials} trials each, home {home}" + (f", data {data}" if data != home else ""),
        flush=True,
    )
    if args.dry_run:
        print("dry run: the spec is valid; nothing was started")
        return 0
    settings.configure_environment()
    settings.quiet_known_warnings()
    prefect_ready = _start_embedded_prefect()
    import pipelines.study.flows  # noqa: F401  (timed here: the heavy imports, torch, ray, ...)
    from pipelines import tracking

    imported = time.perf_counter()
    problem = tracking.artifact_access_problem(tracking.client(), spec.name)
    if problem:
        prefect_ready()  # then Prefect's exit handler stops the server it started
        print(f"seqlab: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return _study(spec, args.spec, None, started, imported, prefect_ready)


def _start_embedded_prefect() -> Callable[[], None]:
    """Start Prefect's ephemeral API server now, in the background; return a wait for it.

    A flow run starts that server anyway, at its first call to Prefect's API, and waits for it:
    14 s on 2 cores in a fresh SEQLAB_HOME, where it creates and migrates its database, 6 s
    after. Started before the heavy imports, its start runs beside them. The server is the
    one Prefect's own client uses (`SubprocessASGIServer`, one per process), so the flow run
    finds it running. With a Prefect server configured (PREFECT_API_URL, `seqlab up`), or the
    ephemeral API turned off, this starts nothing.
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


def _study(
    spec: StudySpec,
    source: str,
    resume_run_id: str | None,
    started: float,
    imported: float,
    prefect_ready: Callable[[], None],
) -> int:
    """Run (or resume) the study's flow and print its table, timings and where to browse it."""
    from pipelines.study.flows import run_study

    called_at = time.time()
    message = (
        f"seqlab: interrupted: study {spec.name!r}; its runs end KILLED. "
        f"Continue it with: seqlab resume {spec.name}"
    )
    try:
        with _interruptible(message, embedded=not settings.prefect_api_url()):
            prefect_ready()
            result = run_study(spec, source=source, resume_run_id=resume_run_id)
    except BaseException as err:
        if not _interrupted(err):
            raise
        print(message, file=sys.stderr)
        return 130
    total = time.perf_counter() - started
    print()
    print(result.table)
    phases = {
        "imports": imported - started,
        "prefect_start": result.began_at - called_at,
        **result.phases,
    }
    cpus = None if settings.ray_address() else os.cpu_count()  # flows.ray_session's local Ray
    for line in time_summary(phases, total, result.train_seconds, spec.resources.cpu, cpus):
        print(line)
    print(f"MLflow parent run {result.parent_run_id} in experiment {spec.name!r}. To browse it:")
    for line in browse_lines(settings.tracking_uri(), result.experiment_id, result.parent_run_id):
        print(f"  {line}")
    return _left_out(spec, result.left_out)


TRAINING_PHASES = ("trials", "repeats")  # the phases in which Tune runs trials (flows.run_study)


def time_summary(
    phases: dict[str, float],
    total: float,
    train_seconds: float,
    cpus_per_trial: float,
    cpus: int | None,
) -> list[str]:
    """The study's timing lines: each phase's wall seconds, then what training used of them.

    `train_seconds` sums every trial's and repeat's own training time; trials run in parallel,
    so it can exceed the wall time, and a difference of the two says nothing. What it says is
    how many trials ran at once on average, and (with the `cpus` of the local Ray; None on a
    cluster, whose size is not known here) the share of the CPU-seconds of the training phases
    that trials held: train_seconds x cpus_per_trial / (their wall time x cpus).
    """
    lines = [
        "time: "
        + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items())
        + f"; total {total:.1f}s"
    ]
    wall = sum(phases.get(name, 0.0) for name in TRAINING_PHASES)
    if wall <= 0:
        return lines
    used = f"training {train_seconds:.1f}s summed over trials and repeats, in {wall:.1f}s of wall"
    used += f" time: on average {train_seconds / wall:.2f} trials at a time"
    if cpus:
        share = training_share(train_seconds, wall, cpus_per_trial, cpus)
        used += (
            f", holding {share:.0%} of the {wall * cpus:.1f} CPU-seconds of {cpus} CPUs "
            f"({cpus_per_trial:g} per trial)"
        )
    return [*lines, used]


def training_share(
    train_seconds: float, wall_seconds: float, cpus_per_trial: float, cpus: float
) -> float:
    """The share of `cpus` x `wall_seconds` CPU-seconds that trials reserved while training."""
    return train_seconds * cpus_per_trial / (wall_seconds * cpus)


def _left_out(spec: StudySpec, left_out: dict[str, str]) -> int:
    """The study's exit status: 1, with one line on stderr, when it went on without a variant.

    The report, printed above, says why for each; the line says which, in brief, and where the
    tracebacks of failed trials are.
    """
    if not left_out:
        return 0
    from pipelines.study.failures import log_path

    which = ", ".join(f"{v} ({why.partition(':')[0]})" for v, why in left_out.items())
    if len(left_out) == len(spec.variants):
        what = f"every variant failed or diverged, no result: {which}"
    else:
        what = (
            f"{len(left_out)} of {len(spec.variants)} variants left out of the comparison: {which}"
        )
    print(
        f"seqlab: study {spec.name!r}: {what}; the report says why, "
        f"tracebacks in {log_path(spec.name)}",
        file=sys.stderr,
    )
    return 1


INTERRUPT_GRACE_S = 30.0  # after Ctrl-C, how long the study may take to wind down


@contextmanager
def _interruptible(message: str, embedded: bool) -> Iterator[None]:
    """Ctrl-C stops the study: a Tuner that is fitting stops as Tune's own Ctrl-C stops it
    (`flows.stop_tuning`: its state saved once more, then StudyInterrupted); anywhere else it
    raises KeyboardInterrupt at once. A second Ctrl-C raises KeyboardInterrupt wherever the
    study is. With `embedded`, the process also exits 130, printing `message`: as soon as the
    study has closed (`flows.INTERRUPTED_STUDY_CLOSED`) if Prefect's API server no longer
    answers, at once on a second Ctrl-C, and within `INTERRUPT_GRACE_S` in any case.

    Ctrl-C reaches the whole foreground process group, so it stops Prefect's ephemeral API
    server too. Prefect would then retry, for minutes, to report the crashed flow run to it,
    printing each failure. The study's own clean-up (Tune's last save, its MLflow runs ended
    KILLED, Ray stopped) takes seconds.
    """

    def leave() -> None:
        print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)

    def later() -> None:
        from pipelines.study import flows

        deadline = time.monotonic() + INTERRUPT_GRACE_S
        if flows.INTERRUPTED_STUDY_CLOSED.wait(INTERRUPT_GRACE_S) and not _prefect_answers():
            leave()  # nothing left to wait for: Prefect cannot record the crash anywhere
        time.sleep(max(0.0, deadline - time.monotonic()))
        leave()

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        from pipelines.study import flows  # imported already: the study runs in it

        stopping = flows.stop_tuning(frame)  # Tune's handler sets SIGINT's back to this one
        if embedded:
            signal.signal(signal.SIGINT, lambda *_: leave())
            threading.Thread(target=later, daemon=True).start()
        else:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if not stopping:
            raise KeyboardInterrupt

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


def _resume(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if not _store_usable(study=True):
        return EXIT_USAGE
    settings.configure_environment()
    settings.quiet_known_warnings()
    from pipelines import tracking
    from pipelines.study import resume

    try:
        parent, spec = resume.find(tracking.client(), args.study, args.run, force=args.force)
    except resume.ResumeError as err:
        print(f"seqlab: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"study {spec.name}: resuming parent run {parent.info.run_id}", flush=True)
    prefect_ready = _start_embedded_prefect()  # beside the flow's imports: torch, Lightning
    source = parent.data.tags.get("spec.source", "")
    return _study(spec, source, parent.info.run_id, started, time.perf_counter(), prefect_ready)


def _report(args: argparse.Namespace) -> int:
    settings.configure_environment()
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from pipelines import report, tracking

    try:
        run_id, built = report.rebuild(tracking.client(), args.study, args.run)
    except LookupError as err:
        print(f"seqlab: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except MlflowException as err:
        print(f"seqlab: error: --run: {args.run}: {err.message.splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out) if args.out else settings.seqlab_home() / "reports" / args.study
    report.write(built, out)
    print(built.markdown)
    print(f"written to {out / 'report.md'} and {out / 'plots'}/")
    experiment_id = tracking.client().get_run(run_id).info.experiment_id
    print(f"MLflow parent run {run_id} in experiment {args.study!r}. To browse it:")
    for line in browse_lines(settings.tracking_uri(), experiment_id, run_id):
        print(f"  {line}")
    return 0


def _rerun(args: argparse.Namespace) -> int:
    settings.configure_environment()
    settings.quiet_known_warnings()
    from mlflow.tracking import MlflowClient  # not tracking.client(): that module loads Ray

    from pipelines.study.rerun import COMPARED, RerunError, rerun

    try:
        result = rerun(MlflowClient(settings.tracking_uri()), args.run_id)
    except RerunError as err:
        print(f"seqlab: error: run_id: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"run {result.run_id}: variant {result.config['variant']}, seed {result.config['seed']}")
    print("| epoch | " + " | ".join(f"{k} recorded | {k} again" for k in COMPARED) + " |")
    print("|---" * (1 + 2 * len(COMPARED)) + "|")
    for epoch in range(len(result.original["val/loss"])):
        cells = [
            f"{result.original[k][epoch]:.6g} | {result.again[k][epoch]:.6g}" for k in COMPARED
        ]
        print(f"| {epoch} | " + " | ".join(cells) + " |")
    verdict = "match" if result.matches() else "DIFFER"
    print(f"metrics {verdict}: largest difference {result.max_abs_diff():.3g}")
    return 0 if result.matches() else 1


def _sample(args: argparse.Namespace) -> int:
    settings.configure_environment()
    settings.quiet_known_warnings()
    import mlflow

    from pipelines import serving

    mlflow.set_tracking_uri(settings.tracking_uri())
    given = {
        "stop": args.stop,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "max_length": args.max_length,
        "seed": args.seed,
        "beam": args.beam,
    }
    options = {key: value for key, value in given.items() if value is not None}
    try:
        lines = serving.sample(args.model_uri, args.inputs, options)
    except serving.SampleError as err:
        print(f"seqlab: error: {err.source}: {err}", file=sys.stderr)
        return EXIT_USAGE
    for line in lines:
        print(line)
    return 0


def _models(args: argparse.Namespace) -> int:
    import json

    from seqmodels.catalogue import catalogue  # seqmodels only: no ray, prefect or mlflow

    entries = catalogue()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for kind in ("cell", "architecture"):
        print(f"{kind}s (a variant's `{kind}`):")
        for entry in (e for e in entries if e["kind"] == kind):
            print(f"  {entry['name']}: {entry['summary']} [{entry['book']}]")
            for option in entry["options"]:
                choices = f" one of {option['choices']}" if option.get("choices") else ""
                print(f"      {option['name']}: {option['type']} = {option['default']!r}{choices}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    import json

    from seqmodels.tasks import TASKS  # seqmodels only: no ray, prefect or mlflow

    rows = [_describe_task(TASKS.get(name)) for name in TASKS.names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']} ({row['family']}): {row['description']}")
        others = [m for m in row["metrics"] if m != row["metric"]]
        also = f" (also {', '.join(others)})" if others else ""
        print(f"  metric: {row['metric']}{also}")
        print(f"  baseline: {row['baseline_note']}")
        inputs = (
            "token ids (one-hot, or arch_options.embedding_size)"
            if row["token_inputs"]
            else "float features"
        )
        print(f"  inputs: {inputs}")
        print(f"  architectures: {', '.join(row['architectures'])}")
        print("  options:")
        for option in row["options"]:
            default = "required" if option["required"] else json.dumps(option["default"])
            print(f"    {option['name']}: {option['type']} = {default}")
    return 0


def _describe_task(task: type) -> dict:
    """A registered task's public facts, read from its class: no data is touched."""
    import dataclasses

    from pipelines.spec import fitting_architectures
    from seqmodels.errors import ConfigError

    try:  # a default that the options refuse (a user task's empty `path`) must be given
        task.options_type()
        refused = ""
    except ConfigError as err:
        refused = err.field
    options = []
    for f in dataclasses.fields(task.options_type):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        required = required or f.name == refused
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        options.append(
            {
                "name": f.name,
                "type": f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""),
                "default": list(default) if isinstance(default, tuple) else default,
                "required": required,
            }
        )
    return {
        "name": task.name,
        "family": task.family,
        "metric": task.metric,
        "metrics": list(task.metrics or (task.metric,)),
        "baseline_note": task.baseline_note,
        "token_inputs": task.token_inputs,
        "architectures": fitting_architectures(task),
        "version": task.version,
        "description": " ".join((task.__doc__ or "").strip().split("\n\n")[0].split()),
        "options": options,
    }


def _data(args: argparse.Namespace) -> int:
    return {"prepare": _data_prepare}[args.data_command](args)


def _data_prepare(args: argparse.Namespace) -> int:
    from pipelines.spec.task import SpecError, parse_task  # no torch: see its module doc
    from seqmodels.errors import ConfigError

    given: dict[str, str] = {}  # option -> the `--set` item that gave it, to name it in errors
    options: dict[str, object] = {}
    for item in args.options:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            return _user_error(
                f"--set {item}", "task.options", "expected KEY=VALUE, e.g. length=50"
            )
        try:
            options[key] = _yaml_value(text)
        except ValueError as err:
            return _user_error(f"--set {item}", f"task.options.{key}", str(err))
        given[key] = f"--set {item}"
    try:
        seed = _yaml_value(args.seed)
    except ValueError as err:
        return _user_error(f"--seed {args.seed}", "task.seed", str(err))
    inputs = {"task.name": args.task, "task.seed": f"--seed {args.seed}"}
    inputs |= {f"task.options.{key}": item for key, item in given.items()}
    try:
        section = parse_task({"name": args.task, "options": options, "seed": seed})
    except SpecError as err:
        return _user_error(inputs.get(err.field, args.task), err.field, err.message)
    # Every field filled in, exactly as `run_study` passes `spec.task.options`: same cache key.
    options = dict(section.options.__dict__)
    if not _store_usable():
        return EXIT_USAGE
    try:
        found = _check_data(section.name, options, section.seed)
    except ConfigError as err:
        return _data_error(err, options, inputs, args.task)
    if found is not None:
        # Nothing to do, so no flow run: Prefect's start would be nearly all of the time.
        from pipelines.data import store

        _print_dataset(store.read_ref(found), True, args.json)
        return 0

    settings.configure_environment()
    from pipelines.data.prepare import prepare_data_flow  # prefect and the store

    with _DropConsoleRecords(ConfigError):
        try:
            ref = prepare_data_flow(section.name, options, section.seed, settings.data_store())
        except ConfigError as err:  # found only while generating, e.g. too few rows to split
            return _data_error(err, options, inputs, args.task)
        except OSError as err:  # the store refused the write: no bucket, no permission, ...
            return _user_error("SEQLAB_STORE", settings.data_store(), _one_line(err))
    _print_dataset(ref, False, args.json)
    return 0


def _store_usable(study: bool = False) -> bool:
    """Whether the data store's root is usable here (for a study: Tune's state too, which
    lives beside the datasets in an object store); if not, says why in one line."""
    from pipelines.data import store

    try:
        (store.check_study_root if study else store.check_root)(settings.data_store())
    except store.StoreError as err:
        _user_error("SEQLAB_STORE", settings.data_store(), str(err))
        return False
    return True


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _yaml_value(text: str) -> object:
    """A `--set` value read as YAML: `50` is an int, `true` a bool, `[a, b]` a list."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ValueError(f"not a YAML value: {problem}") from None


def _check_data(task_name: str, options: dict, seed: int) -> str | None:
    """Read the task's source data now, so that a bad user file fails before Prefect starts.

    Returns the dataset's URI when the store already holds it, else None. Raises ConfigError on
    bad data.
    """
    from pipelines.data import store

    digest = store.dataset_digest(task_name, options, seed)  # reads a user's file to hash it
    uri = store.dataset_uri(settings.data_store(), task_name, digest)
    if store.is_prepared(uri):
        return uri
    # Sizes and vocabulary parse the data (CSV cells, JSONL records) and are cached on the
    # task where they are costly; the generator may still refuse what only it can check.
    task = store.build_task(task_name, options)
    _ = (task.input_size, task.output_size, task.vocabulary)
    return None


def _data_error(err: Exception, options: dict, inputs: dict[str, str], task_name: str) -> int:
    """A generator's ConfigError as one line that names the user's file, or the option."""
    field = f"task.options.{err.field}"
    source = inputs.get(field, task_name)
    if err.field == "path" and options.get("path"):
        source = str(options["path"])
    return _user_error(source, field, str(err))


def _user_error(source: str, field: str, message: str) -> int:
    print(f"seqlab: error: {source}: {field}: {message}", file=sys.stderr)
    return EXIT_USAGE


class _DropConsoleRecords:
    """While active, Prefect's console logging drops records about one exception type.

    A user's mistake that only the generator can see fails inside the flow. Prefect would log
    it with a traceback; the CLI prints it as one line instead. Other records still show.
    """

    def __init__(self, kind: type[BaseException]) -> None:
        self.kind = kind
        self.handlers: list = []

    def filter(self, record) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, self.kind) and self.kind.__name__ not in record.getMessage()

    def __enter__(self) -> _DropConsoleRecords:
        import logging

        names = ("", "prefect", "prefect.flow_runs", "prefect.task_runs")
        # Console handlers only: Prefect's API handler still records the failure for its UI.
        self.handlers = [
            handler
            for name in names
            for handler in logging.getLogger(name).handlers
            if isinstance(handler, logging.StreamHandler)
        ]
        for handler in self.handlers:
            handler.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for handler in self.handlers:
            handler.removeFilter(self)


def _print_dataset(ref, cached: bool, as_json: bool) -> None:
    import json

    from pipelines.data import store

    note = store.read_card(ref.uri)["baseline"]["note"]  # the dataset is prepared: it has one
    if as_json:
        print(json.dumps({**ref.model_dump(), "baseline_note": note, "cached": cached}, indent=2))
        return
    sizes = ", ".join(f"{split} {size}" for split, size in ref.sizes.items())
    print(f"{ref.task}: {'found in the store' if cached else 'prepared'}")
    print(f"  uri:      {ref.uri}")
    print(f"  digest:   {ref.digest}")
    print(f"  sizes:    {sizes}")
    print(f"  family:   {ref.family} (input {ref.input_size}, output {ref.output_size})")
    print(f"  metric:   {ref.metric}")
    print(f"  baseline: {ref.baseline:.4g} ({note})" if note else f"  baseline: {ref.baseline:.4g}")


def _interrupted(err: BaseException | None) -> bool:
    """Whether Ctrl-C is behind `err`.

    Ctrl-C reaches the whole foreground process group, Prefect's API server included, so the
    flow engine's last report after the KeyboardInterrupt fails too and raises its own error.
    The interrupt is then in that error's context.
    """
    while err is not None:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__cause__ or err.__context__
    return False


def _up(args: argparse.Namespace) -> int:
    for option in ("mlflow_port", "prefect_port", "ray_port", "dashboard_port", "ray_client_port"):
        port = getattr(args, option)
        if not 0 < port < 65536:
            flag = "--" + option.replace("_", "-")
            print(f"seqlab: error: {flag}: {port} is not a port (1-65535)", file=sys.stderr)
            return EXIT_USAGE
    services = tuple(args.only.split(",")) if args.only else stack.SERVICES
    config = stack.StackConfig(
        host=args.host,
        mlflow_port=args.mlflow_port,
        prefect_port=args.prefect_port,
        ray_port=args.ray_port,
        dashboard_port=args.dashboard_port,
        ray_client_port=args.ray_client_port,
        backend_store_uri=args.backend_store_uri,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        prefect_auth=args.prefect_auth,
        services=services,
    )
    home = settings.seqlab_home()
    try:
        result = stack.up(
            config, home, say=lambda line: print(line, flush=True), health_timeout=args.timeout
        )
    except stack.StackError as err:
        first, _, rest = str(err).partition("\n")
        print(f"seqlab: error: {first}", file=sys.stderr)
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


def _serve(args: argparse.Namespace) -> int:
    api = settings.prefect_api_url()
    if api is None:
        print(
            "seqlab: error: serve: no Prefect server to serve to: start the stack with "
            "`seqlab up`, or set PREFECT_API_URL",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.limit is not None and args.limit < 1:
        print(f"seqlab: error: --limit: {args.limit} is not a positive number", file=sys.stderr)
        return EXIT_USAGE
    settings.configure_environment()
    settings.quiet_known_warnings()
    from pipelines.ops import deployments

    names = ", ".join(deployments.DEPLOYMENTS)
    ui = api.removesuffix("/api")
    print(f"serving {names} to {ui} (runs use {settings.tracking_uri()}); Ctrl-C stops", flush=True)
    try:
        deployments.serve(limit=args.limit)
    except KeyboardInterrupt:
        print("stopped serving")
    return 0


def _down(args: argparse.Namespace) -> int:
    home = settings.seqlab_home()
    if not stack.down(home):
        print(f"nothing to stop: no stack is running under {home}")
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    states = stack.status(settings.seqlab_home())
    if args.env:
        for key, value in stack.client_environment(settings.seqlab_home()).items():
            print(f"export {key}='{value}'")
        return 0
    if args.json:
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


UI_PORT = 5000  # `mlflow ui`'s own default


def browse_lines(
    tracking_uri: str, experiment_id: str, run_id: str, port: int = UI_PORT
) -> list[str]:
    """Where to see a study in MLflow's UI (`settings.mlflow_ui_url`): its training runs, and
    its parent run. A tracking server (http) is linked directly; any other store gets the
    `mlflow ui` command that serves it on 127.0.0.1:`port` first.
    """
    if tracking_uri.startswith(("http://", "https://")):
        base, start = tracking_uri, []
    else:
        base = f"http://127.0.0.1:{port}"
        start = [f"mlflow ui --backend-store-uri {tracking_uri} --port {port}", "then open:"]
    runs = settings.mlflow_ui_url(base, experiment_id)
    parent = settings.mlflow_ui_url(base, experiment_id, run_id)
    return [*start, f"{runs}  (the study's runs)", f"{parent}  (this parent run)"]


if __name__ == "__main__":
    entry()
