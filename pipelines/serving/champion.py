"""Logging a trained network as a study's champion: an MLflow pyfunc model, registered.

A model is logged as code (MLflow 3's models from code, so no pickled object): a three-line
script (`MODEL_CODE`) names the wrapper class of `pipelines.serving.runtime`, the artifacts are
the weights and `seqlab.json` (the network's `Card`), and `code_paths` carry `seqmodels` and
`pipelines`. The signature says what the model's kind takes and returns, and the first test
examples become its input example.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec
from mlflow.types.schema import Array
from torch import nn

import pipelines
import seqmodels
from pipelines.serving.runtime import (
    CARD,
    WEIGHTS,
    WRAPPERS,
    Card,
    GeneratorWrapper,
    Symbols,
)
from seqmodels.files import read_arrays, read_card
from seqmodels.models import ModelConfig, takes_argument
from seqmodels.tasks.common import Vocabulary

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from pipelines.data.store import DatasetRef

LM_MAX_LENGTH = 200  # new tokens a language model draws by default
PROMPT_LENGTH = 32  # symbols of a test window that make a language model's example prompt


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
    prediction = None if isinstance(wrapper, GeneratorWrapper) else wrapper.predict(None, example)
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
