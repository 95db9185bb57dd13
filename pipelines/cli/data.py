"""`seqlab data prepare`: a task's dataset in the store, cached by content."""

from __future__ import annotations

import click

from pipelines.cli.common import (
    EXIT_USAGE,
    AssignmentError,
    assignments,
    one_line,
    store_usable,
    user_error,
    yaml_value,
)
from pipelines.ops import settings


@click.group(short_help="prepare datasets in the store", help="Prepare datasets in the store.")
def data() -> None:
    """The `data` commands."""


@data.command(
    short_help="prepare a task's dataset in the store (cached by content)",
    help="Prepare a task's dataset in the data store: $SEQLAB_STORE (a directory or an fsspec "
    "URL such as s3://bucket/seqlab) or else $SEQLAB_HOME.",
)
@click.argument("task", help="a task name, e.g. adding (`seqlab tasks` lists them)")
@click.option(
    "--set",
    "items",
    multiple=True,
    metavar="KEY=VALUE",
    help="a task option, repeatable; the value reads as YAML: length=50, permuted=true",
)
@click.option("--seed", default="0", help="seed of data generation (default: 0)")
@click.option("--json", "as_json", is_flag=True, help="print the reference as JSON")
def prepare(task: str, items: tuple[str, ...], seed: str, as_json: bool) -> int:
    from pipelines.spec.task import SpecError, parse_task  # no torch: see its module doc
    from seqmodels.errors import ConfigError

    try:
        given = assignments(items, "length=50")
    except AssignmentError as err:
        field = "task.options" if err.key is None else f"task.options.{err.key}"
        return user_error(f"--set {err.item}", field, err.message)
    options: dict[str, object] = {a.key: a.value for a in given}
    try:
        seed_value = yaml_value(seed)
    except ValueError as err:
        return user_error(f"--seed {seed}", "task.seed", str(err))
    # each field -> the input that gave it, to name it in errors
    inputs = {"task.name": task, "task.seed": f"--seed {seed}"}
    inputs |= {f"task.options.{a.key}": f"--set {a.item}" for a in given}
    try:
        section = parse_task({"name": task, "options": options, "seed": seed_value})
    except SpecError as err:
        return user_error(inputs.get(err.field, task), err.field, err.message)
    # Every field filled in, exactly as `run_study` passes `spec.task.options`: same cache key.
    options = dict(section.options.__dict__)
    if not store_usable():
        return EXIT_USAGE
    try:
        found = check_data(section.name, options, section.seed)
    except ConfigError as err:
        return data_error(err, options, inputs, task)
    if found is not None:
        # Nothing to do, so no flow run: Prefect's start would be nearly all of the time.
        from pipelines.data import store

        _print_dataset(store.read_ref(found), True, as_json)
        return 0

    settings.configure_environment()
    from pipelines.data.prepare import prepare_data_flow  # prefect and the store

    with DropConsoleRecords(ConfigError):
        try:
            ref = prepare_data_flow(section.name, options, section.seed, settings.data_store())
        except ConfigError as err:  # found only while generating, e.g. too few rows to split
            return data_error(err, options, inputs, task)
        except OSError as err:  # the store refused the write: no bucket, no permission, ...
            return user_error("SEQLAB_STORE", settings.data_store(), one_line(err))
    _print_dataset(ref, False, as_json)
    return 0


def check_data(task_name: str, options: dict, seed: int) -> str | None:
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


def data_error(err: Exception, options: dict, inputs: dict[str, str], task_name: str) -> int:
    """A generator's ConfigError as one line that names the user's file, or the option."""
    field = f"task.options.{err.field}"
    source = inputs.get(field, task_name)
    if err.field == "path" and options.get("path"):
        source = str(options["path"])
    return user_error(source, field, str(err))


class DropConsoleRecords:
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

    def __enter__(self) -> DropConsoleRecords:
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
