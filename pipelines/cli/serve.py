"""`seqlab sample` and `seqlab serve`: a registered model drawn from, and the flows served."""

from __future__ import annotations

import click

from pipelines.cli.common import error
from pipelines.ops import settings


@click.command(
    short_help="generate from a registered model (a classifier or regressor predicts instead)",
    help="Generate from a registered model (a classifier or regressor predicts instead).",
)
@click.argument("model_uri", help="e.g. models:/smoke-lstm@champion or runs:/RUN_ID/model")
@click.option(
    "--stop", help="how a sequence ends: eos, bernoulli or length (default: the model's own)"
)
@click.option("--temperature", type=float, help="0: greedy (default: the model's)")
@click.option("--top-k", type=int, help="draw from the k likeliest tokens (0: all)")
@click.option("--max-length", type=int, help="longest sequence drawn, in tokens")
@click.option("--seed", type=int, help="seed of the draws (default: 0)")
@click.option(
    "--beam",
    type=int,
    help="an encoder-decoder's most likely target under a beam this wide (default: 1, none)",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="TEXT",
    help="a source or prompt, repeatable; for a classifier or regressor one JSON array of "
    "x, or {x, x_parent} (default: the model's input example, from its test split)",
)
def sample(
    model_uri: str,
    stop: str | None,
    temperature: float | None,
    top_k: int | None,
    max_length: int | None,
    seed: int | None,
    beam: int | None,
    inputs: tuple[str, ...],
) -> int:
    settings.configure_environment()
    settings.quiet_known_warnings()
    import mlflow

    from pipelines import serving

    mlflow.set_tracking_uri(settings.tracking_uri())
    given = {
        "stop": stop,
        "temperature": temperature,
        "top_k": top_k,
        "max_length": max_length,
        "seed": seed,
        "beam": beam,
    }
    options = {key: value for key, value in given.items() if value is not None}
    try:
        lines = serving.sample(model_uri, list(inputs) or None, options)
    except serving.SampleError as err:
        return error(f"{err.source}: {err}")
    for line in lines:
        print(line)
    return 0


@click.command(
    short_help="serve the Prefect deployments run-study, prepare-data and report (Ctrl-C stops)",
    help="Serve seqlab's flows as Prefect deployments, so that runs started from the Prefect UI "
    "or `prefect deployment run` execute here, on the configured Ray cluster. Needs a Prefect "
    "server: `seqlab up`, or PREFECT_API_URL.",
)
@click.option("--limit", type=int, help="flow runs at most at once (default: no limit)")
def serve(limit: int | None) -> int:
    api = settings.prefect_api_url()
    if api is None:
        return error(
            "serve: no Prefect server to serve to: start the stack with "
            "`seqlab up`, or set PREFECT_API_URL"
        )
    if limit is not None and limit < 1:
        return error(f"--limit: {limit} is not a positive number")
    settings.configure_environment()
    settings.quiet_known_warnings()
    from pipelines.ops import deployments

    names = ", ".join(deployments.DEPLOYMENTS)
    ui = api.removesuffix("/api")
    print(f"serving {names} to {ui} (runs use {settings.tracking_uri()}); Ctrl-C stops", flush=True)
    try:
        deployments.serve(limit=limit)
    except KeyboardInterrupt:
        print("stopped serving")
    return 0
