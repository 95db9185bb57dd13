"""The catalogue lists every registered cell and architecture, and says what a spec can write."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from typing import Any

import pytest

from seqmodels.catalogue import catalogue
from seqmodels.config import CELL_OPTIONS, WIRINGS, ArchOptions, TokenOptions
from seqmodels.models import (
    ARCHITECTURES,
    CELLS,
    Architecture,
    ModelConfig,
    TorchRecurrence,
    build_model,
)
from seqmodels.registry import Registry

ENTRIES = catalogue()
KEYS = {"name", "kind", "book", "summary", "fast_path", "options"}


def registry_of(entry: dict[str, Any]) -> Any:
    return CELLS if entry["kind"] == "cell" else ARCHITECTURES


def test_every_registered_name_appears_exactly_once() -> None:
    names = Counter((e["kind"], e["name"]) for e in ENTRIES)
    expected = [("cell", n) for n in CELLS.names()] + [
        ("architecture", n) for n in ARCHITECTURES.names()
    ]
    assert sorted(names) == sorted(expected)
    assert all(count == 1 for count in names.values())


def test_every_declared_name_has_a_network_that_takes_its_options() -> None:
    """`seqmodels.config` validates specs without torch; the registries hold the networks."""
    assert CELLS.names() == sorted(CELL_OPTIONS)
    assert ARCHITECTURES.names() == sorted(WIRINGS)
    for name, options in CELL_OPTIONS.items():
        assert CELLS.get(name).options_type is options
    for name, wiring in WIRINGS.items():
        assert ARCHITECTURES.get(name).options_type is wiring.options


def test_a_registry_of_declared_names_refuses_any_other_name_or_options() -> None:
    registry: Registry[Architecture] = Registry(
        "architecture", Architecture, declared={"plain": ArchOptions}
    )

    class Plain(Architecture):
        pass

    class Tokens(Architecture):
        options_type = TokenOptions

    registry.register("plain")(Plain)
    with pytest.raises(ValueError, match="'other' is not declared"):
        registry.register("other")(Plain)
    fresh: Registry[Architecture] = Registry("architecture", Architecture, {"plain": ArchOptions})
    with pytest.raises(TypeError, match="takes TokenOptions, but seqmodels.config declares"):
        fresh.register("plain")(Tokens)


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e['kind']}-{e['name']}" for e in ENTRIES])
def test_entry_has_a_book_reference_summary_and_the_dataclass_options(
    entry: dict[str, Any],
) -> None:
    assert set(entry) == KEYS
    assert entry["kind"] in ("cell", "architecture")
    assert entry["book"].strip() and entry["book"][0].isdigit()  # "10.3, fig 10.11"
    assert entry["summary"].strip() and "\n" not in entry["summary"]
    options_type = registry_of(entry).get(entry["name"]).options_type
    fields = dataclasses.fields(options_type)
    assert [o["name"] for o in entry["options"]] == [f.name for f in fields]
    assert [o["default"] for o in entry["options"]] == [f.default for f in fields]
    for option in entry["options"]:
        assert option["type"] in ("bool", "int", "float", "str")
        if option["choices"] is not None:
            assert option["default"] in option["choices"]


def test_catalogue_is_json_serialisable() -> None:
    assert json.loads(json.dumps(ENTRIES)) == ENTRIES


def test_every_listed_choice_validates_in_a_config() -> None:
    for entry in ENTRIES:
        for option in entry["options"]:
            for value in option["choices"] or []:
                written = {option["name"]: value}
                if entry["kind"] == "cell":
                    ModelConfig(cell=entry["name"], cell_options=written)
                else:
                    ModelConfig(architecture=entry["name"], arch_options=written)


@pytest.mark.parametrize("name", CELLS.names())
def test_fast_path_says_which_options_build_torch_modules(name: str) -> None:
    """`requires` is exact: a choice combination builds torch's module iff it meets it."""
    (entry,) = [e for e in ENTRIES if e["kind"] == "cell" and e["name"] == name]
    finite = {
        o["name"]: o["choices"] or [False, True]
        for o in entry["options"]
        if o["choices"] is not None or o["type"] == "bool"
    }
    for combo in itertools.product(*finite.values()):
        options = dict(zip(finite, combo, strict=True))
        config = ModelConfig(cell=name, hidden_size=2, cell_options=options)
        fast = isinstance(build_model(config, 2, 1).recurrence, TorchRecurrence)
        fp = entry["fast_path"]
        expected = fp is not None and all(options[k] in v for k, v in fp["requires"].items())
        assert fast == expected, options
        if fast:
            assert build_model(config, 2, 1).recurrence.rnn.mode == fp["mode"]


def test_seqlab_models_json_lists_the_catalogue() -> None:
    import json

    from tests.conftest import seqlab

    result = seqlab("models", "--json")
    assert result.returncode == 0, result.stderr
    listed = {(e["name"], e["kind"]) for e in json.loads(result.stdout)}
    assert listed == {(e["name"], e["kind"]) for e in catalogue()}
