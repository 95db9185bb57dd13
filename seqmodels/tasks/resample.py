"""A seeded repeat's own training data: the study's splits resampled by the repeat's seed, in
the way its task declares (`Task.resample`), with the study's test split kept as it is.

Varying the data between repeats puts the data's share of the variance into the verdict's
intervals (Bouthillier et al. 2021, "Accounting for Variance in Machine Learning Benchmarks"):
with only the initialisation and the batches' order varied, two designs can differ by more
than their intervals on one draw of the data, and less on another.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from seqmodels.tasks.base import RESAMPLES, Resample, Split
from seqmodels.tokens import PAD


def resampled(
    splits: dict[str, Split],
    how: Resample,
    seed: int,
    redraw: Callable[[int], dict[str, Split]] | None = None,
) -> dict[str, Split]:
    """The study's `splits` resampled by `seed`: train and val drawn again (`redraw`, which
    generates a task's splits from a seed), a fresh split of the items train and val hold
    (`resplit`, each split keeping its size), or a bootstrap sample of train (`bootstrap`).
    Test is the study's, unchanged."""
    if how not in RESAMPLES:
        raise ValueError(f"unknown resampling {how!r}; choose from: {', '.join(RESAMPLES)}")
    test = splits["test"]
    if how == "redraw":
        if redraw is None:
            raise ValueError("redraw needs the task's generator")
        fresh = redraw(seed)
        return {"train": fresh["train"], "val": fresh["val"], "test": test}
    rng = np.random.default_rng(seed)
    train, val = splits["train"], splits["val"]
    if how == "bootstrap":
        n = _size(train)
        return {"train": _rows(train, rng.integers(0, n, size=n)), "val": val, "test": test}
    pool = _stacked(train, val)
    order = rng.permutation(_size(pool))
    n_train = _size(train)
    return {
        "train": _rows(pool, np.sort(order[:n_train])),
        "val": _rows(pool, np.sort(order[n_train:])),
        "test": test,
    }


def _size(split: Split) -> int:
    return int(split["x"].shape[0])


def _rows(split: Split, rows: np.ndarray) -> Split:
    return {key: array[rows] for key, array in split.items()}


def _stacked(first: Split, second: Split) -> Split:
    """Two splits' rows in one split; arrays of unequal widths are padded with PAD (token
    ids; a tree's parent array is read only up to `x_len`)."""
    if set(first) != set(second):
        raise ValueError(f"splits hold different arrays: {sorted(first)} and {sorted(second)}")
    stacked = {}
    for key in first:
        a, b = first[key], second[key]
        if a.ndim >= 2 and a.shape[1] != b.shape[1]:
            width = max(a.shape[1], b.shape[1])
            a, b = (_padded(array, width) for array in (a, b))
        stacked[key] = np.concatenate([a, b])
    return stacked


def _padded(array: np.ndarray, width: int) -> np.ndarray:
    pad = [(0, 0), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, constant_values=PAD)
