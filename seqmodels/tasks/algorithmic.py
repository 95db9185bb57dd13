"""Algorithmic seq2seq tasks whose difficulty grows with length: reverse, sort, addition.

Each writes its source and target as symbol sequences over a small vocabulary; targets end in
EOS. `min_length`/`max_length` (or digits) bound each example, so a study can sweep length and
watch a fixed-size context fail where attention does not (Bahdanau et al. 2015, fig 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.tasks.base import TASKS, Split, Task
from seqmodels.tasks.common import (
    Vocabulary,
    check_counts,
    check_length_range,
    echo_metrics,
    majority_target_metrics,
    seq2seq_split,
)

SEQ2SEQ_METRICS = ("exact_match", "token_accuracy")
MAX_ALPHABET = 1000


@dataclass(frozen=True)
class SymbolSequenceOptions:
    """Sequences of `min_length`..`max_length` symbols (uniform) from an alphabet of `alphabet`."""

    alphabet: int = 10
    min_length: int = 5
    max_length: int = 20
    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 1000

    def __post_init__(self) -> None:
        if not 2 <= self.alphabet <= MAX_ALPHABET:
            raise ConfigError("alphabet", f"must be in [2, {MAX_ALPHABET}]")
        check_length_range(self.min_length, self.max_length, "min_length", "max_length")
        check_counts(self)


@dataclass(frozen=True)
class SymbolSequenceTask(Task):
    """A seq2seq task over symbols "0".."A-1"; subclasses define `transform`."""

    token_inputs: ClassVar[bool] = True
    options_type: ClassVar[type] = SymbolSequenceOptions
    family: ClassVar[Literal["seq2seq"]] = "seq2seq"
    metric: ClassVar[str] = "exact_match"
    metrics: ClassVar[tuple[str, ...]] = SEQ2SEQ_METRICS

    options: SymbolSequenceOptions = SymbolSequenceOptions()

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return tuple(str(i) for i in range(self.options.alphabet))

    @property
    def input_size(self) -> int:
        return Vocabulary(self.vocabulary).size

    @property
    def output_size(self) -> int:
        return self.input_size

    def baseline_on(self, splits: dict[str, Split]) -> float:
        # Answering with the input unchanged: right only when the transform leaves it so.
        return echo_metrics(splits["test"])["exact_match"]

    @staticmethod
    def transform(source: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def generate(self, seed: int) -> dict[str, Split]:
        rng = np.random.default_rng(seed)
        o = self.options
        vocab = Vocabulary(self.vocabulary)
        sizes = {"train": o.n_train, "val": o.n_val, "test": o.n_test}
        out = {}
        for split, n in sizes.items():
            lengths = rng.integers(o.min_length, o.max_length + 1, size=n)
            sources = [rng.integers(0, o.alphabet, size=k) for k in lengths]
            targets = [self.transform(s) for s in sources]
            out[split] = seq2seq_split(
                vocab, [_names(s) for s in sources], [_names(t) for t in targets]
            )
        return out


def _names(symbols: np.ndarray) -> list[str]:
    return [str(s) for s in symbols.tolist()]


@TASKS.register("reverse")
@dataclass(frozen=True)
class ReverseTask(SymbolSequenceTask):
    """Write the source backwards: the first source symbol is needed last (Sutskever et al.
    2014 reversed their sources to shorten exactly this kind of dependency)."""

    name: ClassVar[str] = "reverse"
    version: ClassVar[int] = 1
    baseline_note: ClassVar[str] = (
        "answer with the input unchanged (right only for palindromes), exact match on test, "
        "measured; no published number for this generator"
    )

    @staticmethod
    def transform(source: np.ndarray) -> np.ndarray:
        return source[::-1]


@TASKS.register("sort")
@dataclass(frozen=True)
class SortTask(SymbolSequenceTask):
    """Sort the source symbols by id (Vinyals, Bengio & Kudlur 2016, "Order Matters")."""

    name: ClassVar[str] = "sort"
    version: ClassVar[int] = 1
    baseline_note: ClassVar[str] = (
        "answer with the input unchanged (right only when already sorted), exact match on "
        "test, measured; no published number for this generator"
    )

    @staticmethod
    def transform(source: np.ndarray) -> np.ndarray:
        return np.sort(source, kind="stable")


@dataclass(frozen=True)
class AdditionOptions:
    """Each operand has `min_digits`..`max_digits` digits (uniform, no leading zero)."""

    min_digits: int = 1
    max_digits: int = 5
    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 1000

    def __post_init__(self) -> None:
        check_length_range(self.min_digits, self.max_digits, "min_digits", "max_digits")
        if self.max_digits > 18:
            raise ConfigError("max_digits", "must be <= 18 (operands are int64)")
        check_counts(self)


@TASKS.register("addition")
@dataclass(frozen=True)
class AdditionTask(Task):
    """Integer addition written as characters: "123+45" -> "168" (Zaremba & Sutskever 2014,
    "Learning to Execute", read a program's text and write its output)."""

    token_inputs: ClassVar[bool] = True
    name: ClassVar[str] = "addition"
    options_type: ClassVar[type] = AdditionOptions
    version: ClassVar[int] = 1
    family: ClassVar[Literal["seq2seq"]] = "seq2seq"
    metric: ClassVar[str] = "exact_match"
    metrics: ClassVar[tuple[str, ...]] = SEQ2SEQ_METRICS
    baseline_note: ClassVar[str] = (
        "answer train's most frequent sum, exact match on test, measured; no published "
        "number for this generator"
    )

    options: AdditionOptions = AdditionOptions()

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return (*"0123456789", "+")

    @property
    def input_size(self) -> int:
        return Vocabulary(self.vocabulary).size

    @property
    def output_size(self) -> int:
        return self.input_size

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return majority_target_metrics(splits)["exact_match"]

    def generate(self, seed: int) -> dict[str, Split]:
        rng = np.random.default_rng(seed)
        o = self.options
        vocab = Vocabulary(self.vocabulary)
        sizes = {"train": o.n_train, "val": o.n_val, "test": o.n_test}
        out = {}
        for split, n in sizes.items():
            a, b = _operands(rng, n, o.min_digits, o.max_digits)
            sources = [f"{p}+{q}" for p, q in zip(a.tolist(), b.tolist(), strict=True)]
            targets = [str(p + q) for p, q in zip(a.tolist(), b.tolist(), strict=True)]
            out[split] = seq2seq_split(vocab, sources, targets)
        return out


def _operands(
    rng: np.random.Generator, n: int, min_digits: int, max_digits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Two (n,) int64 operand arrays, each number's digit count uniform in the range."""

    def draw() -> np.ndarray:
        digits = rng.integers(min_digits, max_digits + 1, size=n)
        # A d-digit number lies in [10^(d-1), 10^d); one digit includes 0.
        low = np.where(digits == 1, 0, 10 ** (digits - 1))
        return rng.integers(low, 10**digits)

    return draw(), draw()
