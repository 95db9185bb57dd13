"""Tiny options for every registered task, and the user-data files they read.

Shared by the generated matrix (`test_matrix.py`) and the per-task studies (`test_every_task.py`),
so that a task registered without an entry here fails both loudly instead of being skipped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

SIZES = {"n_train": 48, "n_val": 16, "n_test": 16}
CSV = "day,temp,rain\n" + "".join(f"{i},{math.sin(i / 3):.4f},{i % 5}\n" for i in range(120))
WORDS = ["cat", "dog", "bird", "fish", "cow", "owl", "ant", "bee", "yak", "emu", "elk", "eel"]
PAIRS = "".join(json.dumps({"source": w, "target": w[::-1]}) + "\n" for w in WORDS * 3)
TEXT = "the quick brown fox jumps over the lazy dog. " * 60


def write_user_files(directory: Path) -> dict[str, str]:
    """A text file, a CSV and a JSONL file of pairs under `directory`: the user-data tasks'
    `path`s, by task name."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "text": (directory / "corpus.txt", TEXT),
        "series_csv": (directory / "series.csv", CSV),
        "pairs_jsonl": (directory / "pairs.jsonl", PAIRS),
    }
    for path, content in files.values():
        path.write_text(content, encoding="utf-8")
    return {task: str(path) for task, (path, _) in files.items()}


def tiny_options(task: str, files: dict[str, str]) -> dict[str, Any]:
    """Options that make `task` prepare in about a second and train an epoch in less.

    Raises KeyError for a task with no entry: add one when registering a task.
    """
    options: dict[str, dict[str, Any]] = {
        "adding": {"length": 8, **SIZES},
        "addition": {"max_digits": 2, **SIZES},
        "charlm": {"window": 16, "max_chars": 4_000},
        "copy": {"delay": 4, "alphabet": 4, **SIZES},
        "dates": {"max_length": 12, **SIZES},
        "g2p": {"max_words": 120},
        "listops": {"max_length": 16, "max_depth": 2, **SIZES},
        "pairs_jsonl": {"path": files["pairs_jsonl"], "val_fraction": 0.2, "test_fraction": 0.2},
        "reconstruct": {"length": 8, **SIZES},
        "reverse": {"min_length": 2, "max_length": 5, **SIZES},
        "seq_digits": {"view": "rows", "val_fraction": 0.1, "test_fraction": 0.1},
        "series_csv": {"path": files["series_csv"], "columns": ["temp", "rain"], "window": 6},
        "sort": {"min_length": 2, "max_length": 5, **SIZES},
        "sunspots": {"window": 8},
        "text": {"path": files["text"], "window": 16, "val_fraction": 0.1, "test_fraction": 0.1},
    }
    return options[task]
