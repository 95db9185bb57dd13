"""The data store: prepared datasets, content-addressed under `<root>/data`.

The root is a local directory (`SEQLAB_HOME` by default) or any fsspec URL (`SEQLAB_STORE`,
e.g. `s3://bucket/seqlab`), so that every node of a cluster reads the same datasets. A
dataset's directory name is the digest of what produced it (task, options, seed, generator
version), so the same inputs never regenerate and a directory's content never changes.

A dataset is complete when its `card.json` exists. On a local disk the whole directory is
written beside its place and renamed into it. An object store has no rename: there each split is
one object, written whole, and the card is written last; a directory without a card is
unfinished, is never read, and is written over by the next `prepare`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict

from seqmodels.files import SPLITS, join, read_arrays, read_card
from seqmodels.tasks import TASKS, Task
from seqmodels.tasks.resample import resampled
from seqmodels.tokens import BOS, EOS, FIRST_SYMBOL, PAD


class DatasetRef(BaseModel):
    """What a trial needs to find and judge a prepared dataset.

    `uri` is an absolute local path, or an fsspec URL when the store is one.
    """

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


def dataset_uri(root: str | Path, task_name: str, digest: str) -> str:
    """Where the dataset with this digest lives in the store at `root` (a path or a URL)."""
    name = f"{task_name}-{digest}"
    if is_url(root):
        return join(str(root), "data", name)
    return str(Path(root).expanduser().resolve() / "data" / name)


def is_url(root: str | Path) -> bool:
    """Whether `root` names the store by an fsspec URL rather than a local path."""
    return "://" in str(root)


class StoreError(ValueError):
    """The store's root names a filesystem that cannot be used here."""


def check_root(root: str | Path) -> None:
    """Raise StoreError, with fsspec's reason, when `root` is a URL of an unknown protocol or
    of one whose package is not installed (`s3://` needs s3fs, `gs://` gcsfs)."""
    if not is_url(root):
        return
    try:
        fsspec.core.url_to_fs(str(root))
    except (ImportError, ValueError) as err:
        raise StoreError(str(err)) from None


# The URL schemes of pyarrow's filesystems, through which Ray Tune reads and writes its storage.
TUNE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def check_study_root(root: str | Path) -> None:
    """`check_root`, and for an object store also that Ray Tune can keep its state there.

    A study's Tune state, results and checkpoints go beside the datasets when the store is an
    object store (`flows.tune_storage`), and Tune reaches it through pyarrow's filesystems, not
    fsspec's: a protocol only fsspec knows (`memory://`, `ftp://`) serves data, not studies.
    """
    check_root(root)
    scheme = str(root).split("://", 1)[0].lower() if is_url(root) else "file"
    if scheme not in TUNE_SCHEMES:
        known = ", ".join(f"{name}://" for name in TUNE_SCHEMES if name != "file")
        raise StoreError(
            f"Ray Tune cannot keep a study's state in a {scheme}:// store; use {known} "
            "or a directory"
        )


def is_prepared(uri: str) -> bool:
    """Whether the dataset at `uri` is complete: its card is written last."""
    fs, path = fsspec.core.url_to_fs(uri)
    return fs.exists(join(path, "card.json"))


def prepare(task_name: str, options: dict[str, Any], seed: int, root: str | Path) -> DatasetRef:
    """Generate the splits and data card unless the store at `root` already holds them."""
    task = build_task(task_name, options)
    digest = _digest(task, options, seed)
    target = dataset_uri(root, task_name, digest)
    if not is_prepared(target):
        splits = task.generate(seed)
        card = _card(task, splits, options, seed, digest)
        _write(target, splits, card)
    return read_ref(target)


# Bump whenever `prepare_draw` changes what it writes: it is part of a draw's digest.
DRAW_VERSION = 1


def draw_digest(base: DatasetRef, seed: int) -> str:
    """The cache key of `base` resampled by `seed`: the base's digest, the seed, the version."""
    payload = {"of": base.digest, "draw": seed, "version": DRAW_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_draw(base: DatasetRef, seed: int) -> DatasetRef:
    """The dataset a seeded repeat of seed `seed` trains on when its study varies the data:
    `base` resampled as its task declares (`seqmodels.tasks.resample`), with base's test split,
    written beside base unless it is there already. Its card says what it was drawn from."""
    digest = draw_digest(base, seed)
    name = f"{base.task}-{digest}"
    target = (
        join(base.uri.rsplit("/", 1)[0], name)
        if is_url(base.uri)
        else str(Path(base.uri).parent / name)
    )
    if not is_prepared(target):
        card = read_card(base.uri)
        how = TASKS.get(base.task).resample
        redraw = build_task(base.task, card["options"]).generate if how == "redraw" else None
        splits = resampled({s: read_arrays(base.uri, s) for s in SPLITS}, how, seed, redraw)
        card |= {
            "digest": digest,
            "splits": {split: _split_card(arrays) for split, arrays in splits.items()},
            "draw": {"of": base.digest, "seed": seed, "method": how},
        }
        _write(target, splits, card)
    return read_ref(target)


def read_ref(uri: str | Path) -> DatasetRef:
    """The DatasetRef of a prepared dataset, read from its card."""
    card = read_card(str(uri))
    return DatasetRef(
        task=card["task"],
        uri=str(uri),
        digest=card["digest"],
        sizes={split: card["splits"][split]["size"] for split in SPLITS},
        input_size=card["input_size"],
        output_size=card["output_size"],
        metric=card["metric"],
        baseline=card["baseline"]["value"],
        family=card.get("family", "regression"),  # cards written before families existed
        vocab_size=card.get("vocab_size"),
    )


def _write(target: str, splits: dict[str, dict[str, np.ndarray]], card: dict[str, Any]) -> None:
    fs, path = fsspec.core.url_to_fs(target)
    if isinstance(fs, LocalFileSystem):
        _write_atomically(Path(path), splits, card)
    else:
        _write_objects(fs, path, splits, card)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _card_bytes(card: dict[str, Any]) -> bytes:
    return (json.dumps(card, indent=2) + "\n").encode()


def _write_atomically(
    target: Path, splits: dict[str, dict[str, np.ndarray]], card: dict[str, Any]
) -> None:
    """Write every file into a temporary sibling directory, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for split, arrays in splits.items():
            (staging / f"{split}.npz").write_bytes(_npz(arrays))
        (staging / "card.json").write_bytes(_card_bytes(card))
        try:
            os.rename(staging, target)
        except OSError:
            # Another process prepared the same content first; theirs is identical.
            if not (target / "card.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_objects(
    fs: fsspec.AbstractFileSystem,
    target: str,
    splits: dict[str, dict[str, np.ndarray]],
    card: dict[str, Any],
) -> None:
    """Write each split as one whole object, then the card, which marks the dataset complete.

    Every byte is built in memory first, so a failed generator writes nothing. A writer that
    dies between objects leaves splits without a card: unfinished, and rewritten next time.
    """
    files = {f"{split}.npz": _npz(arrays) for split, arrays in splits.items()}
    fs.makedirs(target, exist_ok=True)
    for name, content in files.items():
        fs.pipe_file(join(target, name), content)
    fs.pipe_file(join(target, "card.json"), _card_bytes(card))


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
