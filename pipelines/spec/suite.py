"""A suite: one spec that names several tasks (`tasks:`, a list of task sections), and studies
every variant on each with the same budget.

It is validated as one study per task: the spec with `task` set to each entry in turn, so every
rule a study obeys (which variants can read which task, the training switches) holds on every
task, and a mistake is named by the entry it is in (`tasks.1.options.length`). Each task's study
is named `<suite>.<label>`, its label the task's name (numbered when a name comes twice:
`adding`, `adding-2`): its Ray Tune experiment, its log and its registered models
(`<suite>.<label>-<variant>`) are its own; its MLflow runs sit in the suite's experiment, under
the suite's parent run.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pipelines.spec.schema import StudySpec
from pipelines.spec.task import SpecError

MIN_TASKS = 2


@dataclass(frozen=True)
class SuiteSpec:
    """A suite's name and description, and the study of each task, by label."""

    name: str
    description: str
    studies: dict[str, StudySpec]  # label -> the study of that task, in the spec's order

    @property
    def first(self) -> StudySpec:
        """The study of the first task: what every study shares (variants, search, seeds)."""
        return next(iter(self.studies.values()))

    @property
    def variants(self) -> dict[str, Any]:
        return self.first.variants

    def digest(self) -> str:
        """A content hash of the suite: its name and every task's study digest."""
        canonical = json.dumps(
            {"name": self.name, "studies": {k: s.digest() for k, s in self.studies.items()}},
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def dump(self) -> dict[str, Any]:
        """The validated suite, as its parent run records it (`suite.json`)."""
        return {
            "name": self.name,
            "description": self.description,
            "studies": {k: s.model_dump(mode="json") for k, s in self.studies.items()},
        }


def is_suite(raw: dict[str, Any]) -> bool:
    return "tasks" in raw


def labels(tasks: list[Any]) -> list[str]:
    """Each task entry's label: its name, numbered from the second time a name comes."""
    names = [str(t.get("name", "")) if isinstance(t, dict) else "" for t in tasks]
    seen: Counter[str] = Counter()
    found = []
    for name in names:
        seen[name] += 1
        found.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return found


def parse_suite(raw: dict[str, Any], source: str, parse_study: Any) -> SuiteSpec:
    """Validate a suite: each entry of `tasks` as the `task` of a study of the rest.

    Raises SpecError naming the field: `tasks` itself, a field of an entry (`tasks.<i>.<field>`),
    or a field of the rest of the spec as the first task it fails on reports it.
    """
    tasks = raw["tasks"]
    if "task" in raw:
        raise SpecError(source, "tasks", "a spec names one `task` or a list of `tasks`, not both")
    if not isinstance(tasks, list) or len(tasks) < MIN_TASKS:
        raise SpecError(source, "tasks", f"a list of at least {MIN_TASKS} task sections")
    name = raw.get("name")
    studies: dict[str, StudySpec] = {}
    for i, (label, task) in enumerate(zip(labels(tasks), tasks, strict=True)):
        one = {k: v for k, v in raw.items() if k != "tasks"} | {"task": task}
        if isinstance(name, str):
            one["name"] = f"{name}.{label}"
        try:
            studies[label] = parse_study(one, source)
        except SpecError as err:
            if err.field == "task" or err.field.startswith("task."):
                field = f"tasks.{i}" + err.field.removeprefix("task")
                raise SpecError(source, field, err.message) from None
            if err.field == "name":
                # a name fine alone may be too long as its task's study's (`<suite>.<label>`)
                as_study = (
                    f" (as {one['name']!r}, the name of its study of {label})"
                    if isinstance(name, str)
                    else ""
                )
                raise SpecError(source, "name", err.message + as_study) from None
            label_note = f"{err.message} (on tasks.{i}, {label})"
            raise SpecError(source, err.field, label_note) from None
    study = next(iter(studies.values()))
    return SuiteSpec(str(name), study.description, studies)
