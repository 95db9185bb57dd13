"""The comparison table of a study."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.spec import StudySpec
from pipelines.store import DatasetRef

if TYPE_CHECKING:
    from pipelines.flows import VariantOutcome


@dataclass(frozen=True)
class VariantRow:
    """One variant's line in the comparison."""

    variant: str
    trials: int
    stopped_early: int
    failed: int
    best_val: float
    test: float
    config: dict[str, object]

    @classmethod
    def from_outcome(
        cls, outcome: VariantOutcome, test_metrics: dict[str, float], metric: str
    ) -> VariantRow:
        return cls(
            variant=outcome.variant,
            trials=outcome.trials,
            stopped_early=outcome.stopped_early,
            failed=outcome.failed,
            best_val=outcome.best_val,
            test=test_metrics[f"test/{metric}"],
            config=outcome.config,
        )


def comparison_table(spec: StudySpec, dataset: DatasetRef, rows: list[VariantRow]) -> str:
    """A Markdown table: variant, best val loss, test metric, and the task's baseline."""
    metric, baseline = dataset.metric, dataset.baseline
    searched = sorted(spec.search.space)
    lines = [
        f"## {spec.name}: {spec.task.name}",
        "",
        f"| variant | trials (early-stopped, failed) | best val/loss | test {metric} "
        f"| baseline {metric} | test / baseline | " + " | ".join(searched) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(searched),
    ]
    for row in sorted(rows, key=lambda r: r.test):
        values = " | ".join(_fmt(row.config.get(key)) for key in searched)
        lines.append(
            f"| {row.variant} | {row.trials} ({row.stopped_early}, {row.failed}) "
            f"| {row.best_val:.4f} | {row.test:.4f} | {baseline:.4f} "
            f"| {row.test / baseline:.3f} | {values} |"
        )
    lines += [
        "",
        f"Budget: {spec.search.trials_per_variant} trials per variant, "
        f"scheduler {spec.search.scheduler.name}, search {spec.search.algorithm}. "
        f"Test on {dataset.sizes['test']} held-out sequences (dataset {dataset.digest}).",
        "A single best trial per variant: no seeds were repeated, so no significance is claimed.",
    ]
    return "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
