"""`seqlab run`, `validate`, `resume`, `report` and `rerun`: a study, from its spec to its runs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from pipelines.cli import process
from pipelines.cli.common import (
    EXIT_USAGE,
    AssignmentError,
    assignments,
    error,
    store_usable,
    user_error,
)
from pipelines.cli.summary import browse_lines, left_out_status, time_summary
from pipelines.ops import settings

if TYPE_CHECKING:
    from pipelines.spec import StudySpec, SuiteSpec
    from pipelines.study.flows import SuiteResult


def _repeats(study: StudySpec) -> str:
    """The repeats a study plans, in words: `then 5-20 seeds (in rounds) of the best config,
    drawing init, order, data afresh`."""
    looks, k = study.seed_looks, study.repeats.configs
    seeds = f"{looks[0]}" if len(looks) == 1 else f"{looks[0]}-{looks[-1]} (in rounds)"
    configs = "the best config" if k == 1 else f"the {k} best configs"
    return f"then {seeds} seeds of {configs}, drawing {', '.join(study.repeats.vary)} afresh"


@click.command(short_help="run a study spec end to end", help="Run a study spec end to end.")
@click.argument(
    "spec", help="path to a study spec (YAML), e.g. experiments/quickstart.yaml", metavar="SPEC"
)
@click.option("--dry-run", is_flag=True, help="validate the spec and show the plan; start nothing")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a spec field, repeatable; dotted keys, YAML values: "
    "search.trials_per_variant=5, seeds=2, fixed.max_epochs=3",
)
def run(spec: str, dry_run: bool, overrides: tuple[str, ...]) -> int:
    started = time.perf_counter()
    study = _load(spec, overrides)
    if study is None or not store_usable(study=True):
        return EXIT_USAGE  # before anything is started or written
    problem = _data_problem(study, spec)
    if problem is not None:
        return problem
    home, data = str(settings.seqlab_home()), settings.data_store()
    print(_plan(study) + f", home {home}" + (f", data {data}" if data != home else ""), flush=True)
    if dry_run:
        print("dry run: the spec is valid; nothing was started")
        return 0
    settings.configure_environment()
    settings.quiet_known_warnings()
    prefect_ready = process.start_embedded_prefect()
    import pipelines.study.flows  # noqa: F401  (timed here: the heavy imports, torch, ray, ...)
    from pipelines import tracking

    imported = time.perf_counter()
    problem = tracking.artifact_access_problem(tracking.client(), study.name)
    if problem:
        prefect_ready()  # then Prefect's exit handler stops the server it started
        return error(problem)
    return _study(study, spec, None, started, imported, prefect_ready)


@click.command(
    short_help="validate study specs without running them",
    help="Validate study specs without running them.",
)
@click.argument("specs", nargs=-1, required=True, help="paths to study specs (YAML)")
def validate(specs: tuple[str, ...]) -> int:
    loaded = [_load(path) for path in specs]
    for path, spec in zip(specs, loaded, strict=True):
        if spec is not None:
            tasks = f", {len(spec.studies)} tasks" if hasattr(spec, "studies") else ""
            print(f"{path}: ok ({spec.name}, {len(spec.variants)} variants{tasks})")
    return 0 if all(loaded) else EXIT_USAGE


@click.command(
    short_help="continue an interrupted study: no finished trial runs again, no run is duplicated",
    help="Continue an interrupted study: no finished trial runs again, no run is duplicated.",
)
@click.argument("study", help="the study's name (its MLflow experiment)")
@click.option("--run", help="the parent run to resume (default: the study's newest unfinished one)")
@click.option(
    "--force",
    is_flag=True,
    help="resume a run still marked RUNNING whose driver ran on another host",
)
def resume(study: str, run: str | None, force: bool) -> int:
    started = time.perf_counter()
    if not store_usable(study=True):
        return EXIT_USAGE
    settings.configure_environment()
    settings.quiet_known_warnings()
    from pipelines import tracking
    from pipelines.study import resume as resuming

    try:
        parent, spec = resuming.find(tracking.client(), study, run, force=force)
    except resuming.ResumeError as err:
        return error(str(err))
    print(f"study {spec.name}: resuming parent run {parent.info.run_id}", flush=True)
    prefect_ready = process.start_embedded_prefect()  # beside the flow's imports: torch, ...
    source = parent.data.tags.get("spec.source", "")
    return _study(spec, source, parent.info.run_id, started, time.perf_counter(), prefect_ready)


@click.command(
    short_help="rebuild a past study's report from MLflow, with no retraining",
    help="Rebuild a past study's report from MLflow, with no retraining.",
)
@click.argument("study", help="the study's name (its MLflow experiment)")
@click.option("--run", help="a parent run id (default: the study's newest finished run)")
@click.option("--out", help="folder for report.md and plots/ (default: $SEQLAB_HOME/reports/STUDY)")
def report(study: str, run: str | None, out: str | None) -> int:
    settings.configure_environment()
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from pipelines import report as reports
    from pipelines import tracking

    try:
        run_id, built = reports.rebuild(tracking.client(), study, run)
    except LookupError as err:
        return error(str(err))
    except MlflowException as err:
        return error(f"--run: {run}: {err.message.splitlines()[0]}")
    folder = Path(out) if out else settings.seqlab_home() / "reports" / study
    reports.write(built, folder)
    print(built.markdown)
    print(f"written to {folder / 'report.md'} and {folder / 'plots'}/")
    experiment_id = tracking.client().get_run(run_id).info.experiment_id
    print(f"MLflow parent run {run_id} in experiment {study!r}. To browse it:")
    for line in browse_lines(settings.tracking_uri(), experiment_id, run_id):
        print(f"  {line}")
    return 0


@click.command(
    short_help="retrain one trial from its MLflow run and compare its losses with the original's",
    help="Retrain one trial from its MLflow run and compare its losses with the original's.",
)
@click.argument("run_id", help="a trial's or repeat's MLflow run id (a child run)")
def rerun(run_id: str) -> int:
    settings.configure_environment()
    settings.quiet_known_warnings()
    from mlflow.tracking import MlflowClient  # not tracking.client(): that module loads Ray

    from pipelines.study.rerun import COMPARED, RerunError
    from pipelines.study.rerun import rerun as retrain

    try:
        result = retrain(MlflowClient(settings.tracking_uri()), run_id)
    except RerunError as err:
        return error(f"run_id: {err}")
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


def _tasks(spec: StudySpec | SuiteSpec) -> list[tuple[str, StudySpec]]:
    """Each study of a spec, with the spec field of its task: `task`, or `tasks.<i>`."""
    from pipelines.spec import SuiteSpec

    if isinstance(spec, SuiteSpec):
        return [(f"tasks.{i}", study) for i, study in enumerate(spec.studies.values())]
    return [("task", spec)]


def _data_problem(spec: StudySpec | SuiteSpec, path: str) -> int | None:
    """Read each task's source data now (a user's file: its rows, its cells), so that bad data
    is one line and exit 2 before anything starts; None when all of it reads."""
    from pipelines.cli.data import check_data
    from seqmodels.errors import ConfigError

    for where, study in _tasks(spec):
        options = dict(study.task.options.__dict__)
        try:
            check_data(study.task.name, options, study.task.seed)
        except ConfigError as err:
            return _bad_data(err, where, options, path)
    return None


def _bad_data(err: Exception, where: str, options: dict, path: str) -> int:
    """A task's data error as one line: the user's file when it is the file's, else the spec,
    and the field."""
    field = getattr(err, "field", "")
    source = str(options["path"]) if field == "path" and options.get("path") else path
    return user_error(source, f"{where}.options.{field}".rstrip("."), str(err))


def _plan(spec: StudySpec | SuiteSpec) -> str:
    """What a study (or a suite) will run, in one line."""
    from pipelines.spec import SuiteSpec

    one = spec.first if isinstance(spec, SuiteSpec) else spec
    variants = ", ".join(one.variants)
    trials = one.search.trials_per_variant
    if isinstance(spec, SuiteSpec):
        where = f"suite {spec.name}: tasks {', '.join(spec.studies)}"
        trials_each = f"{trials} trials each per task"
    else:
        where, trials_each = f"study {spec.name}: task {spec.task.name}", f"{trials} trials each"
    return f"{where}, variants {variants}, {trials_each}, {_repeats(one)}"


def _load(path: str, overrides: tuple[str, ...] = ()) -> StudySpec | SuiteSpec | None:
    """The validated spec, or None after printing the one-line error.

    `overrides` are `--set KEY=VALUE` items; a mistake in one is named by the item.
    """
    from pipelines.spec import SpecError, load_spec

    try:
        values = {a.key: a.value for a in assignments(overrides, "seeds=2")}
    except AssignmentError as err:
        error(f"--set {err.item}: {err.message}")
        return None
    try:
        return load_spec(path, values)
    except SpecError as err:
        error(str(err))
        return None


def _study(
    spec: StudySpec | SuiteSpec,
    source: str,
    resume_run_id: str | None,
    started: float,
    imported: float,
    prefect_ready: Callable[[], None],
) -> int:
    """Run (or resume) the study's flow and print its table, timings and where to browse it;
    a suite's, each task's table and then the suite's."""
    from pipelines.cli.data import DropConsoleRecords
    from pipelines.spec import SuiteSpec
    from pipelines.study.flows import run_study, run_suite
    from seqmodels.errors import ConfigError

    called_at = time.time()
    message = (
        f"seqlab: interrupted: study {spec.name!r}; its runs end KILLED. "
        f"Continue it with: seqlab resume {spec.name}"
    )
    try:
        with (
            process.interruptible(message, embedded=not settings.prefect_api_url()),
            DropConsoleRecords(ConfigError),  # bad data: one line below, not Prefect's traceback
        ):
            prefect_ready()
            if isinstance(spec, SuiteSpec):
                suite = run_suite(spec, source=source, resume_run_id=resume_run_id)
            else:
                result = run_study(spec, source=source, resume_run_id=resume_run_id)
    except BaseException as err:
        from pipelines.study.tuning import interrupted

        if isinstance(err, ConfigError) and not interrupted(err):
            # bad data only the generator could see (too few rows to split, ...): which task's
            where, study = _failed_task(spec, err)
            return _bad_data(err, where, dict(study.task.options.__dict__), source or spec.name)
        if not interrupted(err):
            raise
        print(message, file=sys.stderr)
        return 130
    if isinstance(spec, SuiteSpec):
        return _suite_finished(spec, suite)
    total = time.perf_counter() - started
    print()
    print(result.table)
    phases = {
        "imports": imported - started,
        "prefect_start": result.began_at - called_at,
        **result.phases,
    }
    cpus = (
        None if settings.ray_address() else os.cpu_count()
    )  # study.tuning.ray_session's local Ray
    for line in time_summary(
        phases, total, result.train_seconds, spec.resources.cpu, cpus, result.spans
    ):
        print(line)
    print(f"MLflow parent run {result.parent_run_id} in experiment {spec.name!r}. To browse it:")
    for line in browse_lines(settings.tracking_uri(), result.experiment_id, result.parent_run_id):
        print(f"  {line}")
    return left_out_status(spec, result.left_out)


def _failed_task(spec: StudySpec | SuiteSpec, err: BaseException) -> tuple[str, StudySpec]:
    """The task whose study raised `err`: a suite names it on the error (`run_suite`)."""
    tasks = _tasks(spec)
    label = getattr(err, "suite_task", None)
    from pipelines.spec import SuiteSpec

    if isinstance(spec, SuiteSpec) and label in spec.studies:
        return tasks[list(spec.studies).index(label)]
    return tasks[0]


def _suite_finished(spec: SuiteSpec, suite: SuiteResult) -> int:
    """Print each task's table (of the tasks this driver ran), then the suite's, and where to
    browse it; 1 when any task's study went on without a variant."""
    for label, result in suite.tasks.items():
        print()
        print(result.table if result is not None else f"## {label}: finished in an earlier run")
    print()
    print(suite.table)
    print(f"MLflow suite run {suite.parent_run_id} in experiment {spec.name!r}. To browse it:")
    for line in browse_lines(settings.tracking_uri(), suite.experiment_id, suite.parent_run_id):
        print(f"  {line}")
    status = 0
    for label, result in suite.tasks.items():
        if result is not None:
            status = max(status, left_out_status(spec.studies[label], result.left_out))
    return status
