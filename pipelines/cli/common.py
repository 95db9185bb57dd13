"""What the command groups share: the one-line user error, `--set KEY=VALUE`, the store check."""

from __future__ import annotations

import sys
from typing import NamedTuple

from pipelines.ops import settings

EXIT_USAGE = 2  # a user's mistake: bad spec, bad data, bad arguments


def error(message: str) -> int:
    """Print `seqlab: error: <message>` on stderr; return the usage exit status."""
    print(f"seqlab: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def user_error(source: str, field: str, message: str) -> int:
    """A mistake in one input (`source`: a file, an option, a variable) at one `field`."""
    return error(f"{source}: {field}: {message}")


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class Assignment(NamedTuple):
    """One `--set KEY=VALUE` item: its key, its value read as YAML, and the item as given."""

    key: str
    value: object
    item: str


class AssignmentError(ValueError):
    """A `--set` item that is not KEY=VALUE, or whose value is not YAML (`key` is then set)."""

    def __init__(self, item: str, key: str | None, message: str) -> None:
        super().__init__(message)
        self.item = item
        self.key = key
        self.message = message


def assignments(items: list[str] | tuple[str, ...], example: str) -> list[Assignment]:
    """`--set` items as assignments, in order; `example` is a valid item, for the error."""
    parsed = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AssignmentError(item, None, f"expected KEY=VALUE, e.g. {example}")
        try:
            parsed.append(Assignment(key, yaml_value(text), item))
        except ValueError as err:
            raise AssignmentError(item, key, str(err)) from None
    return parsed


def yaml_value(text: str) -> object:
    """A `--set` value read as YAML: `50` is an int, `true` a bool, `[a, b]` a list."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ValueError(f"not a YAML value: {problem}") from None


def store_usable(study: bool = False) -> bool:
    """Whether the data store's root is usable here (for a study: Tune's state too, which
    lives beside the datasets in an object store); if not, says why in one line."""
    from pipelines.data import store

    try:
        (store.check_study_root if study else store.check_root)(settings.data_store())
    except store.StoreError as err:
        user_error("SEQLAB_STORE", settings.data_store(), str(err))
        return False
    return True
