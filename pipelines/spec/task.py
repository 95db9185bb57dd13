"""A spec's `task` section on its own: what `seqlab data prepare` validates, and the pieces that
`pipelines.spec.schema` builds the whole spec from.

It imports the tasks (numpy) and pydantic, and not the networks: the CLI validates a task, and
answers a cached dataset, without paying for torch.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, ValidationError, create_model
from pydantic.dataclasses import dataclass as pydantic_dataclass

from seqmodels.errors import ConfigError
from seqmodels.tasks import TASKS

STRICT = ConfigDict(extra="forbid", frozen=True)
STRICT_DATACLASS = ConfigDict(extra="forbid")  # frozen comes from the dataclass itself


class SpecError(Exception):
    """A user's mistake in a spec: printed as one line, `file: field: message`."""

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source, self.field, self.message = source, field, message
        super().__init__(f"{source}: {field}: {message}" if field else f"{source}: {message}")


def validated(cls: type) -> type:
    """A pydantic-validated twin of a seqmodels dataclass that rejects unknown keys."""
    return pydantic_dataclass(cls, config=STRICT_DATACLASS, frozen=True)


@cache
def task_union() -> Any:
    """`task` is a union of one model per registered task, told apart by `name`."""
    members = []
    for name in TASKS.names():
        options_type = validated(TASKS.get(name).options_type)
        member = create_model(
            f"{name.title()}TaskSpec",
            __config__=STRICT,
            name=(Literal[name], ...),
            options=(options_type, _options_default(options_type)),
            seed=(int, Field(0, ge=0, description="seed of data generation")),
        )
        members.append(member)
    return Annotated[Union[tuple(members)], Discriminator("name")]  # noqa: UP007


def _options_default(options_type: type) -> Any:
    """All defaults where the task has them; required where it has none (a user's `path`).

    A default factory that raises would be called whenever pydantic compares a value with the
    default (`model_dump(exclude_defaults=True)`, which the spec's digest uses).
    """
    try:
        options_type()
    except (ConfigError, ValidationError, TypeError):
        return Field(description="the task's options; it has required ones")
    return Field(default_factory=options_type)


@cache
def _task_section() -> type[BaseModel]:
    """A model holding only a spec's `task`, so its errors read `task.<field>` as in a spec."""
    return create_model("TaskSection", __config__=STRICT, task=(task_union(), ...))


def parse_task(raw: dict[str, Any], source: str = "<task>") -> Any:
    """Validate a spec's `task` section alone (`name`, `options`, `seed`), exactly as a spec would.

    Returns the task's validated model: `.name`, `.options` (the task's options dataclass, defaults
    filled in) and `.seed`. Raises SpecError naming `task.<field>` on any mistake.
    """
    try:
        return _task_section().model_validate({"task": raw}).task
    except ValidationError as err:
        raise spec_error(source, err) from None


def spec_error(source: str, err: ValidationError) -> SpecError:
    """The first validation error as a SpecError with a dotted field path."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if len(loc) > 1 and loc[0] == "task" and loc[1] in TASKS:
        del loc[1]  # the discriminated union's tag is not a field the user wrote
    if loc[:1] == ["seeds"] and loc[1:2] in (["count"], ["rounds"]):
        del loc[1]  # nor is the tag of the form `seeds` took
    message = first["msg"].removeprefix("Value error, ")
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        loc.append(cause.field)  # the config named the offending key itself
    kind = first["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        message = "unknown key"
    elif kind in ("missing", "union_tag_not_found"):
        message = "required"
        if kind == "union_tag_not_found":
            loc.append("name")
    elif kind == "union_tag_invalid":
        tag = first["ctx"]["tag"]
        message = f"unknown task {tag!r}; choose from: {', '.join(TASKS.names())}"
        loc.append("name")
    return SpecError(source, ".".join(loc), message)
