"""Where state lives, and which servers to talk to.

The standard variables of each tool win (`MLFLOW_TRACKING_URI`, `RAY_ADDRESS`,
`PREFECT_API_URL`); `SEQLAB_HOME` and `SEQLAB_STORE` are our own. Next come the servers of a
stack `seqlab up` started under the home and that still runs; last, the embedded default. This
module imports nothing heavy, so the CLI can use it before deciding what to load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipelines.ops import records

DEFAULT_HOME = ".seqlab"


def seqlab_home() -> Path:
    """The store: prepared data, Ray results and, in the embedded default, MLflow's files."""
    return Path(os.environ.get("SEQLAB_HOME", DEFAULT_HOME)).expanduser().resolve()


def data_store() -> str:
    """The data store's root, under which prepared datasets live in `data/`.

    `SEQLAB_STORE`, a local directory or an fsspec URL (`s3://bucket/seqlab`, `gs://...`)
    that every node of a cluster can read; the home when unset.
    """
    store = os.environ.get("SEQLAB_STORE")
    if not store:
        return str(seqlab_home())
    return store if "://" in store else str(Path(store).expanduser().resolve())


def _stack_url(service: str) -> str | None:
    """The URL (or, for Ray, the address) of a running stack service under the home."""
    record = records.live_records(seqlab_home()).get(service)
    if record is None:
        return None
    return record.address or record.url


def tracking_uri() -> str:
    """MLflow's tracking URI: `MLFLOW_TRACKING_URI`, the stack's server, or SQLite in the home."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or _stack_url("mlflow")
        or f"sqlite:///{seqlab_home() / 'mlflow.db'}"
    )


def mlflow_ui_url(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """A page of the MLflow UI served at `base`: an experiment's training runs, or one run.

    Routes of MLflow 3.x's hash router (`#/experiments/:experimentId/runs[/:runUuid]`;
    tests/unit/test_cli_output.py finds them in the served bundle). Its bare URL opens on the GenAI
    overview, not on the runs.
    """
    runs = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return f"{runs}/{run_id}" if run_id else runs


def artifact_root() -> str:
    """Where new experiments keep artifacts in the embedded default (a file URI under the home)."""
    return (seqlab_home() / "mlartifacts").as_uri()


def ray_address() -> str | None:
    """`RAY_ADDRESS`, or the stack's Ray head; None: a local Ray is started for the run."""
    return os.environ.get("RAY_ADDRESS") or _stack_url("ray")


def prefect_api_url() -> str | None:
    """`PREFECT_API_URL`, or the stack's Prefect server; None: Prefect's ephemeral API."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    url = _stack_url("prefect")
    return f"{url}/api" if url else None


# Ray binds its servers to its node's address, which it reads from the network, unless it runs as
# the single-machine Ray it is on Windows and macOS: then the node's address is 127.0.0.1 and no
# part of Ray listens beyond loopback. Ray reads this variable when it is imported; "0" makes a
# Ray single-machine on Linux too (passing 127.0.0.1 as the node's address does not: Ray swaps
# it for the machine's own before it starts).
RAY_SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def configure_environment() -> None:
    """Set the variables the libraries read at import time. Call before importing them.

    Only fills in what the user has not set: a user's own configuration always wins.
    """
    home = seqlab_home()
    defaults = {
        # Prefect's telemetry prints ERROR tracebacks on machines without internet access.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Keep Prefect's ephemeral database and cached task results in the store.
        "PREFECT_HOME": str(home / "prefect"),
        # The ephemeral API gets 20 s to start by default; a busy 2-core machine needs more.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "prefect" / "storage"),
        # Ray Tune's own console tables would interleave with seqlab's progress lines.
        "RAY_AIR_NEW_OUTPUT": "0",
        # Tune warns when checkpoints come faster than every 5 s, which small trials always do.
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
        "RAY_DEDUP_LOGS": "0",
        # Tune saves the experiment's state (what `seqlab resume` restores) at most this often;
        # its default, at least 10 s, would lose more finished trials when a driver dies.
        "TUNE_GLOBAL_CHECKPOINT_S": "2",
        # Ctrl-C reaches the whole foreground process group, Prefect's ephemeral API server
        # included, which stops at once. Tune's own handler would swallow the first Ctrl-C and
        # let the study go on to its next phase without its API server. seqlab's handler
        # (`cli.process.interruptible`) asks Tune to stop instead, through the stop handler Tune
        # keeps for SIGUSR1 (`tuning.stop_tuning`): Tune saves its state once more and returns,
        # and the study stops there (`tuning.StudyInterrupted`); `seqlab resume` continues from
        # that state.
        "TUNE_DISABLE_SIGINT_HANDLER": "1",
        # Ray's dashboard and usage stats are not needed for an embedded run.
        "RAY_USAGE_STATS_ENABLED": "0",
        # MLflow would otherwise warn about every Git-less environment and pip inference.
        "GIT_PYTHON_REFRESH": "quiet",
        # MLflow draws a progress bar for every artifact it downloads, the report's spec.json too.
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # seqlab prints the one link that matters; MLflow would print one per run it ends.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    ray = ray_address()
    if ray and not os.environ.get("RAY_ADDRESS"):
        defaults["RAY_AUTH_MODE"] = "token"  # the stack's Ray head requires its token
    # The run starts a Ray of its own, or joins one on loopback: a driver must then be
    # single-machine too, or it would look for its node's servers at the machine's address.
    if ray is None or ray.rsplit(":", 1)[0] in LOOPBACK_HOSTS:
        defaults[RAY_SINGLE_MACHINE] = "0"
    api = prefect_api_url()
    if api:  # the flow run is recorded by the stack's Prefect server, not an ephemeral one
        defaults["PREFECT_API_URL"] = api
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def quiet_known_warnings() -> None:
    """Silence third-party warnings a user can do nothing about; everything else still shows."""
    import warnings

    # torch.export, used by MLflow to check a model's input example, on cuDNN RNN weights.
    warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights")
    # lightning's own use of a torch API that torch has deprecated.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Lightning, on a machine of more than 2 cores, about loaders without worker processes:
    # seqlab's batches are slices of tensors in memory, which workers would only copy.
    warnings.filterwarnings("ignore", message=r"The '\w+_dataloader' does not have many workers")
    # MLflow announces, at INFO, each table it creates in a new SQLite store.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # MLflow says, at INFO, that it checks each champion's input example against its signature.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
