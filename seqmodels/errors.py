"""Errors a user's configuration can cause."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A bad configuration value. `field` names the offending key, relative to its config."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def unknown(kind: str, name: str, names: Iterable[str]) -> str:
    """The error message for an unknown name, listing the valid ones."""
    return f"unknown {kind} {name!r}; choose from: {', '.join(sorted(names))}"
