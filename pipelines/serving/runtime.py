"""MLflow pyfunc models of seqlab's networks: what a served champion runs when `mlflow models
serve` or `seqlab sample` loads it.

A registered champion is one pyfunc model whose signature says what its task asks of it.
Its `kind` (the model's `seqlab.kind` metadata) follows the task:

- `regression` (family regression): x (N, T, F) float32 in; the predictions (N, O), or
  (N, T, O) per step, out.
- `classification` (family classification, and lm tasks whose target is not the next input,
  such as copy): x in, token ids (N, T) or features (N, T, F), or `{x, x_parent}` for a tree
  network; `{class: (N,) int64, probabilities: (N, C) float32}` out, with a time axis after
  N for per-step targets.
- `seq2seq` (family seq2seq): source strings in; per source, the generated `text`, its
  `tokens` and their `length` out. Params: stop, temperature, top_k, max_length, seed, and
  beam (> 1: the most likely target under a beam of that width, `seqmodels.generate`).
- `language_model` (lm tasks that predict their next input: charlm, text): prompt strings in;
  per prompt, its continuation as `text`, `tokens`, `length` out. The same params.

Strings are written in the task's symbols: one character each where every symbol is one
character (dates, charlm), otherwise separated by whitespace (g2p's phonemes). Token ids are
padded with PAD, so each sequence's length is where its padding starts.

How a generated sequence ends (`stop`, Deep Learning 10.2.3) is one of the ways the network
was trained for: `eos` always (every target ends in EOS), and the network's own `bernoulli` or
`length` output where it has one. `temperature` 0 decodes greedily.

A wrapper rebuilds its network from two artifacts, the weights and `seqlab.json` (its `Card`:
the network's config, sizes and vocabulary); `pipelines.serving.champion` logs them. Loading
one needs torch, numpy, pandas and MLflow: no Ray, Prefect or Lightning.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel, PythonModelContext
from torch import nn

from seqmodels.batch import EOS, PAD
from seqmodels.generate import beam_search, continuation, generate
from seqmodels.models import ModelConfig, build_model, takes_argument
from seqmodels.tasks.common import Vocabulary, pad

WEIGHTS, CARD = "weights", "seqlab"  # the artifacts' keys


class BadRequest(ValueError):
    """A request a model cannot answer. `field` names the param or input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Card:
    """What a wrapper needs to rebuild its network and to read and write its task's symbols.

    `sampling` holds the defaults of the sampling params (empty where nothing is generated),
    and `stops` the ways this network may end a sequence, its own first.
    """

    kind: str
    task: str
    model: dict[str, Any]  # ModelConfig's fields
    input_size: int
    output_size: int
    inputs: tuple[str, ...]  # the arrays of a tensor request: "x", and "x_parent" for trees
    x_shape: tuple[int, ...]  # (-1, T) or (-1, T, F); T is -1 where any length will do
    x_dtype: str
    vocabulary: tuple[str, ...] | None
    stops: tuple[str, ...]
    sampling: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, default=_native) + "\n"

    @classmethod
    def read(cls, path: Path) -> Card:
        raw = json.loads(path.read_text())
        for key in ("inputs", "x_shape", "stops"):
            raw[key] = tuple(raw[key])
        if raw["vocabulary"] is not None:
            raw["vocabulary"] = tuple(raw["vocabulary"])
        return cls(**raw)


def _native(value: Any) -> Any:
    """A numpy scalar as Python's own, for JSON: Tune samples some hyperparameters as numpy's."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def build_network(card: Card, weights: Path) -> nn.Module:
    """The card's network with its trained weights, in evaluation mode, on the CPU."""
    net = build_model(ModelConfig(**card.model), card.input_size, card.output_size)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


