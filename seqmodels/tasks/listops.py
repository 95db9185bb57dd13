"""ListOps (Nangia & Bowman 2018): evaluate nested list operations over the digits 0-9.

An expression such as `[MAX 2 9 [MIN 4 7 ] 0 ]` is a tree; its value, a digit, is the class.
A chain RNN reads the tokens left to right; a recursive net (section 10.6) can follow the tree,
which each example carries as `x_parent` (see TREE_ENCODING).

Operators: MIN, MAX, MED (the median; for an even count the floor of the mean of the middle
two, as `int(numpy.median)`), SM (sum modulo 10).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.options import check_range
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import (
    Vocabulary,
    check_length_range,
    drawn_splits,
    generator_options,
    pad,
)
from seqmodels.tasks.families import ClassificationTask, TokenTask

OPERATORS = ("[MAX", "[MED", "[MIN", "[SM")
CLOSE = "]"
VOCABULARY = Vocabulary((*(str(d) for d in range(10)), *OPERATORS, CLOSE))
NO_PARENT = -1
TREE_ENCODING = (
    "x_parent[i, j] is the position of the operator token ('[MAX' ...) whose list holds token "
    "j: a digit's or a nested operator's enclosing list, or, for ']', the list it closes. "
    "The root operator, at position 0, and padding hold -1."
)


def apply(operator: str, values: list[int]) -> int:
    """The value of one list: `operator` is one of OPERATORS."""
    if operator == "[MAX":
        return max(values)
    if operator == "[MIN":
        return min(values)
    if operator == "[MED":
        return int(np.median(values))
    if operator == "[SM":
        return sum(values) % 10
    raise ValueError(f"unknown operator {operator!r}; choose from: {', '.join(OPERATORS)}")


@generator_options(n_train=10000, n_val=1000, n_test=1000)
class ListOpsOptions:
    """Tree shape and token-length bounds of the generated expressions.

    Each list has 2..`max_args` arguments; each argument is itself a list with probability
    `branch_prob` while the depth is below `max_depth`, else a digit. Expressions whose token
    count falls outside `min_length`..`max_length` are drawn again.
    """

    max_depth: int = 5
    max_args: int = 5
    branch_prob: float = 0.25
    min_length: int = 4
    max_length: int = 100

    def __post_init__(self) -> None:
        check_range("max_depth", self.max_depth >= 1, "must be >= 1")
        check_range("max_args", self.max_args >= 2, "must be >= 2")
        check_range("branch_prob", 0.0 <= self.branch_prob <= 1.0, "must be in [0, 1]")
        check_length_range(self.min_length, self.max_length, "min_length", "max_length", floor=4)
        if self.min_length > _longest(self.max_depth, self.max_args):
            longest = _longest(self.max_depth, self.max_args)
            raise ConfigError("min_length", f"must be <= {longest}, the longest tree possible")


def _longest(depth: int, args: int) -> int:
    """Tokens in the largest tree: an operator, `args` subtrees, a "]"."""
    return 2 + args * (1 if depth == 1 else _longest(depth - 1, args))


@TASKS.register("listops")
class ListOpsTask(ClassificationTask, TokenTask):
    """Classify an expression by its value (10 classes); tokens in x, the tree in x_parent."""

    resample = "redraw"  # every split drawn from the generator

    options_type = ListOpsOptions
    classes = 10
    baseline_note = (
        "majority class of train, accuracy on test (measured); Nangia & Bowman 2018 report "
        "the same kind of baseline for their ListOps set"
    )

    @property
    def _vocab(self) -> Vocabulary:
        return VOCABULARY

    def card_extras(self) -> dict[str, Any]:
        return {"tree_encoding": TREE_ENCODING, "operators": list(OPERATORS)}

    def generate(self, seed: int) -> dict[str, Split]:
        return drawn_splits(self.options, seed, self._split)

    def _split(self, rng: np.random.Generator, n: int) -> Split:
        o = self.options
        rows: list[list[int]] = []
        parents: list[list[int]] = []
        labels: list[int] = []
        budget = 1000 * n + 10_000  # draws before giving up on a length range too rare
        while len(rows) < n:
            budget -= 1
            if budget < 0:
                raise ConfigError(
                    "min_length",
                    "expressions this long are too rare; widen the range or raise branch_prob",
                )
            tokens: list[str] = []
            parent: list[int] = []
            value = _expression(rng, o, 1, NO_PARENT, tokens, parent)
            if o.min_length <= len(tokens) <= o.max_length:
                rows.append(VOCABULARY.encode(tokens))
                parents.append(parent)
                labels.append(value)
        x, x_len = pad(rows, eos=False)
        x_parent = np.full(x.shape, NO_PARENT, dtype=np.int64)
        for i, parent in enumerate(parents):
            x_parent[i, : len(parent)] = parent
        return {"x": x, "x_len": x_len, "x_parent": x_parent, "y": np.array(labels, np.int64)}


def _expression(
    rng: np.random.Generator,
    o: ListOpsOptions,
    depth: int,
    parent: int,
    tokens: list[str],
    parents: list[int],
) -> int:
    """Append one list's tokens and parent positions; return its value."""
    operator = OPERATORS[int(rng.integers(len(OPERATORS)))]
    here = len(tokens)
    tokens.append(operator)
    parents.append(parent)
    values = []
    for _ in range(int(rng.integers(2, o.max_args + 1))):
        if depth < o.max_depth and rng.random() < o.branch_prob:
            values.append(_expression(rng, o, depth + 1, here, tokens, parents))
        else:
            digit = int(rng.integers(10))
            tokens.append(str(digit))
            parents.append(here)
            values.append(digit)
    tokens.append(CLOSE)
    parents.append(here)
    return apply(operator, values)
