"""MLflow pyfunc models of seqlab's networks: what `mlflow models serve` and `seqlab sample` load.

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

A model is logged as code (MLflow 3's models from code, so no pickled object): a three-line
script names the wrapper class, the artifacts are the weights and `seqlab.json` (the
network's config, sizes and vocabulary), and `code_paths` carry `seqmodels` and `pipelines`.
Loading it needs torch, numpy, pandas and MLflow: no Ray, Prefect or Lightning.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.types.schema import Array
from torch import nn

import pipelines
import seqmodels
from seqmodels.batch import EOS, FIRST_SYMBOL, PAD
from seqmodels.files import read_arrays, read_card
from seqmodels.generate import beam_search, generate, next_token, sample_language_model
from seqmodels.models import ModelConfig, build_model, takes_argument
from seqmodels.models.sequence import Recurrent
from seqmodels.tasks.common import Vocabulary, pad

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo
    from mlflow.pyfunc import PyFuncModel

    from pipelines.data.store import DatasetRef

WEIGHTS, CARD = "weights", "seqlab"  # the artifacts' keys
LM_MAX_LENGTH = 200  # new tokens a language model draws by default
PROMPT_LENGTH = 32  # symbols of a test window that make a language model's example prompt


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
        """The symbols of `ids`, joined; reserved ids (PAD, BOS, EOS) are not symbols."""
        symbols = [self.vocabulary.symbols[i - FIRST_SYMBOL] for i in ids if i >= FIRST_SYMBOL]
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


class _Wrapper(PythonModel):
    """What every wrapper shares: the card and the network, from artifacts or in memory."""

    card: Card
    net: nn.Module

    def load_context(self, context: PythonModelContext) -> None:
        card = Card.read(Path(context.artifacts[CARD]))
        self.attach(card, build_network(card, Path(context.artifacts[WEIGHTS])))

    def attach(self, card: Card, net: nn.Module) -> None:
        self.card, self.net = card, net.eval()


class _TensorWrapper(_Wrapper):
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


class _Generator(_Wrapper):
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


class Seq2SeqGenerator(_Generator):
    """An encoder-decoder: for each source string, the target it generates."""

    def draw(self, texts: list[str], sampling: Sampling) -> list[list[int]]:
        ids = [self.symbols.encode(text, f"source {i}") for i, text in enumerate(texts)]
        x, x_len = pad(ids, eos=False)  # (N, S), (N,)
        net = ending_by(self.net, sampling.stop)
        sources = torch.from_numpy(x), torch.from_numpy(x_len)
        if sampling.beam > 1:
            out = beam_search(net, *sources, sampling.beam, sampling.max_length)
        else:
            out = generate(
                net,
                *sources,
                max_length=sampling.max_length,
                greedy=sampling.greedy,
                temperature=sampling.softmax_temperature,
                top_k=sampling.top_k,
                generator=sampling.generator(),
            )
        return [row[:n].tolist() for row, n in zip(out.tokens, out.lengths, strict=True)]


def ending_by(net: nn.Module, stop: str) -> nn.Module:
    """`net`, ending sequences by `stop`: a shallow copy when that is not its own way.

    `generate` reads the network's `stop`; the copy shares every weight, so a request asking
    for `eos` from a network with a length output changes nothing another request sees.
    """
    if net.stop == stop:
        return net
    other = copy.copy(net)
    other.stop = stop
    return other


class LanguageModelSampler(_Generator):
    """A language model: for each prompt, the continuation it draws, until EOS or max_length."""

    def draw(self, texts: list[str], sampling: Sampling) -> list[list[int]]:
        generator = sampling.generator()
        drawn = []
        for i, text in enumerate(texts):  # one at a time: prompts differ in length
            prefix = torch.tensor([self.symbols.encode(text, f"prompt {i}")])  # (1, P)
            drawn.append(continuation(self.net, prefix, sampling, generator))
        return drawn


@torch.no_grad()
def continuation(
    net: nn.Module, prefix: torch.Tensor, sampling: Sampling, generator: torch.Generator
) -> list[int]:
    """New tokens after `prefix` (1, P), to EOS or `max_length`.

    A `Recurrent` network resumes from its state (`sample_language_model`); any other (deep,
    bidirectional) has none to resume, so it reads the whole sequence again at every step.
    """
    greedy, temperature = sampling.greedy, sampling.softmax_temperature
    if isinstance(net, Recurrent):
        out = sample_language_model(
            net, prefix, sampling.max_length, greedy, temperature, sampling.top_k, generator
        )
        return out.tokens[0, : int(out.lengths[0])].tolist()
    tokens, new = prefix, []
    for _ in range(sampling.max_length):
        logits = net(tokens)[:, -1]  # (1, V): the next token's
        token = next_token(logits, greedy, temperature, sampling.top_k, generator)  # (1,)
        new.append(int(token))
        if new[-1] == EOS:
            break
        tokens = torch.cat([tokens, token[:, None]], dim=1)
    return new


WRAPPERS: dict[str, type[_Wrapper]] = {
    "regression": Regressor,
    "classification": Classifier,
    "seq2seq": Seq2SeqGenerator,
    "language_model": LanguageModelSampler,
}


# --- logging ---------------------------------------------------------------------------------


def kind_of(family: str, test: dict[str, np.ndarray]) -> str:
    """Which wrapper a dataset's networks get.

    The lm family holds language models, whose target is the next input (y(t) = x(t+1)),
    and per-step classifiers like the copy task, whose target is not: only the first can
    continue a prompt.
    """
    if family in ("regression", "classification", "seq2seq"):
        return family
    x, y = test["x"], test["y"]
    predicts_next = x.shape == y.shape and np.array_equal(y[:, :-1], x[:, 1:])
    return "language_model" if predicts_next else "classification"


def make_card(
    net: nn.Module, config: dict[str, Any], dataset: DatasetRef, test: dict[str, np.ndarray]
) -> Card:
    """The card of a trained network: its trial config, the dataset's sizes and vocabulary."""
    kind = kind_of(dataset.family, test)
    x = test["x"]
    tokens = np.issubdtype(x.dtype, np.integer)
    trees = "x_parent" in test and takes_argument(net, "x_parent")
    data_card = read_card(dataset.uri)
    vocabulary = data_card.get("vocabulary")
    stops: tuple[str, ...] = ()
    sampling: dict[str, Any] = {}
    if kind == "seq2seq":  # its own way first; EOS ends every target it was trained on
        stops = tuple(dict.fromkeys((net.stop, "eos")))
        sampling = {"temperature": 0.0, "max_length": net.max_length, "beam": 1}
    elif kind == "language_model":
        stops = ("eos",)
        sampling = {"temperature": 1.0, "max_length": LM_MAX_LENGTH}
    if stops:
        sampling = {"stop": stops[0], **sampling, "top_k": 0, "seed": 0}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    return Card(
        kind=kind,
        task=dataset.task,
        model={key: value for key, value in config.items() if key in model_fields},
        input_size=dataset.input_size,
        output_size=dataset.output_size,
        inputs=("x", "x_parent") if trees else ("x",),
        # token ids: any length (padding marks the end); features: the length trained on
        x_shape=(-1, -1) if tokens else (-1, *x.shape[1:]),
        x_dtype=str(x.dtype),
        vocabulary=None if vocabulary is None else tuple(vocabulary["symbols"]),
        stops=stops,
        sampling=sampling,
    )


