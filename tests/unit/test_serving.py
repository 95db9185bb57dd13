"""The pyfunc models `pipelines.serving` logs: what each kind takes and returns, and how each
stop mode ends a generated sequence.

Untrained tiny networks on tiny prepared datasets, logged into an MLflow SQLite store under a
temporary folder and loaded back as `mlflow models serve` would load them. No Ray, no Prefect.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from torch import nn

from pipelines import serving
from pipelines.data import store
from seqmodels.batch import BOS, EOS
from seqmodels.generate import beam_search, continuation, generate
from seqmodels.models import ModelConfig, build_model
from seqmodels.tasks.common import pad
from tests.conftest import seqlab

DATES = ("dates", {"n_train": 8, "n_val": 4, "n_test": 8})
CHARLM = ("charlm", {"window": 32, "max_chars": 3000})
LISTOPS = ("listops", {"max_length": 20, "max_depth": 3, "n_train": 8, "n_val": 4, "n_test": 8})
SMALL = {"cell": "gru", "hidden_size": 8}
MAX_LENGTH = 12  # the dates networks' longest sequence (targets are 10 symbols and EOS)

# name: (task, network), every network untrained
MODELS: dict[str, tuple[tuple[str, dict[str, Any]], dict[str, Any]]] = {
    **{
        f"dates-{stop}": (
            DATES,
            {
                **SMALL,
                "architecture": "encoder_decoder",
                "arch_options": {"stop": stop, "max_length": MAX_LENGTH},
            },
        )
        for stop in ("eos", "bernoulli", "length")
    },
    "charlm": (
        CHARLM,
        {**SMALL, "architecture": "recurrent", "arch_options": {"embedding_size": 8}},
    ),
    "listops-seq2one": (LISTOPS, {**SMALL, "arch_options": {"embedding_size": 8}}),
    "listops-recursive": (
        LISTOPS,
        {
            "cell": "tanh",
            "hidden_size": 8,
            "architecture": "recursive",
            "arch_options": {"embedding_size": 8},
        },
    ),
}
REGISTERED = "serving-dates-eos"  # the one model `seqlab sample` reads from the registry


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every model of MODELS logged once, in a store of its own; the tracking URI comes back
    after (MLflow keeps it in MLFLOW_TRACKING_URI as well as in memory)."""
    root = tmp_path_factory.mktemp("serving")
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("serving", (root / "artifacts").as_uri())
        models, datasets = {}, {}
        for name, ((task, options), config) in MODELS.items():
            dataset = datasets.get(task) or store.prepare(task, options, 0, root)
            datasets[task] = dataset
            torch.manual_seed(0)
            net = build_model(ModelConfig(**config), dataset.input_size, dataset.output_size)
            if task == "dates":
                _end_some_early(net)
            registered = REGISTERED if name == "dates-eos" else None
            with mlflow.start_run(experiment_id=experiment):
                info = serving.log_champion(net, {**config, "lr": 0.01}, dataset, registered)
            models[name] = mlflow.pyfunc.load_model(info.model_uri)
        yield {"uri": uri, "models": models, "datasets": datasets}
    finally:
        mlflow.set_tracking_uri(previous)  # None unsets the variable


def _end_some_early(net: nn.Module) -> None:
    """Untrained, a decoder would rarely draw EOS, and its stop output would fire at every
    step or none: make both end some sequences early and leave others to run on."""
    with torch.no_grad():
        net.out.bias[EOS] += 1.5
        if net.stop_head is not None:
            net.stop_head.weight *= 5.0  # the state, not the bias, decides when it fires


def _test_split(logged: dict[str, Any], task: str) -> dict[str, np.ndarray]:
    with np.load(Path(logged["datasets"][task].uri) / "test.npz") as npz:
        return {key: npz[key] for key in npz.files}


