"""The spec: every shipped spec validates, and each class of bad input is one line and exit 2."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.spec import SpecError, StudySpec, SuiteSpec, load_spec, parse_spec
from tests.conftest import ROOT, seqlab

SPECS = sorted((ROOT / "experiments").glob("*.yaml"))
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_every_shipped_spec_validates(path: Path) -> None:
    loaded = load_spec(path)
    studies = loaded.studies.values() if isinstance(loaded, SuiteSpec) else [loaded]
    for spec in studies:
        assert spec.variants
        for variant in spec.variants:
            assert spec.trial(variant).variant == variant
            assert not set(spec.search.space) & {"architecture", "cell"}


def test_defaults_fill_what_a_spec_leaves_out() -> None:
    spec = parse_spec({"name": "s", "task": {"name": "adding"}, "variants": {"a": {}}})
    assert spec.fixed.lr == 1e-3 and spec.seed_looks == (5, 10, 15, 20)  # seeds in rounds
    assert spec.repeats.vary == ["init", "order", "data"]
    assert spec.variants["a"].cell == "tanh"
    assert spec.resources.cpu == 1.0 and spec.resources.gpu == 0.0


def test_digest_is_stable_and_sensitive() -> None:
    raw = yaml.safe_load(QUICKSTART.read_text())
    a, b = parse_spec(raw), parse_spec(copy.deepcopy(raw))
    assert a.digest() == b.digest()
    raw["fixed"]["batch_size"] = 7
    assert parse_spec(raw).digest() != a.digest()


def test_the_digest_ignores_fields_at_their_defaults() -> None:
    """Writing a default out, or a later seqlab adding a field, leaves a spec's digest as it was:
    a study interrupted before an upgrade can be resumed after it."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    spec = parse_spec(raw)
    explicit = copy.deepcopy(raw)
    explicit["seeds"] = spec.seeds
    explicit["search"]["checkpoint_every"] = None
    assert parse_spec(explicit).digest() == spec.digest()

    class Later(StudySpec):
        added: int | None = None  # a field a later seqlab adds, off by default

    assert Later.model_validate(raw).digest() == spec.digest()
    assert Later.model_validate({**raw, "added": 3}).digest() != spec.digest()


def _mutated(change) -> dict:
    raw = yaml.safe_load(QUICKSTART.read_text())
    change(raw)
    return raw


# (class of mistake, mutation, expected field, fragment of the message)
BAD = [
    ("unknown key", lambda r: r.update(epochs=3), "epochs", "unknown key"),
    ("unknown nested key", lambda r: r["search"].update(trial=3), "search.trial", "unknown key"),
    ("wrong type", lambda r: r["fixed"].update(batch_size="big"), "fixed.batch_size", "integer"),
    (
        "unknown cell",
        lambda r: r["variants"]["lstm"].update(cell="lstmm"),
        "variants.lstm.cell",
        "choose from: esn, gru, leaky, lstm, relu, skip, tanh",
    ),
    ("unknown task", lambda r: r["task"].update(name="addng"), "task.name", "choose from: adding"),
    (
        "out of range",
        lambda r: r["search"].update(trials_per_variant=0),
        "search.trials_per_variant",
        "greater than or equal to 1",
    ),
    (
        "out of range option",
        lambda r: r["task"]["options"].update(length=1),
        "task.options.length",
        ">= 2",
    ),
    (
        "unknown hyperparameter",
        lambda r: r["search"]["space"].update(lrate={"choice": [1]}),
        "search.space.lrate",
        "choose from",
    ),
    (
        "bad distribution",
        lambda r: r["search"]["space"].update(lr={"loguniform": [0.1, 0.01]}),
        "search.space.lr",
        "low must be < high",
    ),
    ("missing", lambda r: r.pop("variants"), "variants", "required"),
]


