"""Which phase of a study a trial belongs to, read from its config: a search trial, or a seeded
repeat of its variant's best configuration (`phase: repeat`). Both run in the study's one Tuner
(`study.routing`), so each trial's config says which it is.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

PHASE = "phase"  # the config key that marks a seeded repeat
REPEAT = "repeat"
OF_TRIAL = "of_trial"  # in a repeat's config: the search trial whose configuration it retrains


def is_repeat(config: Mapping[str, Any] | None) -> bool:
    """Whether a trial's config is a seeded repeat's (else it is a search trial's)."""
    return (config or {}).get(PHASE) == REPEAT


def repeat_config(
    config: Mapping[str, Any], seed: int, of_trial: str, vary: Collection[str]
) -> dict[str, Any]:
    """The config of a seeded repeat of search trial `of_trial`'s `config` under `seed`: the
    sources of variance in `vary` (`spec.Varied`: init, order, data) drawn with `seed`, the
    others kept at the search trial's seed (the data at the study's), each named in the config
    so that the repeat's run records what varied."""
    kept = config["seed"]
    seeds = {
        "init_seed": seed if "init" in vary else kept,
        "order_seed": seed if "order" in vary else kept,
        **({"data_seed": seed} if "data" in vary else {}),
    }
    return {**copy.deepcopy(dict(config)), "seed": seed, **seeds, PHASE: REPEAT, OF_TRIAL: of_trial}


def resting_config(repeats: Iterable[tuple[str, float]]) -> str | None:
    """Of the search trials a variant's repeats retrained, given each repeat's `of_trial`
    and its best validation loss, the one the verdict rests on: the lowest mean validation
    loss over its repeats. Their test scores, which the verdict compares, play no part in the
    choice. Ties go to the trial named first; None when no repeat has a finite loss."""
    losses: dict[str, list[float]] = {}
    for trial, loss in repeats:
        losses.setdefault(trial, [])
        if math.isfinite(loss):
            losses[trial].append(loss)
    means = {trial: sum(v) / len(v) for trial, v in losses.items() if v}
    return min(means, key=lambda trial: means[trial]) if means else None


def varied(config: Mapping[str, Any]) -> list[str]:
    """The sources of variance a repeat's config draws with its own seed (`repeat_config`)."""
    named = (("init", "init_seed"), ("order", "order_seed"), ("data", "data_seed"))
    return [source for source, key in named if key in config and config[key] == config["seed"]]
