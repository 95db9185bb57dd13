"""A prepared dataset's files, on a local disk or behind any fsspec URL (`s3://...`).

A prepared dataset is a directory holding `train.npz`, `val.npz`, `test.npz` and `card.json`
(see `pipelines.data.store` for how it is written). Reading it needs numpy and fsspec only, so that
tools which prepare or inspect data never import torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

SPLITS = ("train", "val", "test")


def join(root: str | Path, *names: str) -> str:
    """`root/names...` for a local path or an fsspec URL alike."""
    return "/".join([str(root).rstrip("/"), *names])


def read_arrays(root: str | Path, split: str) -> dict[str, np.ndarray]:
    """One split's arrays from a prepared dataset, at a local path or an fsspec URL."""
    with fsspec.open(join(root, f"{split}.npz"), "rb") as handle, np.load(handle) as arrays:
        return {key: arrays[key] for key in arrays.files}


def read_card(root: str | Path) -> dict[str, Any]:
    """A prepared dataset's data card (`card.json`), at a local path or an fsspec URL."""
    with fsspec.open(join(root, "card.json"), "rb") as handle:
        return json.loads(handle.read())
