"""MLflow for a study: its experiment and runs (`runs`), and each trial mirrored into a
child run by a Tune callback on the driver (`trial_runs`).

The package re-exports `runs`, the helpers the rest of seqlab calls as `tracking.<name>`.
"""

from pipelines.tracking.runs import (  # noqa: F401
    PACKAGES,
    SUITE_TASK,
    artifact_access_problem,
    child_runs,
    client,
    delete_lost,
    driver_alive,
    driver_tags,
    end_running,
    ensure_experiment,
    latest_study_run,
    log_dataset,
    provenance_tags,
    run_url,
)
