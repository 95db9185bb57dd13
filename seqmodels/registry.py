"""A small registry that says no: duplicate names and wrong base classes are rejected, and,
where names are declared, any other name or options."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from seqmodels.errors import unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes of one base type.

    >>> CELLS = Registry("cell", nn.Module)
    >>> @CELLS.register("tanh")
    ... class Elman(nn.Module): ...
    """

    def __init__(
        self, kind: str, base: type[T], declared: Mapping[str, type] | None = None
    ) -> None:
        """`declared`: when given, the only names that may register, each with the options
        dataclass its class must take (its `options_type`), as `seqmodels.config` declares
        them for validation without torch."""
        self.kind = kind
        self.base = base
        self.declared = declared
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                owner = self._entries[name].__qualname__
                raise ValueError(f"{self.kind} {name!r} is already registered by {owner}")
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{self.kind} {name!r} must subclass {self.base.__qualname__}")
            if self.declared is not None:
                if name not in self.declared:
                    raise ValueError(f"{self.kind} {name!r} is not declared in seqmodels.config")
                declared, taken = self.declared[name], getattr(cls, "options_type", None)
                if taken is not declared:
                    raise TypeError(
                        f"{self.kind} {name!r} takes {getattr(taken, '__qualname__', taken)}, "
                        f"but seqmodels.config declares {declared.__qualname__}"
                    )
            self._entries[name] = cls
            return cls

        return decorator

    def get(self, name: str) -> type[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        """The error message for an unknown name, listing the valid ones."""
        return unknown(self.kind, name, self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
