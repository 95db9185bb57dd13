"""One base class per family: what every task of a family declares alike, said once.

A family base sets `family`, the headline `metric` and the `metrics` its LightningModule reports
(see `seqmodels.lit`), and the sizes or baseline that follow from the family. A task subclasses
one, names its options, version and baseline, and overrides only what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from seqmodels.tasks.base import Split, Task
from seqmodels.tasks.common import (
    Vocabulary,
    drawn_splits,
    majority_class_accuracy,
    majority_target_metrics,
    seq2seq_split,
)

Symbols = Sequence[str]  # one source or target: a string, or a list of symbols


class TokenTask(Task):
    """A task whose inputs are ids of one vocabulary, which `_vocab` gives.

    Subclasses define `_vocab` (usually a cached property); the sizes follow from it, the
    output's being the input's unless a family says otherwise.
    """

    token_inputs = True

    @property
    def _vocab(self) -> Vocabulary:
        raise NotImplementedError

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocab.symbols

    @property
    def input_size(self) -> int:
        return self._vocab.size

    @property
    def output_size(self) -> int:
        return self.input_size


class RegressionTask(Task):
    """Float targets, scored by MSE; by default one output per input feature (a forecast of
    every column, a reconstruction)."""

    family = "regression"
    metric = "mse"
    metrics = ("mse", "mae")

    @property
    def output_size(self) -> int:
        return self.input_size


class ClassificationTask(Task):
    """One of `classes` class ids per sequence; the baseline is train's majority class."""

    family = "classification"
    metric = "accuracy"
    metrics = ("accuracy", "cross_entropy")
    classes: ClassVar[int]

    @property
    def output_size(self) -> int:
        return self.classes

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return majority_class_accuracy(splits)


class LanguageModelTask(TokenTask):
    """A token target at every input step (design pattern 1), scored by cross-entropy."""

    family = "lm"
    per_step = True
    metric = "cross_entropy"
    metrics = ("cross_entropy", "accuracy")


class Seq2SeqTask(TokenTask):
    """Source ids to a target sequence of its own length ending in EOS (section 10.4).

    A generator defines `draw`, and `generate` draws each split from it; a task over fixed
    data (a dictionary, a user's file) overrides `generate` instead. The baseline, measured:
    answer train's most frequent target, exact match on test.
    """

    resample = "redraw"  # a generator's splits are drawn; fixed data overrides

    family = "seq2seq"
    metric = "exact_match"
    metrics = ("exact_match", "token_accuracy")

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return majority_target_metrics(splits)["exact_match"]

    def draw(self, rng: np.random.Generator, n: int) -> tuple[list[Symbols], list[Symbols]]:
        """`n` sources and their targets, as symbol sequences (strings or lists of symbols)."""
        raise NotImplementedError

    def generate(self, seed: int) -> dict[str, Split]:
        def split(rng: np.random.Generator, n: int) -> Split:
            return seq2seq_split(self._vocab, *self.draw(rng, n))

        return drawn_splits(self.options, seed, split)
