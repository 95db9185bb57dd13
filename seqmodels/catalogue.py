"""A machine-readable catalogue of the model zoo: every registered cell and architecture.

`catalogue()` returns one plain dict per entry, JSON-serialisable as it is:

- `name`: the registered name a spec writes (`cell: lstm`, `architecture: seq2one`);
- `kind`: "cell" or "architecture";
- `book`: where Deep Learning (Goodfellow et al.) defines it, the class's `book` attribute;
- `summary`: one line, the class's `summary` attribute;
- `fast_path`: for a cell, the torch module that computes it and the option values that keep
  that module (`requires`), or None when only the cell-by-cell path can; for an architecture
  None, since it runs on its cell's fast path wherever its wiring allows;
- `options`: one dict per field of its options dataclass: `name`, `type` ("bool", "int",
  "float" or "str"), `default`, and `choices` (a list for Literal types, else None).

The book reference and summary come from class attributes, not docstrings, so that a catalogue
entry never depends on how a docstring is worded.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from dataclasses import MISSING
from typing import Any, Literal

from seqmodels.errors import ConfigError
from seqmodels.models import ARCHITECTURES, CELLS, StepCell
from seqmodels.models.recurrences import TORCH_MODULES


def option_specs(options_type: type) -> list[dict[str, Any]]:
    """The options of a frozen options dataclass, in declaration order: each one's `name`, its
    `type` (a Literal's by its choices' type), its `annotation` as the class writes it, its
    `default` (None where it has none), its `choices` (a Literal's) and whether it is
    `required` (it has no default)."""
    hints = typing.get_type_hints(options_type)
    specs = []
    for field in dataclasses.fields(options_type):
        hint = hints[field.name]
        choices = list(typing.get_args(hint)) if typing.get_origin(hint) is Literal else None
        kind = type(choices[0]).__name__ if choices else getattr(hint, "__name__", str(hint))
        written = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        required = field.default is MISSING and field.default_factory is MISSING
        if field.default is not MISSING:
            default = field.default
        else:
            default = None if field.default_factory is MISSING else field.default_factory()
        specs.append(
            {
                "name": field.name,
                "type": kind,
                "annotation": written,
                "default": default,
                "choices": choices,
                "required": required,
            }
        )
    return specs


def _finite_values(options_type: type) -> dict[str, list[Any]]:
    """Every value of each option with finitely many (Literal and bool); numbers are left out."""
    values = {}
    for spec in option_specs(options_type):
        if spec["choices"] is not None:
            values[spec["name"]] = spec["choices"]
        elif spec["type"] == "bool":
            values[spec["name"]] = [False, True]
    return values


def fast_path(cell: type[StepCell]) -> dict[str, Any] | None:
    """Which options keep torch's cuDNN-backed module for `cell`.

    Tries every combination of the finite options (numeric options at their defaults) through
    `cell.torch_mode`. Returns None when none has a torch twin; else `module` (e.g.
    "torch.nn.LSTM"), `mode` (torch's `RNNBase.mode`) and `requires`: for each option that
    matters, the list of its values that keep the fast path.
    """
    values = _finite_values(cell.options_type)
    names = list(values)
    modes, fast = set(), []
    for combo in itertools.product(*values.values()):
        try:
            options = cell.options_type(**dict(zip(names, combo, strict=True)))
        except ConfigError:  # a combination the options reject (e.g. a learned alpha of 0)
            continue
        mode = cell.torch_mode(options)
        if mode is not None:
            modes.add(mode)
            fast.append(combo)
    if not fast:
        return None
    (mode,) = modes  # one cell, one torch twin
    requires = {}
    for i, name in enumerate(names):
        allowed = [v for v in values[name] if any(combo[i] == v for combo in fast)]
        if len(allowed) < len(values[name]):
            requires[name] = allowed
    torch_class, _ = TORCH_MODULES[mode]
    return {"module": f"torch.nn.{torch_class.__name__}", "mode": mode, "requires": requires}


def _entry(name: str, kind: str, cls: Any, fast: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "book": cls.book,
        "summary": cls.summary,
        "fast_path": fast,
        "options": option_specs(cls.options_type),
    }


def catalogue() -> list[dict[str, Any]]:
    """Every registered cell, then every architecture, each sorted by name."""
    cells = [_entry(n, "cell", CELLS.get(n), fast_path(CELLS.get(n))) for n in CELLS.names()]
    archs = [_entry(n, "architecture", ARCHITECTURES.get(n), None) for n in ARCHITECTURES.names()]
    return cells + archs


__all__ = ["catalogue", "fast_path", "option_specs"]