def _sources(logged: dict[str, Any], model: PyFuncModel) -> list[str]:
    """The test split's sources, as the strings a client would send."""
    test = _test_split(logged, "dates")
    symbols = model.unwrap_python_model().symbols
    return [
        symbols.decode(row[:n].tolist()) for row, n in zip(test["x"], test["x_len"], strict=True)
    ]


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["listops-seq2one", "listops-recursive"])
def test_classifier_returns_a_valid_class_and_its_probabilities(
    logged: dict[str, Any], name: str
) -> None:
    model: PyFuncModel = logged["models"][name]
    test = _test_split(logged, "listops")
    request = test["x"] if name.endswith("seq2one") else {k: test[k] for k in ("x", "x_parent")}
    answer = model.predict(request)
    classes, probabilities = answer["class"], answer["probabilities"]
    assert classes.shape == test["y"].shape and probabilities.shape == (len(classes), 10)
    assert ((classes >= 0) & (classes < 10)).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (classes == probabilities.argmax(axis=1)).all()
    outputs = model.metadata.signature.outputs.inputs
    assert [spec.name for spec in outputs] == ["class", "probabilities"]


def test_classifier_reads_each_length_from_the_padding(logged: dict[str, Any]) -> None:
    model: PyFuncModel = logged["models"]["listops-seq2one"]
    test = _test_split(logged, "listops")
    together = model.predict(test["x"])["probabilities"]  # one batch padded to the longest
    for i, n in enumerate(test["x_len"]):
        alone = model.predict(test["x"][i : i + 1, :n])["probabilities"]  # no padding at all
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-5, atol=1e-6)


# --- seq2seq: each stop mode ----------------------------------------------------------------


def _generate(model: PyFuncModel, sources: list[str], **params: Any) -> pd.DataFrame:
    answer = model.predict(sources, params=params)
    assert list(answer.columns) == ["text", "tokens", "length"]
    symbols = model.unwrap_python_model().symbols
    for text, tokens, length in answer.itertuples(index=False):
        assert len(tokens) == length
        assert text == symbols.decode(list(tokens))
    return answer


def _stop_probabilities(net: nn.Module, sources: list[list[int]], drawn: list[list[int]]) -> list:
    """sigmoid(stop logit) after each drawn token, stepping the decoder as `generate` does:
    the same batch, the same calls, so the same numbers."""
    x, x_len = pad(sources, eos=False)
    width = max(len(row) for row in drawn)
    tokens = torch.tensor([row + [0] * (width - len(row)) for row in drawn])  # (B, U)
    memory = net.encode(torch.from_numpy(x), torch.from_numpy(x_len))
    state = net.start(memory)
    token = torch.full((len(drawn),), BOS)
    probabilities = []
    with torch.no_grad():
        for t in range(width):
            _, stop_logit, state = net.step(token, memory, state)
            probabilities.append(torch.sigmoid(stop_logit))
            token = tokens[:, t]
    p = torch.stack(probabilities, dim=1)  # (B, U)
    return [p[b, : len(row)].tolist() for b, row in enumerate(drawn)]


@pytest.mark.parametrize("trained", ["eos", "bernoulli", "length"])
def test_eos_ends_a_sequence_at_its_first_eos_or_at_max_length(
    logged: dict[str, Any], trained: str
) -> None:
    model: PyFuncModel = logged["models"][f"dates-{trained}"]
    answer = _generate(
        model, _sources(logged, model), stop="eos", temperature=1.0, max_length=6, seed=1
    )
    for tokens in answer["tokens"]:
        assert EOS not in tokens[:-1]
        assert tokens[-1] == EOS or len(tokens) == 6
    ended = [tokens[-1] == EOS for tokens in answer["tokens"]]
    assert any(ended) and not all(ended)  # both ways of ending occur: the test tests both


def test_bernoulli_ends_a_sequence_when_its_stop_output_fires(logged: dict[str, Any]) -> None:
    model: PyFuncModel = logged["models"]["dates-bernoulli"]
    sources = _sources(logged, model)
    answer = _generate(model, sources)  # the defaults: greedy, stop "bernoulli"
    wrapper = model.unwrap_python_model()
    ids = [wrapper.symbols.encode(source, "source") for source in sources]
    drawn = [list(tokens) for tokens in answer["tokens"]]
    for p in _stop_probabilities(wrapper.net, ids, drawn):
        assert all(q <= 0.5 for q in p[:-1])  # greedy: it fires when p > 1/2, and not before
        assert p[-1] > 0.5 or len(p) == MAX_LENGTH
    assert min(len(row) for row in drawn) < MAX_LENGTH  # it did fire


