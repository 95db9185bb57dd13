"""`seqlab tasks` and `seqlab models`: what a spec can name. seqmodels only: no ray, prefect or
mlflow."""

from __future__ import annotations

import json

import click

# How a repeat's training data is drawn again, by `Task.resample`.
RESAMPLE_WORDS = {
    "redraw": "train and val drawn again from the generator, test kept",
    "resplit": "train and val split afresh from their pool, test kept",
    "bootstrap": "a bootstrap sample of train, val and test kept",
}


@click.command(
    short_help="list the tasks: family, metrics, baseline and options",
    help="List the tasks: family, metrics, baseline and options.",
)
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable list")
def tasks(as_json: bool) -> int:
    from seqmodels.tasks import TASKS

    rows = [_describe_task(TASKS.get(name)) for name in TASKS.names()]
    if as_json:
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
        print(f"  repeats' data (repeats.vary: data): {RESAMPLE_WORDS[row['resample']]}")
        print("  options:")
        for option in row["options"]:
            default = "required" if option["required"] else json.dumps(option["default"])
            print(f"    {option['name']}: {option['type']} = {default}")
    return 0


@click.command(
    short_help="list the cells and architectures a variant can name, with book references",
    help="List the cells and architectures a variant can name, with book references.",
)
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable list")
def models(as_json: bool) -> int:
    from seqmodels.catalogue import catalogue

    entries = catalogue()
    if as_json:
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


def _describe_task(task: type) -> dict:
    """A registered task's public facts, read from its class: no data is touched."""
    from pipelines.spec import fitting_architectures
    from seqmodels.catalogue import option_specs
    from seqmodels.errors import ConfigError

    try:  # a default that the options refuse (a user task's empty `path`) must be given
        task.options_type()
        refused = ""
    except ConfigError as err:
        refused = err.field
    options = [
        {
            "name": spec["name"],
            "type": spec["annotation"],
            "default": list(spec["default"])
            if isinstance(spec["default"], tuple)
            else spec["default"],
            "required": spec["required"] or spec["name"] == refused,
        }
        for spec in option_specs(task.options_type)
    ]
    return {
        "name": task.name,
        "family": task.family,
        "metric": task.metric,
        "metrics": list(task.metrics or (task.metric,)),
        "baseline_note": task.baseline_note,
        "token_inputs": task.token_inputs,
        "architectures": fitting_architectures(task),
        "version": task.version,
        "resample": task.resample,
        "description": " ".join((task.__doc__ or "").strip().split("\n\n")[0].split()),
        "options": options,
    }
