"""Options of a cell or an architecture: one frozen dataclass each, checked against its own
field types (the dataclasses themselves are in `seqmodels.config`).

A spec writes options as a plain mapping (`cell_options: {peepholes: true}`), which pydantic
does not look inside, so `parse_options` checks every key and value against the dataclass's
annotations and reports the first mistake as a ConfigError naming the option.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
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