@dataclass(frozen=True)
class Symbols:
    """A token task's vocabulary as text: characters, or whitespace-separated symbols when
    some symbol is longer than one character."""

    vocabulary: Vocabulary

    @property
    def by_character(self) -> bool:
        return all(len(symbol) == 1 for symbol in self.vocabulary.symbols)

    def encode(self, text: str, field: str) -> list[int]:
        """The ids of `text`'s symbols; an unknown symbol is a BadRequest naming `field`."""
        symbols = list(text) if self.by_character else text.split()
        if not symbols:
            raise BadRequest(field, "is empty; it needs at least one symbol")
        unknown = sorted(set(symbols) - set(self.vocabulary.symbols))
        if unknown:
            shown = ", ".join(repr(s) for s in unknown[:5])
            raise BadRequest(field, f"{shown}: not in the model's vocabulary")
        return self.vocabulary.encode(symbols)

    def decode(self, ids: list[int]) -> str:
        """The symbols of `ids`, joined; reserved ids (PAD, BOS, EOS) are not symbols.

        Every EOS is skipped rather than ending the text (as `Vocabulary.decode` does): a
        sequence ended by its `bernoulli` or `length` output may hold an EOS anywhere.
        """
        symbols = self.vocabulary.decode(i for i in ids if i != EOS)
        return ("" if self.by_character else " ").join(symbols)


@dataclass(frozen=True)
class Sampling:
    """How a request asks to draw sequences: its params, checked, over the model's defaults."""

    stop: str
    temperature: float
    top_k: int
    max_length: int
    seed: int
    beam: int = 1  # > 1: the most likely target under beam search (seq2seq models only)

    @classmethod
    def read(cls, params: dict[str, Any] | None, card: Card) -> Sampling:
        """`params` (None or partial: the card's defaults fill in) checked against the card."""
        fields = {f.name for f in dataclasses.fields(cls)}
        given = {key: value for key, value in (params or {}).items() if key in fields}
        if "beam" in given and "beam" not in card.sampling:
            raise BadRequest("beam", f"a {card.kind} model samples; it has no beam search")
        sampling = cls(**{**card.sampling, **given})
        if sampling.stop not in card.stops:
            raise BadRequest(
                "stop",
                f"{sampling.stop!r} is not a way this model was trained to end a sequence; "
                f"choose from: {', '.join(card.stops)}",
            )
        if sampling.temperature < 0:
            raise BadRequest("temperature", "must be >= 0 (0: greedy, the most likely token)")
        if sampling.top_k < 0:
            raise BadRequest("top_k", "must be >= 0 (0: every token)")
        if sampling.max_length < 1:
            raise BadRequest("max_length", "must be >= 1")
        if sampling.beam < 1:
            raise BadRequest("beam", "must be >= 1 (1: no beam search)")
        if sampling.beam > 1 and sampling.stop == "bernoulli":
            raise BadRequest("beam", "beam search ends a target by eos or length, not bernoulli")
        if sampling.beam > 1 and (sampling.temperature > 0 or sampling.top_k > 0):
            raise BadRequest(
                "beam", "beam search finds the most likely target: set temperature 0 and top_k 0"
            )
        return sampling

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def softmax_temperature(self) -> float:
        """What `next_token` divides the logits by: greedy decoding ignores it, and 0 is not
        one `next_token` takes."""
        return self.temperature or 1.0

    def generator(self) -> torch.Generator:
        """One generator per request: the same request draws the same sequences."""
        return torch.Generator().manual_seed(self.seed)


class Wrapper(PythonModel):
    """What every wrapper shares: the card and the network, from artifacts or in memory."""

    card: Card
    net: nn.Module

    def load_context(self, context: PythonModelContext) -> None:
        card = Card.read(Path(context.artifacts[CARD]))
        self.attach(card, build_network(card, Path(context.artifacts[WEIGHTS])))

    def attach(self, card: Card, net: nn.Module) -> None:
        self.card, self.net = card, net.eval()


class _TensorWrapper(Wrapper):
    """Regression and classification: arrays in, the network's outputs out."""

    @torch.no_grad()
    def forward(self, model_input: np.ndarray | dict[str, np.ndarray]) -> torch.Tensor:
        """The network on a request: x alone, or a dict of the card's inputs."""
        arrays = model_input if isinstance(model_input, dict) else {"x": model_input}
        x = torch.as_tensor(np.asarray(arrays["x"]))
        given: dict[str, torch.Tensor] = {}
        if "x_parent" in self.card.inputs:
            given["x_parent"] = torch.as_tensor(np.asarray(arrays["x_parent"]))
        if not x.is_floating_point() and takes_argument(self.net, "x_len"):
            given["x_len"] = (x != PAD).sum(dim=1)  # token ids: padding ends each sequence
        return self.net(x, **given)


