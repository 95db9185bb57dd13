"""Reconstruct a sequence: the target is the input itself, at every step (reading note 2).

The task of a sequence autoencoder (`architecture: autoencoder`): the encoder must squeeze
x(1..tau) into h(tau) and the decoder rebuild it from that code alone, so the reconstruction
error measures how much of a sequence a code of `hidden_size` numbers keeps (Deep Learning
10.4, with the input as the target). An architecture that reads x(t) at step t (`recurrent`,
`bidirectional`, `deep`, `output_recurrent`) only has to learn the identity, and is the
no-bottleneck reference.

The generator, for each example n, feature f and step t = 0 .. T-1, with K = `components`:

    x[n, t, f] = (1 / sqrt(K)) * sum_k a[n, f, k] * sin(2 pi nu[n, f, k] t + phi[n, f, k])
                 + noise * eps[n, t, f]

    a ~ U[0.5, 1.5]    nu ~ U[0.02, 0.2] cycles per step (periods of 5 to 50 steps)
    phi ~ U[0, 2 pi)   eps ~ N(0, 1)

drawn from one `numpy.random.default_rng(seed)`, split by split (train, val, test), each split
drawing a, nu, phi, then eps. So K sinusoids carry 3K numbers per feature, and a code smaller
than that must lose something. The target is y = x: (N, T, F) float32.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from seqmodels.options import check_range
from seqmodels.tasks.base import TASKS, Split
from seqmodels.tasks.common import check_counts, drawn_splits, generator_options
from seqmodels.tasks.families import RegressionTask

AMPLITUDE = (0.5, 1.5)
FREQUENCY = (0.02, 0.2)  # cycles per step
# E[x^2] without noise: each component's E[a^2 sin^2] = E[a^2] / 2 (uniform phase), times K / K.
SIGNAL_POWER = (AMPLITUDE[0] ** 2 + AMPLITUDE[0] * AMPLITUDE[1] + AMPLITUDE[1] ** 2) / 3 / 2


@generator_options(n_train=2000, n_val=500, n_test=500)
class ReconstructOptions:
    """Sequence length T, features F, sinusoids per feature, noise and split sizes."""

    length: int = 32
    features: int = 1
    components: int = 3
    noise: float = 0.05

    def __post_init__(self) -> None:
        check_counts(self, ("length", "features", "components"))
        ok = math.isfinite(self.noise) and self.noise >= 0
        check_range("noise", ok, "must be a finite standard deviation >= 0")


@TASKS.register("reconstruct")
class ReconstructTask(RegressionTask):
    """x (N, T, F) sums of random sinusoids plus noise -> y = x (N, T, F), per-step regression.

    Baseline: predict, at every step, each feature's mean over the train split; its MSE on
    test, measured. In expectation it is the signal's variance, 13/24 + noise^2 (about 0.544
    at noise 0.05), which `baseline` gives.
    """

    resample = "redraw"  # every split drawn from the generator

    options_type = ReconstructOptions
    per_step = True
    baseline_note = (
        "predict each feature's train mean at every step: MSE on test, measured (expected "
        "13/24 + noise^2, the signal's variance); the sequence autoencoder of reading note 2"
    )

    @property
    def baseline(self) -> float:
        """The mean predictor's expected MSE: E[x^2] = 13/24 + noise^2."""
        return SIGNAL_POWER + self.options.noise**2

    def baseline_on(self, splits: dict[str, Split]) -> float:
        return mean_predictor_mse(splits)

    @property
    def input_size(self) -> int:
        return self.options.features

    def card_extras(self) -> dict[str, Any]:
        return {
            "generator": "x[n,t,f] = sum_k a sin(2 pi nu t + phi) / sqrt(K) + noise * N(0, 1)",
            "amplitude": list(AMPLITUDE),
            "frequency_cycles_per_step": list(FREQUENCY),
            "phase": [0.0, 2 * math.pi],
            "expected_baseline": self.baseline,
        }

    def generate(self, seed: int) -> dict[str, Split]:
        o = self.options
        draw = partial(
            reconstruct_split,
            length=o.length,
            features=o.features,
            components=o.components,
            noise=o.noise,
        )
        return drawn_splits(o, seed, draw)


def reconstruct_split(
    rng: np.random.Generator, n: int, length: int, features: int, components: int, noise: float
) -> Split:
    """Draw `n` sequences as the module docstring says: x and y = x, both (n, T, F) float32."""
    shape = (n, features, components)
    a = rng.uniform(*AMPLITUDE, size=shape)
    nu = rng.uniform(*FREQUENCY, size=shape)
    phi = rng.uniform(0.0, 2 * math.pi, size=shape)
    eps = rng.standard_normal((n, length, features))
    t = np.arange(length)[None, :, None, None]  # (1, T, 1, 1)
    waves = a[:, None] * np.sin(2 * math.pi * nu[:, None] * t + phi[:, None])  # (n, T, F, K)
    x = (waves.sum(axis=-1) / math.sqrt(components) + noise * eps).astype(np.float32)  # (n, T, F)
    return {"x": x, "y": x.copy()}


def mean_predictor_mse(splits: dict[str, Split]) -> float:
    """MSE on test of predicting, at every step, each feature's mean over train's x."""
    mean = splits["train"]["x"].mean(axis=(0, 1), dtype=np.float64)  # (F,)
    return float(np.mean((splits["test"]["y"] - mean) ** 2))
