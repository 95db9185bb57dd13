"""Reading a spec: from a YAML file (with `--set` overrides) or a mapping, to a validated
`StudySpec` (or a `SuiteSpec`, for several tasks), or a SpecError of one line naming the file
and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipelines.spec.schema import StudySpec
from pipelines.spec.suite import SuiteSpec, is_suite, parse_suite
from pipelines.spec.task import SpecError, spec_error


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec | SuiteSpec:
    """Read and validate a spec file: a study, or a suite when it names `tasks`. Raises
    SpecError (one line, file and field) on any mistake.

    Args:
        path: the spec (YAML).
        overrides: dotted keys to set before validation, e.g. `{"search.trials_per_variant": 5,
            "fixed.max_epochs": 3}`; what the Prefect form and `seqlab run --set` change.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(source, "", "no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise SpecError(source, "", f"cannot read: {err.__class__.__name__}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise SpecError(source, "", f"YAML syntax error at {where}: {problem}") from None
    if not isinstance(raw, dict):
        raise SpecError(source, "", "a spec is a YAML mapping of keys to values")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value, source)
    return parse(raw, source)


def parse(raw: dict[str, Any], source: str = "<spec>") -> StudySpec | SuiteSpec:
    """Validate a spec already read into a dict: a study, or a suite when it names `tasks`."""
    return parse_suite(raw, source, parse_spec) if is_suite(raw) else parse_spec(raw, source)


def _set_dotted(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `a.b.c` in nested mappings, creating the sections a spec left to their defaults."""
    *sections, last = key.split(".")
    node = raw
    for i, section in enumerate(sections):
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise SpecError(
                source, ".".join(sections[: i + 1]), f"is not a section; cannot set {key}"
            )
    node[last] = value


def parse_spec(raw: dict[str, Any], source: str = "<spec>") -> StudySpec:
    """Validate a study's spec (one `task`) already read into a dict."""
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as err:
        raise spec_error(source, err) from None
