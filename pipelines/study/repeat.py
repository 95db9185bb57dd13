"""Phase 3, the repeats: each variant's best configuration retrained under fresh seeds; their
test scores are what the statistics compare. They run in the study's one Tuner (`trials`), a
variant's as soon as its search is over (`routing`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ray import tune

from pipelines.spec import StudySpec
from pipelines.study import failures
from pipelines.study.search import LeftOut


@dataclass
class Repeats:
    """What the seeded repeats cost; their scores live on their MLflow runs."""

    runs: int
    failed: int
    train_seconds: float
    left_out: list[LeftOut] = field(default_factory=list)


def repeat_seeds(spec: StudySpec) -> list[int]:
    """Fresh seeds for the repeats, as many as the study may run: the search's own seed picked
    the winner, so it is not reused."""
    return [spec.fixed.seed + 1 + i for i in range(spec.seed_looks[-1])]


def repeats_of(
    variants: list[str], results: Iterable[tune.Result], diverged: failures.Divergence
) -> Repeats:
    """What the seeded repeats (`results`) cost, and which of `variants` they leave out."""
    results = list(results)
    ok = [r for r in results if r.error is None]
    return Repeats(
        runs=len(results),
        failed=len(results) - len(ok),
        train_seconds=sum(float(r.metrics.get("time_total_s", 0.0)) for r in ok),
        left_out=repeats_left_out(variants, results, diverged),
    )


def repeats_left_out(
    variants: list[str], results: Iterable[tune.Result], diverged: failures.Divergence
) -> list[LeftOut]:
    """The variants whose seeded repeats cannot be compared: one diverged, or every one failed.

    One diverged repeat is enough: its score (1e12, NaN) would make the variant's mean and
    interval meaningless, and "no significant difference" would hide that it blew up.
    """
    results, left_out = list(results), []
    for variant in variants:
        mine = [r for r in results if r.config.get("variant") == variant]
        errors = [r.error for r in mine if r.error is not None]
        reasons = [why for r in mine if r.error is None and (why := diverged(r.metrics))]
        if reasons:
            reason = f"{len(reasons)} of {len(mine)} seeded repeats diverged: {reasons[0]}"
            left_out.append(LeftOut(variant, reason))
        elif mine and len(errors) == len(mine):
            reason = f"every seeded repeat failed: {failures.error_line(errors[0])}"
            left_out.append(LeftOut(variant, reason))
    return left_out