class Regressor(_TensorWrapper):
    """A regression network: its predictions for x, (N, O) or per step (N, T, O)."""

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        return self.forward(model_input).numpy()


class Classifier(_TensorWrapper):
    """A classifier, per sequence or per step: the most likely class and every probability.

    `model_input` is x, or for a tree network a dict {x, x_parent}.
    Returns {"class": (N,) or (N, T) int64, "probabilities": (N, C) or (N, T, C) float32}.
    """

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        probabilities = torch.softmax(self.forward(model_input), dim=-1)
        return {
            "class": probabilities.argmax(dim=-1).numpy(),
            "probabilities": probabilities.numpy(),
        }


class GeneratorWrapper(Wrapper):
    """Seq2seq and language models: strings in, one generated sequence per string out."""

    symbols: Symbols

    def attach(self, card: Card, net: nn.Module) -> None:
        super().attach(card, net)
        assert card.vocabulary is not None, "a generator's task has a vocabulary"
        self.symbols = Symbols(Vocabulary(card.vocabulary))

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Returns, per row of the one string column: `text` (the symbols drawn), `tokens`
        (their ids, the ending EOS included) and `length` (how many tokens)."""
        texts = [str(value) for value in model_input.iloc[:, 0]]
        try:
            sampling = Sampling.read(params, self.card)
            drawn = self.draw(texts, sampling)
        except BadRequest as err:  # MLflow's own error: the scoring server answers 400
            raise MlflowException.invalid_parameter_value(str(err)) from None
        return pd.DataFrame(
            {
                "text": [self.symbols.decode(ids) for ids in drawn],
                "tokens": drawn,
                "length": [len(ids) for ids in drawn],
            }
        )

    def draw(self, texts: list[str], sampling: Sampling) -> list[list[int]]:
        raise NotImplementedError  # pragma: no cover - abstract


class Seq2SeqGenerator(GeneratorWrapper):
    """An encoder-decoder: for each source string, the target it generates."""

    def draw(self, texts: list[str], sampling: Sampling) -> list[list[int]]:
        ids = [self.symbols.encode(text, f"source {i}") for i, text in enumerate(texts)]
        x, x_len = pad(ids, eos=False)  # (N, S), (N,)
        sources = torch.from_numpy(x), torch.from_numpy(x_len)
        if sampling.beam > 1:
            out = beam_search(
                self.net, *sources, sampling.beam, sampling.max_length, stop=sampling.stop
            )
        else:
            out = generate(
                self.net,
                *sources,
                max_length=sampling.max_length,
                greedy=sampling.greedy,
                temperature=sampling.softmax_temperature,
                top_k=sampling.top_k,
                generator=sampling.generator(),
                stop=sampling.stop,
            )
        return [row[:n].tolist() for row, n in zip(out.tokens, out.lengths, strict=True)]


class LanguageModelSampler(GeneratorWrapper):
    """A language model: for each prompt, the continuation it draws, until EOS or max_length."""

    def draw(self, texts: list[str], sampling: Sampling) -> list[list[int]]:
        generator = sampling.generator()
        drawn = []
        for i, text in enumerate(texts):  # one at a time: prompts differ in length
            prefix = torch.tensor([self.symbols.encode(text, f"prompt {i}")])  # (1, P)
            drawn.append(
                continuation(
                    self.net,
                    prefix,
                    sampling.max_length,
                    sampling.greedy,
                    sampling.softmax_temperature,
                    sampling.top_k,
                    generator,
                )
            )
        return drawn


WRAPPERS: dict[str, type[Wrapper]] = {
    "regression": Regressor,
    "classification": Classifier,
    "seq2seq": Seq2SeqGenerator,
    "language_model": LanguageModelSampler,
}