@pytest.mark.parametrize("change,field,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_spec_names_the_field(change, field: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_mutated(change), "x.yaml")
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert str(caught.value).startswith(f"x.yaml: {field}: ")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _assert_one_line_exit_2(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_missing_file(home: Path) -> None:
    result = seqlab("run", "experiments/nope.yaml")
    _assert_one_line_exit_2(result, "experiments/nope.yaml", "no such file")
    assert not home.exists()


def test_cli_yaml_syntax_error(home: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nvariants: {a: [\n")
    result = seqlab("run", str(path))
    _assert_one_line_exit_2(result, str(path), "YAML syntax error at line")
    assert not home.exists()


@pytest.mark.parametrize("change,field,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_cli_bad_spec_exits_2_and_starts_nothing(
    home: Path, tmp_path: Path, change, field: str, fragment: str
) -> None:
    path = _write(tmp_path, yaml.safe_dump(_mutated(change)))
    result = seqlab("run", str(path))
    _assert_one_line_exit_2(result, f"{path}: {field}: ", fragment)
    assert not home.exists(), "a rejected spec must not create the store or an MLflow database"


def test_cli_validate_reports_each_file(tmp_path: Path) -> None:
    bad = _write(tmp_path, "name: x\n")
    result = seqlab("validate", str(QUICKSTART), str(bad))
    assert result.returncode == 2
    assert "quickstart.yaml: ok" in result.stdout
    assert f"{bad}: task: required" in result.stderr


def test_validating_every_shipped_spec_loads_no_torch() -> None:
    """`seqlab validate` and `run --dry-run` answer without the 2 s that torch takes to load."""
    probe = (
        "import sys\n"
        "from pipelines import cli\n"
        f"code = cli.main(['validate', *{[str(p) for p in SPECS]!r}])\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'ray', 'mlflow') if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout


def test_spec_model_rejects_the_same_key_fixed_and_searched() -> None:
    with pytest.raises(SpecError, match="search.space.lr: also in fixed"):
        parse_spec(_mutated(lambda r: r["fixed"].update(lr=0.1)))


def test_a_spec_is_immutable() -> None:
    spec = load_spec(QUICKSTART)
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        spec.name = "other"  # type: ignore[misc]
    assert isinstance(spec, StudySpec)


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_a_recorded_spec_validates_again_to_the_same_digest(path: Path) -> None:
    from pipelines.study.resume import recorded_spec, recorded_suite

    spec = load_spec(path)
    if isinstance(spec, SuiteSpec):  # what suite.json holds
        assert recorded_suite(json.loads(json.dumps(spec.dump()))).digest() == spec.digest()
        return
    recorded = json.loads(json.dumps(spec.model_dump(mode="json")))  # what spec.json holds
    assert recorded_spec(recorded, "spec.json").digest() == spec.digest()


@pytest.mark.parametrize("task", ["text", "series_csv", "pairs_jsonl"])
def test_a_spec_on_a_users_file_has_a_digest(tmp_path: Path, task: str) -> None:
    """A task option with no default (the file's `path`): the digest compares each field with
    its default, and the options' default must not be built (it would raise: no path)."""
    from tests.tiny import tiny_options, write_user_files

    architecture = {"text": "recurrent", "series_csv": "seq2one", "pairs_jsonl": "attention"}
    options = tiny_options(task, write_user_files(tmp_path))
    raw = {
        "name": "mine",
        "task": {"name": task, "options": options},
        "variants": {"v": {"architecture": architecture[task]}},
    }
    spec = parse_spec(raw)
    assert spec.digest() == parse_spec(json.loads(json.dumps(raw))).digest()
    moved = {**raw, "task": {"name": task, "options": {**options, "path": "elsewhere"}}}
    assert parse_spec(moved).digest() != spec.digest()
    with pytest.raises(SpecError, match=r"task\.options: required"):
        parse_spec({**raw, "task": {"name": task}})


MINIMAL = {"name": "s", "task": {"name": "adding"}, "variants": {"a": {}}}


@pytest.mark.parametrize(
    ("seeds", "looks"),
    [
        (3, (3,)),
        ({"min": 5, "max": 20}, (5, 10, 15, 20)),
        ({"min": 4, "max": 10, "step": 3}, (4, 7, 10)),
    ],
)
def test_seeds_are_a_number_or_rounds(seeds: Any, looks: tuple[int, ...]) -> None:
    spec = parse_spec(
        {"name": "s", "task": {"name": "adding"}, "variants": {"a": {}}, "seeds": seeds}
    )
    assert spec.seed_looks == looks


@pytest.mark.parametrize(
    ("seeds", "field", "message"),
    [
        ({"min": 5, "max": 5}, "seeds.max", "must be more than min (5)"),
        ({"min": 5, "most": 9}, "seeds.most", "unknown key"),
        ({"min": 1, "max": 9}, "seeds.min", "greater than or equal to 2"),
        (0, "seeds", "greater than or equal to 1"),
        ("many", "seeds", "valid integer"),
    ],
)
def test_bad_seeds_name_the_field(seeds: Any, field: str, message: str) -> None:
    raw = {**MINIMAL, "seeds": seeds}
    with pytest.raises(SpecError) as err:
        parse_spec(raw, "s.yaml")
    assert f"s.yaml: {field}: " in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    ("vary", "field", "message"),
    [
        (["init", "init"], "repeats.vary.init", "named twice"),
        (["weights"], "repeats.vary.0", "'init', 'order' or 'data'"),
        ([], "repeats.vary", "at least 1 item"),
    ],
)
def test_bad_repeats_vary_names_the_field(vary: Any, field: str, message: str) -> None:
    raw = {
        "name": "s",
        "task": {"name": "adding"},
        "variants": {"a": {}},
        "repeats": {"vary": vary},
    }
    with pytest.raises(SpecError) as err:
        parse_spec(raw, "s.yaml")
    assert f"s.yaml: {field}: " in str(err.value) and message in str(err.value)


def test_more_configurations_repeated_than_searched_names_the_field() -> None:
    raw = {**MINIMAL, "search": {"trials_per_variant": 2}, "repeats": {"configs": 3}}
    with pytest.raises(SpecError, match=r"s.yaml: repeats.configs: at most search.trials_per"):
        parse_spec(raw, "s.yaml")
    assert parse_spec({**raw, "repeats": {"configs": 2}}).repeats.configs == 2
