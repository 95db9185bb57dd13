"""The copy memory task (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016)."""

from __future__ import annotations

import math
from functools import cached_property, partial

import numpy as np

from seqmodels.options import check_range
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import Vocabulary, drawn_splits, generator_options
from seqmodels.tasks.families import LanguageModelTask
from seqmodels.tokens import FIRST_SYMBOL

N_COPY = 10  # symbols to remember, as in Arjovsky et al.
BLANK, DELIMITER = FIRST_SYMBOL, FIRST_SYMBOL + 1
FIRST_DATA = FIRST_SYMBOL + 2  # the alphabet's ids follow the blank and the delimiter


@generator_options(n_train=4000, n_val=500, n_test=500)
class CopyOptions:
    """The delay T, the alphabet size and the split sizes of the copy task."""

    delay: int = 100
    alphabet: int = 8

    def __post_init__(self) -> None:
        check_range("delay", self.delay >= 1, "must be >= 1 (T-1 blanks follow the symbols)")
        check_range("alphabet", self.alphabet >= 2, "must be >= 2")


@TASKS.register("copy")
class CopyTask(LanguageModelTask):
    """Remember 10 symbols over a delay of T steps, then write them out.

    Input (length T+20): 10 symbols drawn uniformly from the alphabet, T-1 blanks, the
    delimiter, 10 blanks. Target, per step: T+10 blanks, then the 10 symbols. A memoryless
    model can only output blanks and then guess uniformly, which costs 10 ln(A) nats in T+20
    steps: cross-entropy 10 ln 8 / (T+20) for A = 8.
    """

    resample = "redraw"  # every split drawn from the generator

    options_type = CopyOptions
    baseline_note = (
        "memoryless: blanks, then a uniform guess over the alphabet; cross-entropy "
        "10 ln 8 / (T+20) nats per step (Arjovsky, Shah & Bengio 2016, section 4.1)"
    )

    @property
    def baseline(self) -> float:
        return N_COPY * math.log(self.options.alphabet) / (self.options.delay + 2 * N_COPY)

    @cached_property
    def _vocab(self) -> Vocabulary:
        """The blank, the delimiter (ids BLANK and DELIMITER), then the alphabet from FIRST_DATA."""
        return Vocabulary(("_", ":", *(str(i + 1) for i in range(self.options.alphabet))))

    def generate(self, seed: int) -> dict[str, Split]:
        o = self.options
        return drawn_splits(o, seed, partial(copy_split, delay=o.delay, alphabet=o.alphabet))


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
