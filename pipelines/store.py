"""The data store: prepared datasets, content-addressed under `SEQLAB_HOME/data`.

A dataset's directory name is the digest of what produced it (task, options, seed, generator
version), so the same inputs never regenerate and a directory's content never changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from seqmodels.batch import BOS, EOS, FIRST_SYMBOL, PAD
from seqmodels.data import SPLITS
from seqmodels.tasks import TASKS, Task


class DatasetRef(BaseModel):
    """What a trial needs to find and judge a prepared dataset. Paths are absolute."""

    model_config = ConfigDict(frozen=True)

    task: str
    uri: str
    digest: str
    sizes: dict[str, int]
    input_size: int
    output_size: int
    metric: str
    baseline: float
    family: str = "regression"
    vocab_size: int | None = None  # the number of token ids for token inputs; None for real ones


def dataset_digest(task_name: str, options: dict[str, Any], seed: int) -> str:
    """The cache key: task name, options, seed, the generator's code version and, for tasks
    that read a file, the file's content hash."""
    return _digest(build_task(task_name, options), options, seed)


def _digest(task: Task, options: dict[str, Any], seed: int) -> str:
    payload = {"task": task.name, "options": options, "seed": seed, "version": task.version}
    fingerprint = task.fingerprint()
    if fingerprint is not None:  # absent for pure generators, so their digests stay as they were
        payload["source"] = fingerprint
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def build_task(task_name: str, options: dict[str, Any]) -> Task:
    return TASKS.get(task_name).from_options(options)


def prepare(task_name: str, options: dict[str, Any], seed: int, root: Path) -> DatasetRef:
    """Generate the splits and data card unless the store already holds them."""
    task = build_task(task_name, options)
    digest = _digest(task, options, seed)
    target = root / "data" / f"{task_name}-{digest}"
    if not (target / "card.json").exists():
        _write_atomically(target, task, task.generate(seed), options, seed, digest)
    return read_ref(target)


def read_ref(directory: Path) -> DatasetRef:
    """The DatasetRef of a prepared dataset directory, read from its card."""
    card = json.loads((directory / "card.json").read_text())
    return DatasetRef(
        task=card["task"],
        uri=str(directory),
        digest=card["digest"],
        sizes={split: card["splits"][split]["size"] for split in SPLITS},
        input_size=card["input_size"],
        output_size=card["output_size"],
        metric=card["metric"],
        baseline=card["baseline"]["value"],
        family=card.get("family", "regression"),  # cards written before families existed
        vocab_size=card.get("vocab_size"),
    )


def _write_atomically(
    target: Path,
    task: Task,
    splits: dict[str, dict[str, np.ndarray]],
    options: dict[str, Any],
    seed: int,
    digest: str,
) -> None:
    """Write every file into a temporary sibling directory, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for split, arrays in splits.items():
            np.savez(staging / f"{split}.npz", **arrays)
        card = _card(task, splits, options, seed, digest)
        (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        try:
            os.rename(staging, target)
        except OSError:
            # Another process prepared the same content first; theirs is identical.
            if not (target / "card.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _card(
    task: Task,
    splits: dict[str, dict[str, np.ndarray]],
    options: dict[str, Any],
    seed: int,
    digest: str,
) -> dict[str, Any]:
    """The data card: what was generated, how big, and what a trivial model scores."""
    vocabulary = task.vocabulary
    return {
        "task": task.name,
        "generator_version": task.version,
        "options": dataclasses.asdict(task.options),
        "seed": seed,
        "digest": digest,
        "family": task.family,
        "format": FORMAT,
        "input_size": task.input_size,
        "output_size": task.output_size,
        "vocab_size": None if vocabulary is None else task.input_size,
        "vocabulary": None if vocabulary is None else _vocabulary_card(vocabulary),
        "splits": {split: _split_card(arrays) for split, arrays in splits.items()},
        "metric": task.metric,
        "metrics": list(task.metrics or (task.metric,)),
        "baseline": {"value": task.baseline_on(splits), "note": task.baseline_note},
        "task_details": task.card_extras(),
    }


FORMAT = (
    "npz per split, batch contract of seqmodels.batch: x (N, T, F) float32 or (N, T) int64 token "
    "ids padded with PAD=0; y (N, O) float32, (N,) int64 classes or (N, U) int64 ids ending in "
    "EOS=2; x_len, y_len (N,) int64 true lengths where present; x_parent (N, T) int64 tree "
    "parents where present"
)


def _vocabulary_card(symbols: tuple[str, ...]) -> dict[str, Any]:
    """Reserved ids, then the task's symbols from FIRST_SYMBOL on."""
    return {
        "reserved": {"PAD": PAD, "BOS": BOS, "EOS": EOS},
        "first_symbol": FIRST_SYMBOL,
        "symbols": list(symbols),
    }


def _split_card(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "size": int(arrays["x"].shape[0]),
        "x_shape": list(arrays["x"].shape),
        "y_shape": list(arrays["y"].shape),
        "x_dtype": str(arrays["x"].dtype),
        "y_dtype": str(arrays["y"].dtype),
        "sha256": _sha256(arrays),
    }
    for key in ("x_len", "y_len"):
        if key in arrays:
            lengths = arrays[key]
            card[key] = {
                "min": int(lengths.min()),
                "mean": round(float(lengths.mean()), 3),
                "max": int(lengths.max()),
            }
    return card


def _sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()
