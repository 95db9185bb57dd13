"""A suite spec (`tasks:`): one study per task, each validated as a study is, a mistake named by
the entry it is in; labels, names and the digest."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.spec import SpecError, StudySpec, SuiteSpec, parse, parse_spec
from pipelines.spec.suite import labels

SUITE: dict[str, Any] = {
    "name": "cells",
    "tasks": [
        {"name": "adding", "options": {"length": 6}},
        {"name": "sunspots"},
        {"name": "adding", "options": {"length": 12}},
    ],
    "variants": {"rnn": {"cell": "tanh"}, "lstm": {"cell": "lstm"}},
    "search": {"space": {"lr": {"loguniform": [0.001, 0.01]}}, "trials_per_variant": 2},
    "seeds": 3,
}


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as raised:
        parse(raw, "suite.yaml")
    return str(raised.value)


def test_each_task_is_a_study_of_the_rest_of_the_spec() -> None:
    suite = parse(SUITE, "suite.yaml")
    assert isinstance(suite, SuiteSpec)
    assert list(suite.studies) == ["adding", "sunspots", "adding-2"]
    for label, study in suite.studies.items():
        assert study.name == f"cells.{label}"
        alone = {k: v for k, v in SUITE.items() if k != "tasks"}
        entry = SUITE["tasks"][list(suite.studies).index(label)]
        assert study == parse_spec({**alone, "name": study.name, "task": entry})
    assert suite.studies["adding-2"].task.options.length == 12
    assert suite.variants == suite.first.variants


def test_a_spec_with_one_task_is_a_study() -> None:
    one = {k: v for k, v in SUITE.items() if k != "tasks"} | {"task": {"name": "adding"}}
    assert isinstance(parse(one), StudySpec)


def test_the_digest_follows_every_task_and_its_studies() -> None:
    digest = parse(SUITE).digest()
    assert parse(SUITE).digest() == digest
    changed = {
        **SUITE,
        "tasks": [*SUITE["tasks"][:2], {"name": "adding", "options": {"length": 13}}],
    }
    assert parse(changed).digest() != digest
    assert parse({**SUITE, "seeds": 4}).digest() != digest


def test_labels_number_a_task_named_twice() -> None:
    assert labels([{"name": "a"}, {"name": "b"}, {"name": "a"}, {"name": "a"}]) == [
        "a",
        "b",
        "a-2",
        "a-3",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"task": {"name": "adding"}}, "suite.yaml: tasks: a spec names one `task` or a list"),
        ({"tasks": [{"name": "adding"}]}, "suite.yaml: tasks: a list of at least 2 task sections"),
        ({"tasks": "adding"}, "suite.yaml: tasks: a list of at least 2 task sections"),
        (
            {"tasks": [{"name": "adding"}, {"name": "sunspots", "options": {"windw": 3}}]},
            "suite.yaml: tasks.1.options.windw: unknown key",
        ),
        (
            {"tasks": [{"name": "adding"}, {"name": "nosuch"}]},
            "suite.yaml: tasks.1.name: unknown task 'nosuch'",
        ),
        (
            {"tasks": [{"name": "adding"}, {"name": "copy"}]},
            "suite.yaml: variants.rnn.architecture: 'seq2one' has no output at every step",
        ),
        ({"seeds": 0}, "suite.yaml: seeds: "),
        ({"name": "x" * 99}, "suite.yaml: name: "),
        ({"name": None}, "suite.yaml: name: "),
    ],
)
def test_a_mistake_is_one_line_naming_the_entry_or_field(change: dict, expected: str) -> None:
    line = _error({**SUITE, **change})
    assert line.startswith(expected), line
    assert "\n" not in line
    if "architecture" in expected:
        assert line.endswith("(on tasks.1, copy)")  # which task the variant cannot read


def test_a_suite_name_too_long_for_its_studies_says_so() -> None:
    name = "x" * 96  # valid alone; "<name>.sunspots" is not
    line = _error({**SUITE, "name": name})
    assert line.startswith("suite.yaml: name: ")
    assert line.endswith(f"(as '{name}.adding', the name of its study of adding)")


def test_a_suite_without_a_name_says_it_is_required() -> None:
    assert _error({k: v for k, v in SUITE.items() if k != "name"}) == "suite.yaml: name: required"
