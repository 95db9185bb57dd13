"""Algorithmic seq2seq tasks whose difficulty grows with length: reverse, sort, addition.

Each writes its source and target as symbol sequences over a small vocabulary; targets end in
EOS. `min_length`/`max_length` (or digits) bound each example, so a study can sweep length and
watch a fixed-size context fail where attention does not (Bahdanau et al. 2015, fig 2).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from seqmodels.options import check_range
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import (
    Vocabulary,
    check_length_range,
    echo_metrics,
    generator_options,
)
from seqmodels.tasks.families import Seq2SeqTask, Symbols

MAX_ALPHABET = 1000
ADDITION_VOCABULARY = Vocabulary((*"0123456789", "+"))


@generator_options(n_train=10000, n_val=1000, n_test=1000)
class SymbolSequenceOptions:
    """Sequences of `min_length`..`max_length` symbols (uniform) from an alphabet of `alphabet`."""

    alphabet: int = 10
    min_length: int = 5
    max_length: int = 20

    def __post_init__(self) -> None:
        check_range(
            "alphabet", 2 <= self.alphabet <= MAX_ALPHABET, f"must be in [2, {MAX_ALPHABET}]"
        )
        check_length_range(self.min_length, self.max_length, "min_length", "max_length")


class SymbolSequenceTask(Seq2SeqTask):
    """A seq2seq task over symbols "0".."A-1"; subclasses define `transform`."""

    options_type = SymbolSequenceOptions

    @cached_property
    def _vocab(self) -> Vocabulary:
        return Vocabulary(tuple(str(i) for i in range(self.options.alphabet)))

    def baseline_on(self, splits: dict[str, Split]) -> float:
        # Answering with the input unchanged: right only when the transform leaves it so.
        return echo_metrics(splits["test"])["exact_match"]

    @staticmethod
    def transform(source: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, n: int) -> tuple[list[Symbols], list[Symbols]]:
        o = self.options
        lengths = rng.integers(o.min_length, o.max_length + 1, size=n)
        sources = [rng.integers(0, o.alphabet, size=k) for k in lengths]
        return [_names(s) for s in sources], [_names(self.transform(s)) for s in sources]


def _names(symbols: np.ndarray) -> list[str]:
    return [str(s) for s in symbols.tolist()]


@TASKS.register("reverse")
class ReverseTask(SymbolSequenceTask):
    """Write the source backwards: the first source symbol is needed last (Sutskever et al.
    2014 reversed their sources to shorten exactly this kind of dependency)."""

    baseline_note = (
        "answer with the input unchanged (right only for palindromes), exact match on test, "
        "measured; no published number for this generator"
    )

    @staticmethod
    def transform(source: np.ndarray) -> np.ndarray:
        return source[::-1]


@TASKS.register("sort")
class SortTask(SymbolSequenceTask):
    """Sort the source symbols by id (Vinyals, Bengio & Kudlur 2016, "Order Matters")."""

    baseline_note = (
        "answer with the input unchanged (right only when already sorted), exact match on "
        "test, measured; no published number for this generator"
    )

    @staticmethod
    def transform(source: np.ndarray) -> np.ndarray:
        return np.sort(source, kind="stable")


@generator_options(n_train=10000, n_val=1000, n_test=1000)
class AdditionOptions:
    """Each operand has `min_digits`..`max_digits` digits (uniform, no leading zero)."""

    min_digits: int = 1
    max_digits: int = 5

    def __post_init__(self) -> None:
        check_length_range(self.min_digits, self.max_digits, "min_digits", "max_digits")
        check_range("max_digits", self.max_digits <= 18, "must be <= 18 (operands are int64)")


@TASKS.register("addition")
class AdditionTask(Seq2SeqTask):
    """Integer addition written as characters: "123+45" -> "168" (Zaremba & Sutskever 2014,
    "Learning to Execute", read a program's text and write its output)."""

    options_type = AdditionOptions
    baseline_note = (
        "answer train's most frequent sum, exact match on test, measured; no published "
        "number for this generator"
    )

    @property
    def _vocab(self) -> Vocabulary:
        return ADDITION_VOCABULARY

    def draw(self, rng: np.random.Generator, n: int) -> tuple[list[Symbols], list[Symbols]]:
        a, b = _operands(rng, n, self.options.min_digits, self.options.max_digits)
        pairs = list(zip(a.tolist(), b.tolist(), strict=True))
        return [f"{p}+{q}" for p, q in pairs], [str(p + q) for p, q in pairs]


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
