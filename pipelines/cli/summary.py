"""The end of a study's output: where the time went, where to browse it, what was left out."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipelines.ops import settings

if TYPE_CHECKING:
    from pipelines.spec import StudySpec
    from pipelines.study.timings import PhaseSpan

TRAINING_PHASES = ("trials",)  # the phase in which Tune runs trials (flows.run_study)
UI_PORT = 5000  # `mlflow ui`'s own default


def time_summary(
    phases: dict[str, float],
    total: float,
    train_seconds: float,
    cpus_per_trial: float,
    cpus: int | None,
    spans: Mapping[str, PhaseSpan] | None = None,
) -> list[str]:
    """The study's timing lines: each phase's wall seconds, then what training used of them,
    then (`spans`) the span and summed work of the search and of the repeats, which overlap in
    the one Tuner: each from its first trial's start to its last one's end.

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
    lines.append(used)
    if spans:
        lines.append(
            "overlapping in that time: "
            + "; ".join(
                f"{name} from its first trial's start to its last one's end {span.span_s:.1f}s, "
                f"training {span.work_s:.1f}s summed"
                for name, span in spans.items()
            )
        )
    return lines


def training_share(
    train_seconds: float, wall_seconds: float, cpus_per_trial: float, cpus: float
) -> float:
    """The share of `cpus` x `wall_seconds` CPU-seconds that trials reserved while training."""
    return train_seconds * cpus_per_trial / (wall_seconds * cpus)


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


def left_out_status(spec: StudySpec, left_out: dict[str, str]) -> int:
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