@pytest.mark.parametrize("max_length", [3, MAX_LENGTH])
def test_length_draws_exactly_the_length_its_output_predicts(
    logged: dict[str, Any], max_length: int
) -> None:
    model: PyFuncModel = logged["models"]["dates-length"]
    sources = _sources(logged, model)
    answer = _generate(model, sources, max_length=max_length)  # greedy: the likeliest tau
    wrapper = model.unwrap_python_model()
    x, x_len = pad([wrapper.symbols.encode(s, "source") for s in sources], eos=False)
    with torch.no_grad():
        logits = wrapper.net.length_logits(
            wrapper.net.encode(torch.from_numpy(x), torch.from_numpy(x_len))
        )
    tau = logits[:, 1 : max_length + 1].argmax(dim=-1) + 1  # lengths 1..max_length
    assert answer["length"].tolist() == tau.tolist()


def test_each_network_offers_its_own_stop_and_eos(logged: dict[str, Any]) -> None:
    for stop in ("eos", "bernoulli", "length"):
        params = {p.name: p for p in logged["models"][f"dates-{stop}"].metadata.signature.params}
        assert params["stop"].default == stop
        assert params["temperature"].default == 0.0
        assert params["max_length"].default == MAX_LENGTH


@pytest.mark.parametrize("trained", ["eos", "length"])
def test_beam_returns_the_beam_searchs_most_likely_target(
    logged: dict[str, Any], trained: str
) -> None:
    model: PyFuncModel = logged["models"][f"dates-{trained}"]
    sources = _sources(logged, model)
    answer = _generate(model, sources, beam=4)
    wrapper = model.unwrap_python_model()
    x, x_len = pad([wrapper.symbols.encode(s, "source") for s in sources], eos=False)
    expected = beam_search(wrapper.net, torch.from_numpy(x), torch.from_numpy(x_len), beam_size=4)
    assert answer["length"].tolist() == expected.lengths.tolist()
    for tokens, row, n in zip(answer["tokens"], expected.tokens, expected.lengths, strict=True):
        assert list(tokens) == row[:n].tolist()
    greedy = _generate(model, sources)  # the default: no beam, the likeliest token each step
    assert _generate(model, sources, beam=1)["tokens"].tolist() == greedy["tokens"].tolist()


def _source_batch(logged: dict[str, Any], model: PyFuncModel) -> tuple[torch.Tensor, ...]:
    """The test split's sources as one batch for `model`'s network: x (N, S), x_len (N,)."""
    symbols = model.unwrap_python_model().symbols
    x, x_len = pad([symbols.encode(s, "source") for s in _sources(logged, model)], eos=False)
    return torch.from_numpy(x), torch.from_numpy(x_len)


def _built_with(net: nn.Module, stop: str) -> nn.Module:
    """`net`'s weights, as if built to end sequences by `stop`: what `stop=` stands for."""
    other = copy.copy(net)
    other.stop = stop
    return other


@pytest.mark.parametrize("trained", ["bernoulli", "length"])
def test_generate_ends_by_the_stop_it_is_given(logged: dict[str, Any], trained: str) -> None:
    """`stop=` ends sequences as a network built with that stop would, and leaves the
    network's own way as it was."""
    model: PyFuncModel = logged["models"][f"dates-{trained}"]
    net, (x, x_len) = model.unwrap_python_model().net, _source_batch(logged, model)

    def drawn(net: nn.Module, **stop: str) -> list[list[int]]:
        generator = torch.Generator().manual_seed(1)
        out = generate(net, x, x_len, max_length=6, greedy=False, generator=generator, **stop)
        return [row[:n].tolist() for row, n in zip(out.tokens, out.lengths, strict=True)]

    assert drawn(net, stop="eos") == drawn(_built_with(net, "eos"))
    assert net.stop == trained
    assert drawn(net, stop=trained) == drawn(net)  # its own way is the default


