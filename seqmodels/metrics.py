"""The test metrics of each task family, computed once here for the LightningModules of
`seqmodels.lit` and for the tasks' baselines (`seqmodels.tasks`).

Ids follow `seqmodels.tokens`: PAD pads, EOS ends a target sequence. The functions on arrays
need numpy alone, so a task's baseline reads them without loading torch; those on tensors
(`accuracy`, `mean_absolute_error`) use only the tensors' own methods. What a metric's range
and direction are (lower is better for `per`...) is `seqmodels.tasks.metrics`'.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from seqmodels.tokens import EOS, PAD

if TYPE_CHECKING:
    import torch

# --- regression and classification --------------------------------------------------------------


def mean_absolute_error(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean |pred - y| over every element: the regression's `mae`."""
    return (pred - y).abs().mean()


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The share of rows whose largest logit is the target class: logits (B, C), y (B,)."""
    return (logits.argmax(-1) == y).float().mean()


# --- token sequences ------------------------------------------------------------------------------


def teacher_forced_accuracies(
    logits: torch.Tensor, y: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token accuracy over the target tokens, share of sequences right at every one): logits
    (B, U, V) under teacher forcing, y (B, U) ids, valid (B, U) True at the target tokens."""
    correct = (logits.argmax(-1) == y) | ~valid  # (B, U)
    return (correct & valid).sum() / valid.sum(), correct.all(dim=1).float().mean()


def widen(ids: np.ndarray, width: int) -> np.ndarray:
    """(N, U) ids padded with PAD to (N, width), width >= U."""
    out = np.full((ids.shape[0], width), PAD, dtype=np.int64)
    out[:, : ids.shape[1]] = ids
    return out


def symbols(ids: Iterable[int]) -> list[int]:
    """The ids before the first EOS, without padding: what an edit distance compares."""
    out = []
    for token in ids:
        if token == EOS:
            break
        if token != PAD:
            out.append(token)
    return out


def sequence_metrics(pred: np.ndarray, y: np.ndarray, y_len: np.ndarray) -> dict[str, float]:
    """Exact match (every target id, EOS included, right) and token accuracy over real positions.

    `pred` and `y` are (N, U) ids; positions at or past `y_len` are ignored.
    """
    width = max(pred.shape[1], y.shape[1])
    pred, y = widen(pred, width), widen(y, width)
    real = np.arange(width)[None, :] < y_len[:, None]  # (N, U)
    right = (pred == y) & real
    exact = right.sum(axis=1) == y_len
    return {
        "exact_match": float(exact.mean()),
        "token_accuracy": float(right.sum() / real.sum()),
    }


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance: insertions, deletions and substitutions cost 1."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def error_rates(
    predictions: Sequence[Sequence[Hashable]], targets: Sequence[Sequence[Hashable]]
) -> dict[str, float]:
    """PER: summed edit distance over summed target length; WER: share of words not exact."""
    edits = sum(edit_distance(p, t) for p, t in zip(predictions, targets, strict=True))
    wrong = sum(list(p) != list(t) for p, t in zip(predictions, targets, strict=True))
    return {"per": edits / sum(len(t) for t in targets), "wer": wrong / len(targets)}


def decoded_metrics(
    decoded: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """The seq2seq test's metrics over batches of (generated ids (B, U'), targets (B, U),
    target lengths (B,)): `sequence_metrics` of the ids, and the edit-distance rates
    (`error_rates`) of the symbols alone, since EOS and padding are not phonemes or letters."""
    width = max(max(p.shape[1], y.shape[1]) for p, y, _ in decoded)
    pred = np.concatenate([widen(p, width) for p, _, _ in decoded])
    y = np.concatenate([widen(t, width) for _, t, _ in decoded])
    y_len = np.concatenate([n for _, _, n in decoded])
    metrics = sequence_metrics(pred, y, y_len)
    produced = [symbols(row.tolist()) for row in pred]
    targets = [symbols(row[:n].tolist()) for row, n in zip(y, y_len, strict=True)]
    return metrics | error_rates(produced, targets)


# --- language models ------------------------------------------------------------------------------


def language_model_metrics(nats: float, right: int, tokens: int) -> dict[str, float]:
    """From an epoch's summed nats, right argmaxes and scored tokens: `cross_entropy` (mean nats
    per token), `bits_per_char` (nats / ln 2), `perplexity` (e to the mean nats) and
    `accuracy`. Summed over the epoch, not averaged over batches: perplexity is exp of the mean
    nats, which a mean of batches' perplexities is not."""
    mean = nats / max(tokens, 1)
    return {
        "cross_entropy": mean,
        "bits_per_char": mean / math.log(2),
        "perplexity": math.exp(mean),
        "accuracy": right / max(tokens, 1),
    }


__all__ = [
    "accuracy",
    "decoded_metrics",
    "edit_distance",
    "error_rates",
    "language_model_metrics",
    "mean_absolute_error",
    "sequence_metrics",
    "symbols",
    "teacher_forced_accuracies",
    "widen",
]
