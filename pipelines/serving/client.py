"""`seqlab sample`: what a logged or registered champion answers, as lines for a terminal.

The model is loaded as `mlflow models serve` loads it (`mlflow.pyfunc.load_model`), and every
mistake in the URI, an option or an input comes back as a SampleError naming it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from pipelines.serving.runtime import BadRequest, Card, GeneratorWrapper, Sampling, Wrapper

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel


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
    if not isinstance(wrapper, Wrapper):
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
    wrapper: Wrapper = model.unwrap_python_model()
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
        if isinstance(wrapper, GeneratorWrapper) and inputs is not None:
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