def test_beam_search_ends_by_the_stop_it_is_given(logged: dict[str, Any]) -> None:
    model: PyFuncModel = logged["models"]["dates-length"]
    net, (x, x_len) = model.unwrap_python_model().net, _source_batch(logged, model)
    given = beam_search(net, x, x_len, beam_size=3, stop="eos")
    built = beam_search(_built_with(net, "eos"), x, x_len, beam_size=3)
    assert net.stop == "length"
    assert given.lengths.tolist() == built.lengths.tolist()
    assert given.tokens.tolist() == built.tokens.tolist()


@pytest.mark.parametrize(
    "trained,stop,message",
    [
        ("eos", "never", "stop 'never' is not one of: eos, bernoulli, length"),
        ("eos", "bernoulli", "stop 'bernoulli' needs the stop output"),
        ("eos", "length", "stop 'length' needs the length output"),
        ("bernoulli", "length", "stop 'length' needs the length output"),
    ],
)
def test_a_stop_the_network_has_no_output_for_is_a_clear_error(
    logged: dict[str, Any], trained: str, stop: str, message: str
) -> None:
    model: PyFuncModel = logged["models"][f"dates-{trained}"]
    net, (x, x_len) = model.unwrap_python_model().net, _source_batch(logged, model)
    with pytest.raises(ValueError, match=message):
        generate(net, x, x_len, stop=stop)
    with pytest.raises(ValueError, match=message):
        beam_search(net, x, x_len, stop=stop)


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("dates-bernoulli", {"beam": 3}, "beam: beam search ends a target by eos or length"),
        ("dates-eos", {"beam": 3, "temperature": 1.0}, "beam: beam search finds the most likely"),
        ("dates-eos", {"beam": 3, "top_k": 2}, "beam: beam search finds the most likely"),
        ("dates-eos", {"beam": 0}, "beam: must be >= 1"),
    ],
)
def test_a_beam_the_request_cannot_have_is_a_clear_error(
    logged: dict[str, Any], name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(MlflowException, match=message):
        logged["models"][name].predict(["31.10.1978"], params=params)


@pytest.mark.parametrize(
    "name,stop", [("dates-eos", "length"), ("dates-eos", "bernoulli"), ("charlm", "length")]
)
def test_a_stop_mode_the_model_was_not_trained_for_is_a_clear_error(
    logged: dict[str, Any], name: str, stop: str
) -> None:
    with pytest.raises(MlflowException, match=f"stop: '{stop}' is not a way .* choose from: eos"):
        logged["models"][name].predict(["31.10.1978"], params={"stop": stop})


def test_a_symbol_outside_the_vocabulary_is_a_clear_error(logged: dict[str, Any]) -> None:
    with pytest.raises(MlflowException, match="source 1: 'é': not in the model's vocabulary"):
        logged["models"]["dates-eos"].predict(["31.10.1978", "31.10.1978 é"])


# --- language model -------------------------------------------------------------------------


def test_language_model_continues_each_prompt_until_eos_or_max_length(
    logged: dict[str, Any],
) -> None:
    model: PyFuncModel = logged["models"]["charlm"]
    prompts = ["def ", "import os\n", "x"]
    answer = _generate(model, prompts, max_length=20, seed=3)
    assert len(answer) == len(prompts)
    for tokens in answer["tokens"]:
        assert EOS not in tokens[:-1]
        assert tokens[-1] == EOS or len(tokens) == 20
    again = _generate(model, prompts, max_length=20, seed=3)
    assert again["tokens"].tolist() == answer["tokens"].tolist()  # the seed fixes the draws


class _Unresumable(nn.Module):
    """A language model seen through `forward` alone, as a deep or bidirectional one is."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_continuation_by_rereading_matches_the_resumed_one(logged: dict[str, Any]) -> None:
    wrapper = logged["models"]["charlm"].unwrap_python_model()
    prefix = torch.tensor([wrapper.symbols.encode("class Foo", "prompt")])
    resumed = continuation(wrapper.net, prefix, 15, greedy=True)
    reread = continuation(_Unresumable(wrapper.net), prefix, 15, greedy=True)
    assert reread == resumed and len(resumed) > 0


# --- the scoring server's JSON ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_scoring_server_answers_as_the_model_does(logged: dict[str, Any]) -> None:
    """The JSON contract of `mlflow models serve` (its app, without the process): inputs and
    params in, records or named tensors out, and a 400 that says what was wrong."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    model: PyFuncModel = logged["models"]["dates-length"]
    client = TestClient(scoring_server.init(model))
    sources, params = _sources(logged, model)[:3], {"stop": "eos", "temperature": 1.0, "seed": 5}
    answer = client.post("/invocations", json={"inputs": sources, "params": params})
    assert answer.status_code == 200, answer.text
    expected = model.predict(sources, params=params).to_dict(orient="records")
    assert answer.json()["predictions"] == expected
    refused = client.post("/invocations", json={"inputs": sources, "params": {"stop": "bernoulli"}})
    assert refused.status_code == 400
    assert "stop: 'bernoulli' is not a way" in refused.json()["message"]

    trees: PyFuncModel = logged["models"]["listops-recursive"]
    test = _test_split(logged, "listops")
    request = {"inputs": {"x": test["x"].tolist(), "x_parent": test["x_parent"].tolist()}}
    answer = TestClient(scoring_server.init(trees)).post("/invocations", json=request)
    assert answer.status_code == 200, answer.text
    classes = trees.predict({k: test[k] for k in ("x", "x_parent")})["class"]
    assert answer.json()["predictions"]["class"] == classes.tolist()


# --- seqlab sample --------------------------------------------------------------------------


def test_sample_prints_a_line_per_example_of_the_test_split(logged: dict[str, Any]) -> None:
    lines = serving.sample(f"models:/{REGISTERED}/1", None, {"temperature": 1.0})
    assert len(lines) == 2  # the model's input example: two test sources
    assert all(line.startswith('"') and '" -> "' in line for line in lines)


def test_sample_on_a_bad_uri_is_a_one_line_error(logged: dict[str, Any]) -> None:
    result = seqlab(
        "sample", "models:/no-such-model@champion", env={"MLFLOW_TRACKING_URI": logged["uri"]}
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "models:/no-such-model@champion: " in result.stderr
    assert "Traceback" not in result.stderr


def test_sample_with_a_stop_the_model_lacks_is_a_one_line_error(logged: dict[str, Any]) -> None:
    result = seqlab(
        "sample",
        f"models:/{REGISTERED}/1",
        "--stop",
        "length",
        env={"MLFLOW_TRACKING_URI": logged["uri"]},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--stop: 'length'" in result.stderr
    assert "choose from: eos" in result.stderr


def test_sample_with_a_beam_prints_the_beam_searchs_targets(logged: dict[str, Any]) -> None:
    env = {"MLFLOW_TRACKING_URI": logged["uri"]}
    result = seqlab("sample", f"models:/{REGISTERED}/1", "--beam", "3", env=env)
    assert result.returncode == 0, result.stderr
    expected = serving.sample(f"models:/{REGISTERED}/1", None, {"beam": 3})
    assert result.stdout.splitlines() == expected and len(expected) == 2
    refused = seqlab("sample", f"models:/{REGISTERED}/1", "--beam", "0", env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "seqlab: error: --beam: must be >= 1 (1: no beam search)"


def test_a_language_model_has_no_beam(logged: dict[str, Any]) -> None:
    """Its signature offers no `beam` (MLflow drops a param a signature lacks, with a warning);
    `seqlab sample` says so."""
    charlm: PyFuncModel = logged["models"]["charlm"]
    assert "beam" not in {p.name for p in charlm.metadata.signature.params}
    with pytest.raises(serving.SampleError, match="a language_model model samples; it has no"):
        serving.sample(charlm.metadata.get_model_info().model_uri, ["ab"], {"beam": 3})
