"""Fuzzing the spec: real specs, mutated, either load or fail in one line.

The seeds are every file in `experiments/` and one spec per user-data task. A mutation deletes
a key, sets a key (existing or new) to a value of any YAML type or of the same type, or swaps
in a name the registries know (a task, an architecture, a cell, an option), at any depth.
Whatever comes out must either validate, then survive `digest()` and the JSON round trip of a
study's record (`spec.json`, read back by `seqlab resume`) to the same spec and digest, or
raise the one-line `SpecError` that names the file; nothing else.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipelines.spec import SpecError, SuiteSpec, parse
from pipelines.study.resume import recorded_spec, recorded_suite
from seqmodels.config import CELL_OPTIONS, WIRINGS
from seqmodels.tasks import TASKS
from tests.conftest import ROOT

SOURCE = "fuzz.yaml"
USER_TASKS = {
    "text": {"architecture": "recurrent", "cell": "gru"},
    "series_csv": {"architecture": "seq2one", "cell": "lstm"},
    "pairs_jsonl": {"architecture": "attention", "cell": "gru"},
}


def seeds() -> list[dict[str, Any]]:
    """The specs the mutations start from."""
    specs = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "experiments").glob("*.yaml"))]
    for task, variant in USER_TASKS.items():
        specs.append(
            {
                "name": f"own-{task}",
                "task": {"name": task, "options": {"path": f"/data/mine.{task}"}},
                "variants": {"v": variant},
            }
        )
    return specs


SEEDS = seeds()
NAMES = sorted(
    {*TASKS.names(), *WIRINGS, *CELL_OPTIONS, "asha", "pbt", "grid", "optuna", "choice"}
    | {"loguniform", "uniform", "randint", "lr", "hidden_size", "cell_options", "arch_options"}
    | {"embedding_size", "peepholes", "forget_bias", "reset", "stop", "training", "tbptt"}
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(NAMES)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested mappings and lists."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _parent(raw: dict[str, Any], path: tuple) -> Any:
    node = raw
    for key in path[:-1]:
        node = node[key]
    return node


def _like(value: Any) -> st.SearchStrategy:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-2, 2 * abs(value) + 2)
    if isinstance(value, float) and math.isfinite(value):
        return st.floats(-1.0, 2 * abs(value) + 1.0) | st.sampled_from([0.0, math.nan, math.inf])
    if isinstance(value, str):
        return st.sampled_from(NAMES)
    return VALUES


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    raw = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        paths = _paths(raw)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(raw, path), path[-1]
        action = draw(st.sampled_from(["delete", "set", "add", "name", "nudge", "nudge"]))
        if action == "nudge":  # a value of the same type: the mutations that may still validate
            parent[key] = draw(_like(parent[key]))
        elif action == "delete":
            del parent[key]
        elif action == "set":
            parent[key] = draw(VALUES)
        elif action == "name":
            parent[key] = draw(st.sampled_from(NAMES))
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(NAMES))] = draw(VALUES)
    return raw


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated())
def test_a_mutated_spec_loads_or_fails_in_one_line(raw: dict[str, Any]) -> None:
    try:
        spec = parse(raw, SOURCE)
    except SpecError as err:
        message = str(err)
        assert message.startswith(f"{SOURCE}: ") and "\n" not in message, message
        event("refused")
        return
    event("accepted")
    digest = spec.digest()
    # the round trip of a study's record (spec.json on its parent run, or a suite's suite.json),
    # read back on resume
    if isinstance(spec, SuiteSpec):
        again = recorded_suite(json.loads(json.dumps(spec.dump())))
    else:
        again = recorded_spec(json.loads(json.dumps(spec.model_dump(mode="json"))), "spec.json")
    assert again == spec
    assert again.digest() == digest


def test_the_fuzzer_starts_from_every_experiment_and_every_user_data_task() -> None:
    """The seeds load as they are: the mutations start from valid specs."""
    assert len(SEEDS) == len(list((ROOT / "experiments").glob("*.yaml"))) + len(USER_TASKS)
    for raw in SEEDS:
        parse(raw, SOURCE).digest()


def test_a_spec_file_of_any_shape_fails_in_one_line(tmp_path: Path) -> None:
    """`load_spec` on YAML that is not a mapping, or not YAML."""
    from pipelines.spec import load_spec

    for text in ("- a\n- b\n", "name: [unclosed\n", "42\n", "", "name: x\ntask: 3\n"):
        path = tmp_path / "spec.yaml"
        path.write_text(text)
        try:
            load_spec(path)
        except SpecError as err:
            assert "\n" not in str(err) and str(err).startswith(str(path))
        else:
            raise AssertionError(f"{text!r} loaded")
