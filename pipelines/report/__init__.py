"""Phase 5, the report: the statistics of a comparison (`stats`) and the Markdown report
built from a study's MLflow runs (`markdown`).

The package re-exports `markdown`, called as `report.<name>`.
"""

from pipelines.report.markdown import (  # noqa: F401
    GRAD_LAG,
    RATIO_MIN_BASELINE,
    Report,
    RunRecord,
    StudyRecord,
    build,
    collect,
    latest_parent,
    metric_mode,
    publish,
    rebuild,
    shows_ratio,
    write,
)
