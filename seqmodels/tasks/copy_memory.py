"""The copy memory task (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.tasks.base import TASKS, Split, Task
from seqmodels.tasks.common import Vocabulary, check_counts
from seqmodels.tokens import FIRST_SYMBOL

N_COPY = 10  # symbols to remember, as in Arjovsky et al.
BLANK, DELIMITER = FIRST_SYMBOL, FIRST_SYMBOL + 1
FIRST_DATA = FIRST_SYMBOL + 2  # the alphabet's ids follow the blank and the delimiter


@dataclass(frozen=True)
class CopyOptions:
    """The delay T, the alphabet size and the split sizes of the copy task."""

    delay: int = 100
    alphabet: int = 8
    n_train: int = 4000
    n_val: int = 500
    n_test: int = 500

    def __post_init__(self) -> None:
        if self.delay < 1:
            raise ConfigError("delay", "must be >= 1 (T-1 blanks follow the symbols)")
        if self.alphabet < 2:
            raise ConfigError("alphabet", "must be >= 2")
        check_counts(self)


@TASKS.register("copy")
@dataclass(frozen=True)
class CopyTask(Task):
    """Remember 10 symbols over a delay of T steps, then write them out.

    Input (length T+20): 10 symbols drawn uniformly from the alphabet, T-1 blanks, the
    delimiter, 10 blanks. Target, per step: T+10 blanks, then the 10 symbols. A memoryless
    model can only output blanks and then guess uniformly, which costs 10 ln(A) nats in T+20
    steps: cross-entropy 10 ln 8 / (T+20) for A = 8.
    """

    token_inputs: ClassVar[bool] = True
    name: ClassVar[str] = "copy"
    options_type: ClassVar[type] = CopyOptions
    version: ClassVar[int] = 1
    family: ClassVar[Literal["lm"]] = "lm"
    per_step: ClassVar[bool] = True  # a target at every input step
    metric: ClassVar[str] = "cross_entropy"
    metrics: ClassVar[tuple[str, ...]] = ("cross_entropy", "accuracy")
    baseline_note: ClassVar[str] = (
        "memoryless: blanks, then a uniform guess over the alphabet; cross-entropy "
        "10 ln 8 / (T+20) nats per step (Arjovsky, Shah & Bengio 2016, section 4.1)"
    )

    options: CopyOptions = CopyOptions()

    @property
    def baseline(self) -> float:
        return N_COPY * math.log(self.options.alphabet) / (self.options.delay + 2 * N_COPY)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return Vocabulary(("_", ":", *(str(i + 1) for i in range(self.options.alphabet)))).symbols

    @property
    def input_size(self) -> int:
        return FIRST_DATA + self.options.alphabet

    @property
    def output_size(self) -> int:
        return self.input_size

    def generate(self, seed: int) -> dict[str, Split]:
        rng = np.random.default_rng(seed)
        o = self.options
        sizes = {"train": o.n_train, "val": o.n_val, "test": o.n_test}
        return {split: copy_split(rng, n, o.delay, o.alphabet) for split, n in sizes.items()}


def copy_split(rng: np.random.Generator, n: int, delay: int, alphabet: int) -> Split:
    """`n` copy sequences: x and y (n, T+20) int64 ids, with lengths (all T+20)."""
    length = delay + 2 * N_COPY
    symbols = rng.integers(FIRST_DATA, FIRST_DATA + alphabet, size=(n, N_COPY))
    x = np.full((n, length), BLANK, dtype=np.int64)
    x[:, :N_COPY] = symbols
    x[:, N_COPY + delay - 1] = DELIMITER  # after T-1 blanks
    y = np.full((n, length), BLANK, dtype=np.int64)
    y[:, -N_COPY:] = symbols
    lengths = np.full(n, length, dtype=np.int64)
    return {"x": x, "x_len": lengths, "y": y, "y_len": lengths.copy()}
