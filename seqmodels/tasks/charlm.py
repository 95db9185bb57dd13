"""Character-level language modelling on the CPython standard library's own source text.

The corpus is on every machine that runs Python, so it needs no download: the files of
`CORPUS_FILES`, read as UTF-8 from the running interpreter's `sysconfig.get_paths()["stdlib"]`
and concatenated in that (sorted) order. Their text changes between Python versions, so the
data card records the version and a hash of the files, and the hash joins the cache key.

Splitting and windowing (shared with the `text` task, see `char_lm_splits`):
    the corpus is cut by position: the first 1 - val_fraction - test_fraction of its
    characters train, the next val_fraction validate, the last test_fraction test. Each part
    is cut into windows of `window` + 1 characters starting every `window` characters (so
    every character but a part's first is a target once); x is a window's first `window`
    characters, y its last `window`. A part's tail shorter than a window is dropped.
"""

from __future__ import annotations

import hashlib
import math
import platform
import sysconfig
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import Vocabulary, check_fractions, held_out_counts
from seqmodels.tasks.families import LanguageModelTask
from seqmodels.tokens import FIRST_SYMBOL

if TYPE_CHECKING:
    from seqmodels.tasks.user_data import TextOptions

CORPUS_FILES = (
    "argparse.py",
    "ast.py",
    "bisect.py",
    "calendar.py",
    "configparser.py",
    "contextlib.py",
    "copy.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "enum.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "inspect.py",
    "pickle.py",
    "random.py",
    "shutil.py",
    "statistics.py",
    "string.py",
    "subprocess.py",
    "tarfile.py",
    "textwrap.py",
    "threading.py",
    "typing.py",
)


def check_text_options(options: CharLMOptions | TextOptions) -> None:
    """The checks of a windowed text's options: `window`, `max_chars`, then the fractions."""
    if options.window < 1:
        raise ConfigError("window", "must be >= 1")
    if options.max_chars is not None and options.max_chars < 1:
        raise ConfigError("max_chars", "must be >= 1, or null for the whole text")
    check_fractions(options.val_fraction, options.test_fraction)


@dataclass(frozen=True)
class CharLMOptions:
    """Window length, held-out fractions, and an optional cap on the corpus' characters."""

    window: int = 128
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    max_chars: int | None = None

    def __post_init__(self) -> None:
        check_text_options(self)


class CharLMTask(LanguageModelTask):
    """Next-character prediction over a text; subclasses say where the text comes from.

    The baseline, measured: a unigram model, the entropy of train's character frequencies, in
    bits per character (Shannon 1951's zeroth-order estimate).
    """

    next_input = True
    metric = "bits_per_char"
    metrics = ("bits_per_char", "perplexity")
    baseline_note = (
        "unigram model: the entropy of train's character frequencies, in bits per character "
        "(Shannon 1951's zeroth-order estimate), measured"
    )

    @property
    def text(self) -> str:
        raise NotImplementedError

    @cached_property
    def _vocab(self) -> Vocabulary:
        return Vocabulary.from_sequences([self.text])

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return unigram_bits(splits["train"])

    def generate(self, seed: int) -> dict[str, Split]:
        # Windows are cut by position; `seed` changes nothing (loaders shuffle them).
        o = self.options
        text = self.text if o.max_chars is None else self.text[: o.max_chars]
        return char_lm_splits(self._vocab, text, o.window, o.val_fraction, o.test_fraction)


@TASKS.register("charlm")
class StdlibCharLMTask(CharLMTask):
    """Character-level LM on CPython's own standard library source (see the module doc)."""

    options_type = CharLMOptions

    @cached_property
    def text(self) -> str:
        return "".join(path.read_text(encoding="utf-8") for path in corpus_paths())

    def fingerprint(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def card_extras(self) -> dict[str, Any]:
        return {
            "python_version": platform.python_version(),
            "files": list(CORPUS_FILES),
            "files_sha256": self.fingerprint(),
            "corpus_chars": len(self.text),
        }


def corpus_paths() -> list[Path]:
    """The corpus files of the running interpreter, in order; all must exist."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    paths = [lib / name for name in CORPUS_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"charlm: {lib} lacks the source of {', '.join(missing)}")
    return paths


def char_lm_splits(
    vocab: Vocabulary, text: str, window: int, val_fraction: float, test_fraction: float
) -> dict[str, Split]:
    """Positional train/val/test parts of `text`, each cut into windows (see the module doc)."""
    ids = encode_chars(vocab, text)
    n_train, n_val, _ = held_out_counts(len(ids), val_fraction, test_fraction)
    parts = {
        "train": ids[:n_train],
        "val": ids[n_train : n_train + n_val],
        "test": ids[n_train + n_val :],
    }
    out = {}
    for split, part in parts.items():
        count = (len(part) - 1) // window
        if count < 1:
            raise ConfigError(
                "window",
                f"the {split} part has {len(part)} characters, fewer than window + 1 = "
                f"{window + 1}; shorten the window or give more text",
            )
        starts = np.arange(count) * window
        chunks = part[starts[:, None] + np.arange(window + 1)[None, :]]  # (N, window + 1)
        lengths = np.full(count, window, dtype=np.int64)
        out[split] = {"x": chunks[:, :-1], "x_len": lengths, "y": chunks[:, 1:], "y_len": lengths}
    return out


def encode_chars(vocab: Vocabulary, text: str) -> np.ndarray:
    """A text's characters as (L,) int64 ids, vectorised over code points."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    known = np.array([ord(s) for s in vocab.symbols], dtype=np.uint32)  # sorted by code point
    position = np.searchsorted(known, codes)
    if len(codes) and not np.array_equal(known[np.minimum(position, len(known) - 1)], codes):
        raise ValueError("text holds characters outside the vocabulary")
    return (position + FIRST_SYMBOL).astype(np.int64)


def unigram_bits(split: Split) -> float:
    """Entropy in bits of the split's target-character frequencies."""
    _, counts = np.unique(split["y"], return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def bits_to_perplexity(bits: float) -> float:
    """Per-character perplexity of a model scoring `bits` per character."""
    return math.pow(2.0, bits)