def input_example(card: Card, test: dict[str, np.ndarray], rows: int = 2) -> Any:
    """The first `rows` test examples, as a request to the model: arrays, or strings."""
    if card.kind in ("regression", "classification"):
        if card.inputs == ("x",):
            return test["x"][:rows]
        return {name: test[name][:rows] for name in card.inputs}
    symbols = Symbols(Vocabulary(card.vocabulary or ()))
    x = test["x"][:rows]
    x_len = test["x_len"][:rows] if "x_len" in test else np.full(len(x), x.shape[1])
    if card.kind == "language_model":  # a prompt: the start of a test window
        x_len = np.minimum(x_len, PROMPT_LENGTH)
    return [symbols.decode(row[:n].tolist()) for row, n in zip(x, x_len, strict=True)]


def signature(card: Card, prediction: Any = None) -> ModelSignature:
    """Inputs and params from the card; tensor outputs shaped like `prediction`, the answer
    to the input example (a generator's outputs do not depend on it)."""
    if card.kind in ("seq2seq", "language_model"):
        return ModelSignature(
            inputs=Schema([ColSpec(DataType.string)]),
            outputs=Schema(
                [
                    ColSpec(DataType.string, "text"),
                    ColSpec(Array(DataType.long), "tokens"),
                    ColSpec(DataType.long, "length"),
                ]
            ),
            params=ParamSchema([_param(name, value) for name, value in card.sampling.items()]),
        )
    single = card.inputs == ("x",)  # one unnamed tensor: a request is x itself
    inputs = [TensorSpec(np.dtype(card.x_dtype), card.x_shape, None if single else "x")]
    if not single:
        inputs.append(TensorSpec(np.dtype("int64"), (-1, -1), "x_parent"))
    any_length = card.x_shape[1] == -1
    if card.kind == "regression":
        outputs = [_batch_spec(prediction, None, prediction.ndim == 3 and any_length)]
    else:
        per_step = prediction["class"].ndim == 2 and any_length
        outputs = [
            _batch_spec(prediction[key], key, per_step) for key in ("class", "probabilities")
        ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _param(name: str, default: Any) -> ParamSpec:
    dtype = {str: DataType.string, float: DataType.double, int: DataType.long}[type(default)]
    return ParamSpec(name, dtype, default)


def _batch_spec(array: np.ndarray, name: str | None, any_length: bool) -> TensorSpec:
    """A tensor of any batch size (and, where `any_length`, any length on axis 1)."""
    shape = [-1, *array.shape[1:]]
    if any_length:
        shape[1] = -1
    return TensorSpec(array.dtype, tuple(shape), name)


MODEL_CODE = '''"""A seqlab champion, logged as code: MLflow runs this file to build the model."""
from mlflow.models import set_model

from pipelines.serving import {wrapper}

set_model({wrapper}())
'''


def log_champion(
    net: nn.Module,
    config: dict[str, Any],
    dataset: DatasetRef,
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Log `net` as the active run's pyfunc model "model"; register it when a name is given.

    Args:
        net: the trained network (its LightningModule's `net`).
        config: the trial's config; its ModelConfig fields rebuild the network.
        dataset: the prepared dataset it was trained on; the first test examples become the
            model's input example, and its card's vocabulary the model's strings.
        registered_model_name: the registered model to add a version to, if any.
    Returns:
        MLflow's ModelInfo (`registered_model_version` set when registered).
    """
    test = read_arrays(dataset.uri, "test")
    card = make_card(net, config, dataset, test)
    wrapper = WRAPPERS[card.kind]()
    wrapper.attach(card, net)
    example = input_example(card, test)
    prediction = None if isinstance(wrapper, _Generator) else wrapper.predict(None, example)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.save(net.state_dict(), folder / "weights.pt")
        (folder / "seqlab.json").write_text(card.to_json())
        code = folder / "model_code.py"
        code.write_text(MODEL_CODE.format(wrapper=type(wrapper).__name__))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={WEIGHTS: str(folder / "weights.pt"), CARD: str(folder / "seqlab.json")},
            code_paths=[str(Path(seqmodels.__file__).parent), str(Path(pipelines.__file__).parent)],
            signature=signature(card, prediction),
            input_example=example,
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
            ],
            metadata={"seqlab.kind": card.kind, "seqlab.task": card.task},
            registered_model_name=registered_model_name,
        )


# --- `seqlab sample` -------------------------------------------------------------------------


class SampleError(Exception):
    """A user's mistake in `seqlab sample`; `source` names what was wrong (the URI, an option)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source


def load(model_uri: str) -> PyFuncModel:
    """A seqlab pyfunc model, or SampleError naming the URI."""
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as err:
        raise SampleError(model_uri, _reason(err)) from None
    try:  # a model of another flavor (mlflow.pytorch, as champions were before) has none
        wrapper = model.unwrap_python_model()
    except MlflowException:
        wrapper = None
    if not isinstance(wrapper, _Wrapper):
        raise SampleError(model_uri, "not a seqlab pyfunc model (pipelines.serving logs those)")
    return model


def sample(model_uri: str, inputs: list[str] | None, options: dict[str, Any]) -> list[str]:
    """Lines of output: what a registered model generates (or predicts) for `inputs`.

    Args:
        model_uri: e.g. `models:/smoke-lstm@champion` or `runs:/RUN_ID/model`.
        inputs: sources or prompts for a generator; for a classifier or regressor, one JSON
            text of x (an array) or {"x": ..., "x_parent": ...}. None: the model's input
            example, the first examples of its test split.
        options: sampling params given (stop, temperature, top_k, max_length, seed, beam).
    Raises:
        SampleError: a bad URI, option or input, naming it.
    """
    model = load(model_uri)
    wrapper: _Wrapper = model.unwrap_python_model()
    card = wrapper.card
    if options and not card.stops:
        option = "--" + next(iter(options)).replace("_", "-")
        raise SampleError(option, f"{model_uri} is a {card.kind} model: it draws no sequences")
    if card.stops:
        try:
            Sampling.read(options, card)
        except BadRequest as err:
            raise SampleError("--" + err.field.replace("_", "-"), err.message) from None
    request = _request(model, card, inputs, model_uri)
    try:
        if isinstance(wrapper, _Generator) and inputs is not None:
            for text in inputs:  # say which input is wrong before the model says "a source"
                wrapper.symbols.encode(text, f"--input {text}")
        answer = model.predict(request, params=options or None)
    except BadRequest as err:
        raise SampleError(err.field, err.message) from None
    except MlflowException as err:
        raise SampleError("--input" if inputs else model_uri, _reason(err)) from None
    return _lines(card, request, answer)


def _request(model: PyFuncModel, card: Card, inputs: list[str] | None, model_uri: str) -> Any:
    """The request `sample` sends: the given inputs, or the model's input example."""
    if inputs is None:
        example = model.input_example
        if example is None:
            needs = "SOURCE strings" if card.stops else "a JSON array of x"
            raise SampleError(model_uri, f"has no input example: give --input {needs}")
        return pd.DataFrame({0: example}) if card.stops else example
    if card.stops:
        return pd.DataFrame({0: inputs})
    if len(inputs) != 1:
        raise SampleError("--input", f"a {card.kind} model takes one JSON text of x")
    try:
        value = json.loads(inputs[0])
    except json.JSONDecodeError as err:
        raise SampleError("--input", f"not JSON: {err.msg}") from None
    if card.inputs != ("x",) and (not isinstance(value, dict) or set(value) != set(card.inputs)):
        raise SampleError("--input", f"a tree model takes {{{', '.join(card.inputs)}}}")
    arrays = value if isinstance(value, dict) else {"x": value}
    try:
        arrays = {
            name: np.asarray(array, card.x_dtype if name == "x" else "int64")
            for name, array in arrays.items()
        }
    except (TypeError, ValueError) as err:
        raise SampleError("--input", f"not an array of numbers: {err}") from None
    return arrays if card.inputs != ("x",) else arrays["x"]


def _lines(card: Card, request: Any, answer: Any) -> list[str]:
    """One line per example: `source -> generated` (JSON strings), a class, or predictions."""
    if card.stops:
        sources = [str(value) for value in request.iloc[:, 0]]
        return [
            f"{json.dumps(source, ensure_ascii=False)} -> {json.dumps(text, ensure_ascii=False)}"
            for source, text in zip(sources, answer["text"], strict=True)
        ]
    if card.kind == "classification":
        rows = zip(answer["class"], answer["probabilities"], strict=True)
        if answer["class"].ndim == 1:
            return [f"class {int(c)} (p={float(p[c]):.3f})" for c, p in rows]
        return [f"classes {json.dumps(c.tolist())}" for c, _ in rows]
    return [json.dumps(np.round(row.astype(float), 6).tolist()) for row in np.asarray(answer)]


def _reason(err: Exception) -> str:
    """An error's message on one line; of a prediction MLflow wrapped, the model's own part."""
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    return " ".join(message.rsplit("Error: ", 1)[-1].split())
