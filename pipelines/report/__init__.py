"""Phase 5, the report: a study's runs as MLflow holds them (`records`), the statistics of the
comparison (`stats`), the figures (`plots`) and the Markdown report (`markdown`).

The package re-exports what callers use, as `report.<name>`.
"""

from pipelines.report.markdown import (
    RATIO_MIN_BASELINE,
    Report,
    build,
    metric_mode,
    publish,
    rebuild,
    shows_ratio,
    write,
)
from pipelines.report.plots import GRAD_LAG
from pipelines.report.records import RunRecord, StudyRecord, collect, latest_parent

__all__ = [
    "GRAD_LAG",
    "RATIO_MIN_BASELINE",
    "Report",
    "RunRecord",
    "StudyRecord",
    "build",
    "collect",
    "latest_parent",
    "metric_mode",
    "publish",
    "rebuild",
    "shows_ratio",
    "write",
]
