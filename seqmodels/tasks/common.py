"""Pieces tasks share: a vocabulary, padding, option checks, splitting, and baseline metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.metrics import sequence_metrics
from seqmodels.tasks.base import Split
from seqmodels.tokens import EOS, FIRST_SYMBOL, PAD

T = TypeVar("T")
SPLITS = ("train", "val", "test")
SPLIT_SIZES = ("n_train", "n_val", "n_test")  # the options of a generator's split sizes


@dataclass(frozen=True)
class Vocabulary:
    """Symbols in id order: `symbols[i]` has id FIRST_SYMBOL + i (PAD, BOS, EOS come first)."""

    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("vocabulary symbols must be unique")

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[str]]) -> Vocabulary:
        """Every symbol that occurs, sorted, so the ids do not depend on the order of examples."""
        return cls(tuple(sorted({s for seq in sequences for s in seq})))

    @property
    def size(self) -> int:
        """The number of ids, the reserved ones included: an embedding's row count."""
        return FIRST_SYMBOL + len(self.symbols)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        index = self._index
        return [index[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Symbols up to the first EOS; reserved ids are dropped."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= FIRST_SYMBOL:
                out.append(self.symbols[i - FIRST_SYMBOL])
        return out

    @cached_property
    def _index(self) -> dict[str, int]:
        return {s: FIRST_SYMBOL + i for i, s in enumerate(self.symbols)}


def pad(sequences: Sequence[Sequence[int]], eos: bool) -> tuple[np.ndarray, np.ndarray]:
    """Id lists -> (N, L) int64 padded with PAD, and (N,) int64 lengths (the EOS included)."""
    tail = [EOS] if eos else []
    rows = [list(seq) + tail for seq in sequences]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.full((len(rows), int(lengths.max(initial=1))), PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out, lengths


def seq2seq_split(
    vocab: Vocabulary, sources: Sequence[Sequence[str]], targets: Sequence[Sequence[str]]
) -> Split:
    """A seq2seq split: x (N, S) ids without EOS, y (N, U) ids ending in EOS, and lengths."""
    x, x_len = pad([vocab.encode(s) for s in sources], eos=False)
    y, y_len = pad([vocab.encode(t) for t in targets], eos=True)
    return {"x": x, "x_len": x_len, "y": y, "y_len": y_len}


def pairs_split(vocab: Vocabulary, pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> Split:
    """The seq2seq split of (source, target) pairs."""
    return seq2seq_split(vocab, [s for s, _ in pairs], [t for _, t in pairs])


def generator_options(n_train: int, n_val: int, n_test: int) -> Callable[[type[T]], type[T]]:
    """Make a generator's options class a frozen dataclass ending in the split sizes.

    The fields `n_train`, `n_val` and `n_test` (int, these defaults) follow the class's own,
    and are checked >= 1 after its own `__post_init__`, so every split has an example.
    """

    def decorate(cls: type[T]) -> type[T]:
        for name, default in zip(SPLIT_SIZES, (n_train, n_val, n_test), strict=True):
            cls.__annotations__[name] = "int"  # as `from __future__ import annotations` writes it
            setattr(cls, name, default)
        own_checks = cls.__dict__.get("__post_init__")

        def __post_init__(self: T) -> None:
            if own_checks is not None:
                own_checks(self)
            check_counts(self)

        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        return dataclass(frozen=True)(cls)

    return decorate


def check_counts(options: object, names: Sequence[str] = SPLIT_SIZES) -> None:
    """Each named option is at least 1; by default the split sizes (every split needs an
    example)."""
    for name in names:
        if getattr(options, name) < 1:
            raise ConfigError(name, "must be >= 1")


def drawn_splits(
    options: object, seed: int, draw: Callable[[np.random.Generator, int], Split]
) -> dict[str, Split]:
    """Train, val and test, in that order, each of `draw(rng, n)` with n the options' `n_train`,
    `n_val` or `n_test`, from one generator seeded by `seed`."""
    rng = np.random.default_rng(seed)
    return {split: draw(rng, getattr(options, f"n_{split}")) for split in SPLITS}


def held_out_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """How many of `n` items train, validate and test: the held-out parts are rounded."""
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    return n - n_val - n_test, n_val, n_test


def shuffled_parts(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Indices of `n` items shuffled by `seed`: the first test_fraction test, the next
    val_fraction validate, the rest train."""
    _, n_val, n_test = held_out_counts(n, val_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    return {
        "train": order[n_test + n_val :],
        "val": order[n_test : n_test + n_val],
        "test": order[:n_test],
    }


def check_length_range(low: int, high: int, low_name: str, high_name: str, floor: int = 1) -> None:
    """`floor <= low <= high`, so a study can sweep lengths without an empty range."""
    if low < floor:
        raise ConfigError(low_name, f"must be >= {floor}")
    if high < low:
        raise ConfigError(high_name, f"must be >= {low_name} ({low})")


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Held-out fractions in (0, 1) that leave some data to train on."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(name, "must be in (0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError("test_fraction", "val_fraction + test_fraction must be < 1")


def majority_target_metrics(splits: dict[str, Split]) -> dict[str, float]:
    """Scores on test of always answering train's most frequent target sequence."""
    train, test = splits["train"], splits["test"]
    rows = Counter(
        tuple(row[:n].tolist()) for row, n in zip(train["y"], train["y_len"], strict=True)
    )
    best = np.array(rows.most_common(1)[0][0], dtype=np.int64)
    pred = np.broadcast_to(best, (test["y"].shape[0], best.shape[0]))
    return sequence_metrics(pred, test["y"], test["y_len"])


def echo_metrics(split: Split) -> dict[str, float]:
    """Scores of answering with the input itself followed by EOS."""
    x, x_len = split["x"], split["x_len"]
    pred = np.concatenate([x, np.full((x.shape[0], 1), PAD, dtype=np.int64)], axis=1)
    pred[np.arange(x.shape[0]), x_len] = EOS
    return sequence_metrics(pred, split["y"], split["y_len"])


def majority_class_accuracy(splits: dict[str, Split]) -> float:
    """Accuracy on test of always answering train's most frequent class."""
    classes, counts = np.unique(splits["train"]["y"], return_counts=True)
    return float(np.mean(splits["test"]["y"] == classes[np.argmax(counts)]))
