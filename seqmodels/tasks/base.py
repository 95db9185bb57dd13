"""The task interface and its registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.registry import Registry

# One split's arrays, following `seqmodels.batch`: "x" and "y" always, "x_len"/"y_len" where
# lengths vary or targets are sequences, and "x_parent" for tasks that carry a tree.
Split = dict[str, np.ndarray]

# Which LightningModule trains a task:
#   regression      x (N, T, F) float32 -> y (N, O) float32, one output per sequence (fig 10.5),
#                   or y (N, T, O), one per step, for a `per_step` task (`reconstruct`);
#   classification  x float32 or token ids -> y (N,) int64 class ids;
#   seq2seq         x (N, S) token ids -> y (N, U) token ids ending in EOS, lengths x_len/y_len
#                   (encoder-decoder, section 10.4);
#   lm              x (N, T) token ids -> y (N, T) token ids, one target per input step
#                   (design pattern 1): next-character prediction, or the copy task's
#                   per-step classification.
Family = Literal["regression", "classification", "seq2seq", "lm"]
FAMILIES: tuple[str, ...] = get_args(Family)

# How a seeded repeat gets training data of its own when a study varies the data (`resample`):
#   redraw     generate(seed) draws every split afresh from the task's distribution: the
#              repeat's train and val are drawn with its seed;
#   resplit    generate splits a fixed pool of exchangeable items: the repeat's train and val
#              are a fresh split of the items the study's train and val hold;
#   bootstrap  the items are windows of one series or text, cut by position so that validation
#              lies apart from training: the repeat's train is a bootstrap sample of the
#              study's, its val the study's.
# Every method keeps the study's test split, so that the repeats' scores stay comparable.
Resample = Literal["redraw", "resplit", "bootstrap"]
RESAMPLES: tuple[str, ...] = get_args(Resample)


@dataclass(frozen=True)
class Task:
    """A dataset generator, of one field: `options`, an `options_type` (its defaults when
    omitted). Subclasses set the class variables and implement `generate`; they stay frozen
    dataclasses of that one field, so they need no decorator of their own.

    Class variables:
        name: the name a spec uses; `TASKS.register` sets it.
        version: 1 at first; bump it whenever `generate` changes its output (it is part of the
            cache key).
        family: which LightningModule trains it (see `Family`).
        metric: the headline test metric.
        metrics: every test metric the family reports for this task, the headline first.
        baseline: the published score of a trivial predictor on `metric`.
        baseline_note: what that baseline is, and where it was published.
        per_step: whether y has a target at every input step, aligned with x (`lm` tasks,
            `reconstruct`): then the network must emit at every step, and truncated BPTT
            (10.2.2) has something to truncate. False: one target per sequence, or a target
            sequence of its own length (seq2seq).
        token_inputs: whether x holds token ids (N, T) int64 rather than float features
            (N, T, F): then an architecture embeds them (`embedding_size`) or reads them one-hot.
        next_input: whether y(t) is x(t+1) (language modelling): a network that reads ahead of
            t (a backward direction, an autoencoder's code of the whole input) sees its target.
        resample: how a seeded repeat's training data is drawn when the study varies the data
            (see `Resample`); "bootstrap", the default, suits any task.

    Token tasks (`vocabulary` is not None) use the ids of `seqmodels.batch`: PAD, BOS, EOS, then
    `vocabulary[i]` has id FIRST_SYMBOL + i. Their `input_size` is the number of ids.
    """

    options: Any = None

    name: ClassVar[str]
    options_type: ClassVar[type]
    version: ClassVar[int] = 1
    family: ClassVar[Family]
    metric: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]] = ()
    baseline_note: ClassVar[str]
    per_step: ClassVar[bool] = False
    token_inputs: ClassVar[bool] = False
    next_input: ClassVar[bool] = False
    resample: ClassVar[Resample] = "bootstrap"

    def __post_init__(self) -> None:
        if self.options is None:
            object.__setattr__(self, "options", self.options_type())  # frozen: set once, here

    @classmethod
    def from_options(cls, options: dict[str, object]) -> Task:
        """Build the task from a spec's `task.options` (unknown keys raise ConfigError)."""
        known = [f.name for f in fields(cls.options_type)]
        for key in options:
            if key not in known:
                raise ConfigError(key, f"unknown option; choose from: {', '.join(known)}")
        return cls(options=cls.options_type(**options))  # type: ignore[call-arg]

    @property
    def baseline(self) -> float:
        raise NotImplementedError

    def baseline_on(self, splits: dict[str, Split]) -> float:
        """The baseline on generated splits. Analytic baselines ignore them; measured ones
        (majority class, unigram entropy, persistence) override this."""
        return self.baseline

    @property
    def input_size(self) -> int:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    @property
    def vocabulary(self) -> tuple[str, ...] | None:
        """The symbols of a token task, in id order from FIRST_SYMBOL; None for real inputs."""
        return None

    def fingerprint(self) -> str | None:
        """A hash of what the output depends on beyond options and seed (a user's file, the
        Python version's standard library); None for pure generators. It joins the cache key."""
        return None

    def card_extras(self) -> dict[str, Any]:
        """Task-specific facts for the data card (a permutation, a file list, a tree encoding)."""
        return {}

    def generate(self, seed: int) -> dict[str, Split]:
        """Return {"train": split, "val": split, "test": split}, deterministic in `seed`."""
        raise NotImplementedError


class TaskRegistry(Registry[Task]):
    """The registry of tasks: registering a class under a name also sets its `name`."""

    def register(self, name: str) -> Callable[[type[Task]], type[Task]]:
        checked = super().register(name)  # rejects duplicates and classes that are not tasks

        def decorator(cls: type[Task]) -> type[Task]:
            checked(cls)
            cls.name = name
            return cls

        return decorator


TASKS = TaskRegistry("task", Task)
