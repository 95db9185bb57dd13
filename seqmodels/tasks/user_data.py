"""Tasks over a user's own file, given by `path`: a local path or an fsspec URL.

- `text`: any UTF-8 text, character-level language modelling (windowed as `charlm`).
- `series_csv`: a CSV of numeric columns, windowed next-step forecasting (see `forecast`).
- `pairs_jsonl`: one JSON object per line with a source and a target string, seq2seq.

The file's content hash joins the cache key, so an edited file is prepared again.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.tasks.base import TASKS, Split, Task
from seqmodels.tasks.charlm import CharLMTask, check_text_options
from seqmodels.tasks.common import Vocabulary, check_fractions, pairs_split, shuffled_parts
from seqmodels.tasks.families import Seq2SeqTask
from seqmodels.tasks.forecast import ForecastTask, check_forecast_options
from seqmodels.tasks.sources import read_text, sha256

TOKENIZERS = ("chars", "words")


def _require_path(path: str) -> None:
    if not path:
        raise ConfigError("path", "required: a local path or an fsspec URL")


class UserFileTask(Task):
    """A task over the text of the file at `options.path`, whose hash is its fingerprint."""

    @cached_property
    def raw(self) -> str:
        """The file's whole text."""
        return read_text(self.options.path)

    def fingerprint(self) -> str:
        return sha256(self.raw.encode())


@dataclass(frozen=True)
class TextOptions:
    """A UTF-8 text file, windowed for character-level language modelling like `charlm`."""

    path: str = ""
    window: int = 128
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    max_chars: int | None = None

    def __post_init__(self) -> None:
        _require_path(self.path)
        check_text_options(self)


@TASKS.register("text")
class TextTask(UserFileTask, CharLMTask):
    """Character-level language modelling on the user's text file."""

    options_type = TextOptions

    @property
    def text(self) -> str:
        return self.raw

    def card_extras(self) -> dict[str, Any]:
        return {"source_sha256": self.fingerprint(), "source_chars": len(self.text)}


@dataclass(frozen=True)
class SeriesCSVOptions:
    """A CSV of numeric columns (all, or those named in `columns`), one row per time step."""

    path: str = ""
    columns: tuple[str, ...] = ()
    header: bool = True
    window: int = 24
    normalize: bool = True
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        _require_path(self.path)
        if self.columns and not self.header:
            raise ConfigError("columns", "names columns of a header; set header: true")
        check_forecast_options(self.window, self.val_fraction, self.test_fraction)


@TASKS.register("series_csv")
class SeriesCSVTask(UserFileTask, ForecastTask):
    """Predict every chosen column's next value from the last `window` rows."""

    options_type = SeriesCSVOptions
    baseline_note = (
        "persistence: the next value repeats the last one; MSE on test (in normalised units "
        "when normalize), measured"
    )

    @cached_property
    def table(self) -> tuple[tuple[str, ...], np.ndarray]:
        """Column names and the (L, C) float64 values of the chosen columns."""
        return parse_csv(self.raw, self.options.columns, self.options.header)

    @property
    def series(self) -> np.ndarray:
        return self.table[1]

    @property
    def input_size(self) -> int:
        return len(self.table[0])

    def card_extras(self) -> dict[str, Any]:
        return {
            "columns": list(self.table[0]),
            "scaling": self.scaling,
            "source_sha256": self.fingerprint(),
        }


def parse_csv(
    text: str, columns: tuple[str, ...], header: bool
) -> tuple[tuple[str, ...], np.ndarray]:
    """Validated numeric columns; rows are numbered as lines of the file, from 1."""
    rows = [(number, row) for number, row in enumerate(csv.reader(io.StringIO(text)), 1) if row]
    if header:
        if not rows:
            raise ConfigError("path", "the CSV is empty")
        names = tuple(cell.strip() for cell in rows[0][1])
        rows = rows[1:]
    else:
        names = tuple(f"column {i + 1}" for i in range(len(rows[0][1]) if rows else 0))
    if not rows:
        raise ConfigError("path", "the CSV has no data rows")
    chosen = columns or names
    for name in chosen:
        if name not in names:
            raise ConfigError("columns", f"no column {name!r}; choose from: {', '.join(names)}")
    picks = [names.index(name) for name in chosen]
    values = np.empty((len(rows), len(picks)))
    for i, (number, row) in enumerate(rows):
        if len(row) != len(names):
            raise ConfigError("path", f"row {number}: {len(row)} fields, expected {len(names)}")
        for j, k in enumerate(picks):
            values[i, j] = _number(row[k], number, names[k])
    return tuple(chosen), values


