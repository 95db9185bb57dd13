"""The flows users start from the Prefect UI: `run-study`, `prepare-data` and `report`.

Their parameters are typed, so the UI renders a form for each: a list of the specs in
`experiments/` with the common overrides, a list of the tasks, a study's name. `seqlab serve`
serves the three deployments from one process; `infra/prefect/prefect.yaml` deploys the same
functions to a work pool. Each wraps the flow the CLI runs, so a run started from the UI and
one started by `seqlab run` do the same work and land in the same MLflow experiment.

Importing this module configures the environment first: Prefect reads its settings on import.
"""

# No `from __future__ import annotations`: Prefect builds each form from the live annotations.

from pathlib import Path
from typing import Annotated, Any, Literal

from pipelines.ops import settings

settings.configure_environment()
settings.quiet_known_warnings()  # flow runs start in processes of their own

from prefect import flow  # noqa: E402
from prefect.artifacts import create_link_artifact, create_markdown_artifact  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402
from pydantic import Field  # noqa: E402

from pipelines import report as reports  # noqa: E402
from pipelines import tracking  # noqa: E402
from pipelines.data.prepare import prepare_data_flow  # noqa: E402
from pipelines.spec import SuiteSpec, load_spec  # noqa: E402
from pipelines.spec.task import parse_task  # noqa: E402
from pipelines.study.flows import run_study, run_suite  # noqa: E402
from seqmodels.tasks import TASKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# The specs a run can choose, as paths from the project root: the form's drop-down.
SPECS = tuple(sorted(f"experiments/{p.name}" for p in (ROOT / "experiments").glob("*.yaml")))
SpecFile = Literal[SPECS]  # type: ignore[valid-type]
TaskName = Literal[tuple(TASKS.names())]  # type: ignore[valid-type]
DEPLOYMENTS = ("run-study", "prepare-data", "report")


def _artifact_key(*words: str) -> str:
    """Prefect artifact keys take lowercase letters, digits and dashes."""
    return "-".join("".join(c if c.isalnum() else "-" for c in w.lower()) for w in words)


@flow(name="seqlab-study", log_prints=False)
def study(
    spec: SpecFile = "experiments/quickstart.yaml",  # type: ignore[valid-type]
    trials_per_variant: Annotated[int | None, Field(ge=1)] = None,
    seeds: Annotated[int | None, Field(ge=1, le=1000)] = None,
    max_epochs: Annotated[int | None, Field(ge=1)] = None,
) -> dict[str, Any]:
    """Run a study spec (or a suite's) from `experiments/` end to end, with the form's
    overrides.

    Args:
        spec: the study spec, a file in experiments/.
        trials_per_variant: search trials per variant; empty keeps the spec's.
        seeds: seeded repeats of each variant's best config; empty keeps the spec's.
        max_epochs: epochs per trial; empty keeps the spec's.

    Returns:
        The MLflow parent run and the winner; the flow run's artifacts link to the MLflow run.
    """
    overrides = {
        "search.trials_per_variant": trials_per_variant,
        "seeds": seeds,
        "fixed.max_epochs": max_epochs,
    }
    chosen = load_spec(ROOT / spec, {k: v for k, v in overrides.items() if v is not None})
    run = run_suite if isinstance(chosen, SuiteSpec) else run_study
    result = run(chosen, source=spec)
    url = tracking.run_url(result.experiment_id, result.parent_run_id)
    if url:
        create_link_artifact(
            link=url,
            link_text=f"MLflow run of study {chosen.name}",
            key=_artifact_key(chosen.name, "mlflow-run"),
            description=f"the parent run of flow run {flow_run.get_name()}",
        )
    return {
        "study": result.study,
        "experiment_id": result.experiment_id,
        "parent_run_id": result.parent_run_id,
        "winner": result.winner,
        "mlflow_url": url,
    }


@flow(name="seqlab-prepare-data", log_prints=False)
def prepare_data(
    task: TaskName = "adding",  # type: ignore[valid-type]
    options: dict[str, Any] | None = None,
    seed: Annotated[int, Field(ge=0)] = 0,
) -> dict[str, Any]:
    """Prepare a task's dataset in the store under SEQLAB_HOME, or find it there.

    Args:
        task: the task (`seqlab tasks` lists them with their options).
        options: task options, e.g. {"length": 50}; empty keeps the defaults.
        seed: the seed of data generation.
    """
    section = parse_task({"name": task, "options": options or {}, "seed": seed}, "prepare-data")
    ref = prepare_data_flow(section.name, section.options.__dict__, section.seed)
    sizes = ", ".join(f"{split} {n}" for split, n in ref.sizes.items())
    create_markdown_artifact(
        markdown=f"**{ref.task}** `{ref.digest}`\n\n{sizes}; metric {ref.metric}, "
        f"baseline {ref.baseline:.4g}\n\n`{ref.uri}`",
        key=_artifact_key(ref.task, "dataset"),
        description="the dataset's reference in the store",
    )
    return ref.model_dump()


@flow(name="seqlab-report", log_prints=False)
def report(
    study: Annotated[str, Field(min_length=1)] = "quickstart",
    run_id: str | None = None,
) -> dict[str, Any]:
    """Rebuild a study's report from its MLflow runs alone, with no retraining.

    Args:
        study: the study's name (its MLflow experiment).
        run_id: a parent run id; empty takes the study's newest finished run.
    """
    parent, built = reports.rebuild(tracking.client(), study, run_id)
    out = settings.seqlab_home() / "reports" / study
    reports.write(built, out)
    create_markdown_artifact(
        markdown=built.markdown,
        key=_artifact_key(study, "report"),
        description=f"study {study}, parent run {parent}",
    )
    return {"study": study, "parent_run_id": parent, "winner": built.winner, "path": str(out)}


def serve(limit: int | None = None) -> None:
    """Serve the three deployments from this process until interrupted.

    Each flow run starts in a subprocess, with this process's environment: the stack's servers.
    """
    from prefect import serve as prefect_serve

    prefect_serve(
        study.to_deployment(
            name="run-study",
            description="Run a study spec from experiments/, overriding its common fields.",
            tags=["seqlab", "study"],
        ),
        prepare_data.to_deployment(
            name="prepare-data",
            description="Prepare a task's dataset in the store.",
            tags=["seqlab", "data"],
        ),
        report.to_deployment(
            name="report",
            description="Rebuild a study's report from MLflow.",
            tags=["seqlab", "report"],
        ),
        limit=limit,
        print_starting_message=False,
    )
