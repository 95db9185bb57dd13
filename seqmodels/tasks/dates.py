"""Free-form dates to ISO 8601: "Sunday, March 07, 2021" -> "2021-03-07".

A classic small demonstration of attention: the decoder must find the year, the month and the
day wherever the format put them. Sources are rendered by Python's own `strftime`.
"""

from __future__ import annotations

import datetime
from functools import cache
from typing import Any

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.options import check_range
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import Vocabulary, check_length_range, generator_options
from seqmodels.tasks.families import Seq2SeqTask, Symbols

# Every format names the order of day and month unambiguously (a month name, or a separator
# that fixes the convention: "/" month first, "." day first), and writes the year in full.
FORMATS = (
    "%d %B %Y",
    "%B %d, %Y",
    "%A, %B %d, %Y",
    "%A %d %B %Y",
    "%a %d %b %Y",
    "%d %b %Y",
    "%b %d %Y",
    "%d-%b-%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%B %Y, day %d",
)
ISO = "%Y-%m-%d"


@cache
def _rendered_lengths() -> frozenset[int]:
    """Every source length a format can produce: it depends only on the month and weekday."""
    year = datetime.date(2000, 1, 1)  # a year shows every (month, weekday) pair
    days = [year + datetime.timedelta(days=i) for i in range(366)]
    return frozenset(len(d.strftime(f)) for d in days for f in FORMATS)


@generator_options(n_train=10000, n_val=1000, n_test=1000)
class DatesOptions:
    """Dates drawn uniformly from `min_year`..`max_year`, kept if their source length (in
    characters) lies in `min_length`..`max_length`."""

    min_length: int = 1
    max_length: int = 64
    min_year: int = 1900
    max_year: int = 2099

    def __post_init__(self) -> None:
        check_length_range(self.min_length, self.max_length, "min_length", "max_length")
        lengths = _rendered_lengths()
        if not any(self.min_length <= k <= self.max_length for k in lengths):
            span = f"{min(lengths)}..{max(lengths)}"
            raise ConfigError("max_length", f"no format renders a date in range; lengths {span}")
        check_length_range(self.min_year, self.max_year, "min_year", "max_year", floor=1000)
        check_range("max_year", self.max_year <= 9999, "must be <= 9999 (four-digit years)")


@TASKS.register("dates")
class DatesTask(Seq2SeqTask):
    """Translate a date written in one of `FORMATS` into ISO 8601, character by character."""

    options_type = DatesOptions
    baseline_note = (
        "answer train's most frequent ISO date, exact match on test, measured; "
        "no published number for this generator"
    )

    @property
    def _vocab(self) -> Vocabulary:
        return _vocabulary()

    def card_extras(self) -> dict[str, Any]:
        return {"formats": list(FORMATS), "target_format": ISO}

    def generate(self, seed: int) -> dict[str, Split]:
        _require_english_names()
        return super().generate(seed)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[list[Symbols], list[Symbols]]:
        o = self.options
        first = datetime.date(o.min_year, 1, 1).toordinal()
        last = datetime.date(o.max_year, 12, 31).toordinal()
        sources: list[Symbols] = []
        targets: list[Symbols] = []
        while len(sources) < n:  # rejection by length; the options ensure some pass
            ordinals = rng.integers(first, last + 1, size=n)
            formats = rng.integers(0, len(FORMATS), size=n)
            for day_number, f in zip(ordinals.tolist(), formats.tolist(), strict=True):
                day = datetime.date.fromordinal(day_number)
                text = day.strftime(FORMATS[f])
                if o.min_length <= len(text) <= o.max_length and len(sources) < n:
                    sources.append(text)
                    targets.append(day.strftime(ISO))
        return sources, targets


@cache
def _vocabulary() -> Vocabulary:
    year = datetime.date(2000, 1, 1)
    days = [year + datetime.timedelta(days=i) for i in range(366)]
    texts = [d.strftime(f) for d in days for f in (*FORMATS, ISO)]
    return Vocabulary.from_sequences(texts)


def _require_english_names() -> None:
    """strftime follows LC_TIME; a non-English locale would change the data under one digest."""
    if datetime.date(2000, 1, 3).strftime("%A %B") != "Monday January":
        raise RuntimeError("the dates task needs the C (English) LC_TIME locale")