def _number(cell: str, row: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        if not cell.strip():
            raise ConfigError("path", f"row {row}, column {column!r}: missing value") from None
        raise ConfigError(
            "path", f"row {row}, column {column!r}: {cell!r} is not a number"
        ) from None
    if math.isnan(value):
        raise ConfigError("path", f"row {row}, column {column!r}: NaN")
    if math.isinf(value):
        raise ConfigError("path", f"row {row}, column {column!r}: infinite")
    return value


@dataclass(frozen=True)
class PairsJSONLOptions:
    """One JSON object per line holding a `source_key` and a `target_key` string.

    tokens: "chars" reads each string character by character, "words" splits on whitespace.
    The pairs are shuffled by the seed, then the first test_fraction test, the next
    val_fraction validate and the rest train. The vocabulary covers every split.
    """

    path: str = ""
    tokens: Literal["chars", "words"] = "chars"
    source_key: str = "source"
    target_key: str = "target"
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        _require_path(self.path)
        if self.tokens not in TOKENIZERS:
            choices = ", ".join(TOKENIZERS)
            raise ConfigError("tokens", f"unknown tokens {self.tokens!r}; choose from: {choices}")
        for key in ("source_key", "target_key"):
            if not getattr(self, key):
                raise ConfigError(key, "must not be empty")
        check_fractions(self.val_fraction, self.test_fraction)


@TASKS.register("pairs_jsonl")
class PairsJSONLTask(UserFileTask, Seq2SeqTask):
    """Sequence to sequence over the user's (source, target) pairs; targets end in EOS."""

    resample = "resplit"  # the user's pairs are exchangeable

    options_type = PairsJSONLOptions
    baseline_note = "answer train's most frequent target, exact match on test, measured"

    @cached_property
    def pairs(self) -> list[tuple[list[str], list[str]]]:
        o = self.options
        return parse_pairs(self.raw, o.source_key, o.target_key, o.tokens)

    @cached_property
    def _vocab(self) -> Vocabulary:
        return Vocabulary.from_sequences(seq for pair in self.pairs for seq in pair)

    def card_extras(self) -> dict[str, Any]:
        return {"source_sha256": self.fingerprint(), "pairs": len(self.pairs)}

    def generate(self, seed: int) -> dict[str, Split]:
        o = self.options
        parts = shuffled_parts(len(self.pairs), o.val_fraction, o.test_fraction, seed)
        if any(len(part) < 1 for part in parts.values()):
            raise ConfigError(
                "path", f"{len(self.pairs)} pairs are too few to split into train, val and test"
            )
        return {
            split: pairs_split(self._vocab, [self.pairs[i] for i in idx])
            for split, idx in parts.items()
        }


def parse_pairs(
    text: str, source_key: str, target_key: str, tokens: str
) -> list[tuple[list[str], list[str]]]:
    """Tokenised (source, target) pairs; blank lines are skipped, lines numbered from 1."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError("path", f"line {number}: not JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError("path", f"line {number}: not a JSON object")
        pair = []
        for key in (source_key, target_key):
            if key not in record:
                raise ConfigError("path", f"line {number}: no {key!r}")
            if not isinstance(record[key], str):
                raise ConfigError("path", f"line {number}: {key!r} is not a string")
            seq = list(record[key]) if tokens == "chars" else record[key].split()
            if not seq:
                raise ConfigError("path", f"line {number}: {key!r} has length 0")
            pair.append(seq)
        pairs.append((pair[0], pair[1]))
    if not pairs:
        raise ConfigError("path", "no pairs: the file holds only blank lines")
    return pairs
