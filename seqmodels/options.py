"""Options of a cell or an architecture: one frozen dataclass each, checked against its own
field types. `seqmodels.config` says which architecture takes which.

A spec writes options as a plain mapping (`cell_options: {peepholes: true}`), which pydantic
does not look inside, so `parse_options` checks every key and value against the dataclass's
annotations and reports the first mistake as a ConfigError naming the option.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from seqmodels.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class CellOptions:
    """Base of every cell's options. A cell with no options uses it as it is."""


OptionsT = TypeVar("OptionsT")  # a frozen options dataclass: a cell's or an architecture's


def option_names(options_type: type) -> list[str]:
    return [f.name for f in dataclasses.fields(options_type)]


def parse_options(
    options_type: type[OptionsT], raw: Mapping[str, Any], owner: str, kind: str = "cell"
) -> OptionsT:
    """Build `options_type` from a user's mapping; `owner` names the `kind` (cell, architecture).

    Raises:
        ConfigError: `field` is the option's name; the message lists the valid choices.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"a mapping of option names to values, not {type(raw).__name__}")
    names = option_names(options_type)
    hints = typing.get_type_hints(options_type)
    for key, value in raw.items():
        if key not in names:
            valid = f"choose from: {', '.join(names)}" if names else "it takes no options"
            raise ConfigError(str(key), f"unknown option of {kind} {owner!r}; {valid}")
        _check_type(key, value, hints[key])
    return options_type(**raw)


def _check_type(key: str, value: Any, hint: Any) -> None:
    """Reject a value that does not fit the annotation; YAML gives us plain Python values."""
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise ConfigError(key, f"{value!r} is not valid; choose from: {listed}")
    elif hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"{value!r} is not valid; choose from: true, false")
    elif hint is int:
        # bool is an int subclass in Python, but `delay: true` is a mistake, not 1
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"{value!r} is not valid; give an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"{value!r} is not valid; give a number")
    else:  # pragma: no cover - a programming error in an options dataclass
        raise TypeError(f"option {key!r} has an unsupported annotation {hint!r}")


def check_range(key: str, ok: bool, message: str) -> None:
    """Raise a ConfigError naming `key` unless `ok`; for the ranges in `__post_init__`."""
    if not ok:
        raise ConfigError(key, message)


# --- cells' options (seqmodels.models.cells) --------------------------------------------------


@dataclass(frozen=True)
class LeakyOptions(CellOptions):
    alpha: float = 0.5  # the fastest group's alpha; with time_scales > 1 the others are slower
    learn_alpha: bool = False
    time_scales: int = 1

    def __post_init__(self) -> None:
        check_range("alpha", 0 <= self.alpha < 1, "must be in [0, 1)")
        check_range("alpha", self.alpha > 0 or not self.learn_alpha, "must be > 0 when learned")
        check_range("time_scales", self.time_scales >= 1, "must be >= 1")


@dataclass(frozen=True)
class LSTMOptions(CellOptions):
    cell_input: Literal["sigmoid", "tanh"] = "tanh"  # "sigmoid" is eq 10.41; "tanh" is torch's
    peepholes: bool = False
    # The forget gate's bias at initialisation. 1, after the chapter (10.10.1, citing Gers et
    # al. 2000) and Jozefowicz et al. 2015: with torch's default, a bias near 0, f(t) starts
    # near 0.5 and the gradient through s(t) halves at every step, faster than a tanh RNN's
    # vanishes; at 1, f(t) starts near 0.73 and the state remembers from the first epoch.
    forget_bias: float = 1.0


@dataclass(frozen=True)
class GRUOptions(CellOptions):
    reset: Literal["before", "after"] = "after"  # "before" is the book's W(r*h); "after" torch's


@dataclass(frozen=True)
class ESNOptions(CellOptions):
    spectral_radius: float = 0.9
    input_scaling: float = 1.0
    leak_rate: float = 1.0

    def __post_init__(self) -> None:
        check_range("spectral_radius", self.spectral_radius > 0, "must be > 0")
        check_range("input_scaling", self.input_scaling > 0, "must be > 0")
        check_range("leak_rate", 0 < self.leak_rate <= 1, "must be in (0, 1]")


@dataclass(frozen=True)
class SkipOptions(CellOptions):
    delay: int = 2

    def __post_init__(self) -> None:
        check_range("delay", self.delay >= 2, "must be >= 2 (a delay of 1 is the Elman cell)")


CELL_OPTIONS: Mapping[str, type[CellOptions]] = {
    "tanh": CellOptions,
    "relu": CellOptions,
    "leaky": LeakyOptions,
    "lstm": LSTMOptions,
    "gru": GRUOptions,
    "esn": ESNOptions,
    "skip": SkipOptions,
}

# --- architectures' options (seqmodels.models.architectures, sequence, seq2seq, recursive) ----


@dataclass(frozen=True)
class ArchOptions:
    """Base of every architecture's options. An architecture with no options uses it as it is."""


@dataclass(frozen=True)
class TokenOptions(ArchOptions):
    """Options of an architecture that reads float features or token ids."""

    embedding_size: int = 0  # 0: float inputs (B, T, F); > 0: token ids (B, T), embedded

    def __post_init__(self) -> None:
        check_range("embedding_size", self.embedding_size >= 0, "must be >= 0")


@dataclass(frozen=True)
class OutputRecurrentOptions(ArchOptions):
    # what is fed back in training: y(t-1), the model's own o(t-1), or a scheduled mix
    training: Literal["teacher_forcing", "free_running", "scheduled_sampling"] = "teacher_forcing"
    schedule_end: float = 1.0  # scheduled sampling: fraction of training at which p reaches 1
    hidden_to_hidden: bool = False  # False: fig 10.4 as drawn, no W h(t-1) path

    def __post_init__(self) -> None:
        check_range("schedule_end", 0 < self.schedule_end <= 1, "must be in (0, 1]")


@dataclass(frozen=True)
class DeepOptions(TokenOptions):
    input_layers: int = 0  # deep input-to-hidden: tanh layers before the recurrence
    transition_layers: int = 0  # deep hidden-to-hidden: tanh layers inside every step
    output_layers: int = 0  # deep hidden-to-output: tanh layers before the readout
    skip: bool = False  # skip connections around each deep part and between stacked layers
    output: Literal["every_step", "final"] = "every_step"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("input_layers", "transition_layers", "output_layers"):
            check_range(name, getattr(self, name) >= 0, "must be >= 0")


@dataclass(frozen=True)
class DecoderOptions(ArchOptions):
    embedding_size: int = 32
    reverse_source: bool = False  # read the source backwards (Sutskever et al. 2014)
    stop: Literal["eos", "bernoulli", "length"] = "eos"  # how sampling ends a sequence, 10.2.3
    max_length: int = 64  # longest generated sequence; the length output's classes are 0..this

    def __post_init__(self) -> None:
        check_range("embedding_size", self.embedding_size >= 1, "must be >= 1")
        check_range("max_length", self.max_length >= 1, "must be >= 1")


@dataclass(frozen=True)
class EncoderDecoderOptions(DecoderOptions):
    context: Literal["initial", "input", "both"] = "both"  # where C enters the decoder
    feedback: bool = True  # y(t) -> h(t+1), 10.2.4: without it outputs are independent given C

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(
            "feedback",
            self.feedback or self.context != "initial",
            "the decoder needs an input: set feedback: true or context: input or both",
        )


@dataclass(frozen=True)
class AttentionOptions(DecoderOptions):
    attention_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("attention_size", self.attention_size >= 1, "must be >= 1")
