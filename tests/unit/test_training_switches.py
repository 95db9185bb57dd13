"""The chapter's training switches of a spec's `fixed` section: clipping by value (10.11.1),
truncated BPTT (10.2.2), the information-flow regularizer (10.11.2) and the diagnostics of
long-term dependencies (10.7), from the spec through the trainable to MLflow and the report.

No Ray: the trainable's own functions run in this process.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from pipelines import report
from pipelines.data.store import DatasetRef, prepare
from pipelines.report import plots
from pipelines.spec import SpecError, parse_spec
from pipelines.trial import trainable
from seqmodels.data import NpzDataModule
from seqmodels.diagnostics import RecurrenceDiagnostics
from seqmodels.errors import ConfigError
from seqmodels.lit import LanguageModel, SequenceClassification, SequenceRegression
from seqmodels.models import ModelConfig, build_model, recurrence_for
from seqmodels.training import (
    information_flow_penalty,
    recording_states,
    run_stepwise,
    truncated_bptt,
)
from tests.conftest import seqlab

COPY = {"delay": 6, "alphabet": 4, "n_train": 48, "n_val": 16, "n_test": 16}  # T = 26
ADDING = {"length": 12, "n_train": 48, "n_val": 16, "n_test": 16}
LM = {"architecture": "recurrent", "cell": "lstm", "arch_options": {"embedding_size": 4}}


def _spec(
    task: str, options: dict[str, Any], variants: dict[str, Any], **fixed: Any
) -> dict[str, Any]:
    return {
        "name": "switches",
        "task": {"name": task, "options": options},
        "variants": variants,
        "fixed": {"max_epochs": 1, "batch_size": 16, "lr": 0.01, **fixed},
    }


def _searching(raw: dict[str, Any], **space: Any) -> dict[str, Any]:
    return {**raw, "search": {"space": space, "trials_per_variant": 2}}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetRef]:
    root = tmp_path_factory.mktemp("store")
    return {"copy": prepare("copy", COPY, 0, root), "adding": prepare("adding", ADDING, 0, root)}


# -- the spec ----------------------------------------------------------------------------------

GOOD = {
    "tbptt on copy": _spec("copy", COPY, {"a": LM}, tbptt=8),
    "tbptt on charlm": _spec("charlm", {"window": 32}, {"a": {**LM, "cell": "gru"}}, tbptt=4),
    "tbptt searched": _searching(_spec("copy", COPY, {"a": LM}), tbptt={"choice": [None, 4]}),
    "tbptt randint": _searching(_spec("copy", COPY, {"a": LM}), tbptt={"randint": [2, 8]}),
    "clip by value": _spec("adding", ADDING, {"a": {}}, grad_clip_algorithm="value"),
    "clip searched": _searching(
        _spec("adding", ADDING, {"a": {}}), grad_clip_algorithm={"choice": ["norm", "value"]}
    ),
    "info_flow": _spec(
        "adding",
        ADDING,
        {"a": {}, "b": {"architecture": "deep", "arch_options": {"output": "final"}}},
        info_flow=0.5,
    ),
    "info_flow searched": _searching(
        _spec("copy", COPY, {"a": LM}), info_flow={"loguniform": [0.01, 1.0]}
    ),
    "diagnostics": _spec("seq_digits", {}, {"a": {"cell": "gru"}}, diagnostics=True),
    "tbptt searched for one variant": {
        **_spec("copy", COPY, {"a": LM, "b": {**LM, "bidirectional": True}}),
        "search": {"per_variant": {"a": {"tbptt": {"choice": [4, 8]}}}},
    },
}


@pytest.mark.parametrize("raw", GOOD.values(), ids=GOOD.keys())
def test_switches_are_accepted_where_they_fit(raw: dict[str, Any]) -> None:
    spec = parse_spec(raw)
    config = spec.trial("a")
    assert {"grad_clip_algorithm", "tbptt", "info_flow", "diagnostics"} <= config.params().keys()


def test_switches_default_to_the_plain_training_of_before() -> None:
    fixed = parse_spec(_spec("adding", ADDING, {"a": {}})).fixed
    assert (fixed.grad_clip_algorithm, fixed.tbptt, fixed.info_flow, fixed.diagnostics) == (
        "norm",
        None,
        0.0,
        False,
    )
    assert fixed.deterministic  # a rerun repeats a trial's numbers unless a study says otherwise


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_trainer_restricts_torch_to_deterministic_algorithms_as_the_config_says(
    deterministic: bool,
) -> None:
    config = parse_spec(_spec("adding", ADDING, {"a": {}}, deterministic=deterministic))
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(not deterministic)
        trainable.make_trainer(config.trial("a").train)
        assert torch.are_deterministic_algorithms_enabled() is deterministic
    finally:
        torch.use_deterministic_algorithms(before)


SEQ2SEQ = {"min_length": 3, "max_length": 6, "n_train": 64, "n_val": 16, "n_test": 16}
BAD = {
    "tbptt < 1": (
        _spec("copy", COPY, {"a": LM}, tbptt=0),
        "fixed.tbptt",
        "greater than or equal to 1",
    ),
    "tbptt on seq2one": (_spec("adding", ADDING, {"a": {}}, tbptt=4), "fixed.tbptt", "seq2one"),
    "per-step architecture on one target": (
        _spec("adding", ADDING, {"a": {"architecture": "recurrent"}}),
        "variants.a.architecture",
        "one target per sequence",
    ),
    "tbptt on seq2seq": (
        _spec("reverse", SEQ2SEQ, {"a": {"architecture": "attention"}}, tbptt=4),
        "fixed.tbptt",
        "no target at every step",
    ),
    "tbptt on classification": (
        _spec("seq_digits", {}, {"a": {}}, tbptt=4),
        "fixed.tbptt",
        "classification",
    ),
    "tbptt bidirectional": (
        _spec("copy", COPY, {"a": {**LM, "bidirectional": True}}, tbptt=4),
        "fixed.tbptt",
        "bidirectional",
    ),
    "tbptt searched below 1": (
        _searching(_spec("copy", COPY, {"a": LM}), tbptt={"choice": [None, 0]}),
        "search.space.tbptt",
        ">= 1",
    ),
    "tbptt searched as a float": (
        _searching(_spec("copy", COPY, {"a": LM}), tbptt={"uniform": [2, 8]}),
        "search.space.tbptt",
        "randint or choice",
    ),
    "tbptt searched on seq2one": (
        _searching(_spec("adding", ADDING, {"a": {}}), tbptt={"randint": [2, 8]}),
        "search.space.tbptt",
        "seq2one",
    ),
    "unknown clip algorithm": (
        _spec("adding", ADDING, {"a": {}}, grad_clip_algorithm="l2"),
        "fixed.grad_clip_algorithm",
        "'norm' or 'value'",
    ),
    "negative info_flow": (
        _spec("adding", ADDING, {"a": {}}, info_flow=-0.1),
        "fixed.info_flow",
        "greater than or equal to 0",
    ),
    "info_flow on seq2seq": (
        _spec("reverse", SEQ2SEQ, {"a": {"architecture": "attention"}}, info_flow=0.1),
        "fixed.info_flow",
        "attention",
    ),
    "info_flow bidirectional": (
        _spec("adding", ADDING, {"a": {"bidirectional": True}}, info_flow=0.1),
        "fixed.info_flow",
        "bidirectional",
    ),
    "tbptt searched for a bidirectional variant": (
        {
            **_spec("copy", COPY, {"a": LM, "b": {**LM, "bidirectional": True}}),
            "search": {"per_variant": {"b": {"tbptt": {"choice": [4, 8]}}}},
        },
        "search.per_variant.b.tbptt",
        "bidirectional",
    ),
    "info_flow on a fixed reservoir": (
        _spec("adding", ADDING, {"a": {}, "esn": {"cell": "esn"}}, info_flow=0.1),
        "fixed.info_flow",
        "not trained",
    ),
    "diagnostics searched": (
        _searching(_spec("adding", ADDING, {"a": {}}), diagnostics={"choice": [True, False]}),
        "search.space.diagnostics",
        "set it in fixed",
    ),
    "deterministic searched": (
        _searching(_spec("adding", ADDING, {"a": {}}), deterministic={"choice": [True, False]}),
        "search.space.deterministic",
        "set it in fixed",
    ),
}


@pytest.mark.parametrize("raw,field,fragment", BAD.values(), ids=BAD.keys())
def test_bad_switch_is_one_line_naming_the_field(
    raw: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw, "x.yaml")
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert "\n" not in str(caught.value)


def test_cli_dry_run_exits_2_on_a_bad_switch(tmp_path: Path, home: Path) -> None:
    raw, field, fragment = BAD["tbptt on seq2seq"]  # the others fail the same `parse_spec`
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = seqlab("run", str(path), "--dry-run", timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"{path}: {field}: " in lines[0] and fragment in lines[0]


# -- truncated BPTT ------------------------------------------------------------------------------


def _lm_batch(B: int = 3, T: int = 9) -> dict[str, torch.Tensor]:
    return {
        "x": torch.randint(3, 10, (B, T)),
        "x_len": torch.full((B,), T),
        "y": torch.randint(3, 10, (B, T)),
        "y_len": torch.tensor([T, T - 2, T - 4]),  # padding the loss must skip
    }


def _grads(module: L.LightningModule) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("cell", ["lstm", "tanh", "leaky"])  # fast path and cell by cell
def test_tbptt_at_least_T_is_full_bptt_exactly(cell: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig("recurrent", cell, 8, arch_options={"embedding_size": 4})
    net = build_model(config, 10, 10)
    batch = _lm_batch()
    full = LanguageModel(net)
    loss, _ = full.training_loss(batch)
    loss.backward()
    for k in (9, 20):
        truncated = LanguageModel(copy.deepcopy(net), tbptt=k)
        again, _, tokens = truncated.truncated_backward(batch, torch.Tensor.backward)
        assert torch.equal(again, loss.detach()) and tokens == 9 + 7 + 5
        assert all(torch.equal(a, b) for a, b in zip(_grads(full), _grads(truncated), strict=True))


def test_tbptt_below_T_keeps_the_loss_and_truncates_the_gradient() -> None:
    torch.manual_seed(0)
    net = build_model(
        ModelConfig("recurrent", "tanh", 8, arch_options={"embedding_size": 4}), 10, 10
    )
    batch = _lm_batch()
    full = LanguageModel(net)
    loss, _ = full.training_loss(batch)
    loss.backward()
    truncated = LanguageModel(copy.deepcopy(net), tbptt=4)
    again, _, _ = truncated.truncated_backward(batch, torch.Tensor.backward)
    # the state is carried forward: the same loss; the gradient stops at the boundaries
    torch.testing.assert_close(again, loss.detach())
    W_full, W_truncated = (m.net.recurrence.rnn.weight_hh_l0.grad for m in (full, truncated))
    assert not torch.allclose(W_full, W_truncated)


def test_tbptt_gradient_reaches_back_k_steps_at_most() -> None:
    torch.manual_seed(0)
    T, k = 12, 4
    net = build_model(ModelConfig("recurrent", "tanh", 8), 3, 1)  # float inputs: dL/dx exists

    def last_step_loss(out: torch.Tensor, window: slice) -> torch.Tensor:
        return out[:, -1].sum() if window.stop >= T else out.sum() * 0  # L reads o(T) alone

    for truncation, reached in ((T, 0), (k, 8)):  # full BPTT reaches x(1); k=4 only 9..12
        x = torch.randn(2, T, 3, requires_grad=True)
        truncated_bptt(net.run, x, last_step_loss, truncation)
        per_step = x.grad.abs().sum(dim=(0, 2))  # (T,): |dL/dx(t)|
        assert bool((per_step[:reached] == 0).all()), per_step
        assert bool((per_step[reached:] > 0).all()), per_step


def test_tbptt_regression_needs_per_step_targets() -> None:
    net = build_model(ModelConfig("recurrent", "gru", 6), 2, 1)
    module = SequenceRegression(net, tbptt=3)
    x = torch.randn(4, 7, 2)
    per_step = {"x": x, "x_len": torch.full((4,), 7), "y": torch.randn(4, 7, 1)}
    loss, _, _ = module.truncated_backward(per_step, torch.Tensor.backward)
    torch.testing.assert_close(loss, module.model_step(per_step)[0].detach())
    with pytest.raises(ConfigError, match="every step") as caught:
        module.truncated_backward({**per_step, "y": torch.randn(4, 1)}, torch.Tensor.backward)
    assert caught.value.field == "tbptt"


def test_modules_refuse_switches_they_cannot_honour() -> None:
    seq2one = build_model(ModelConfig("seq2one", "tanh", 6), 2, 1)
    with pytest.raises(ConfigError) as caught:
        SequenceRegression(seq2one, tbptt=4)
    assert caught.value.field == "tbptt"
    with pytest.raises(ConfigError) as caught:
        SequenceClassification(build_model(ModelConfig("recurrent", "tanh", 6), 2, 3), tbptt=4)
    assert caught.value.field == "tbptt"
    bidirectional = build_model(ModelConfig("seq2one", "tanh", 6, bidirectional=True), 2, 1)
    with pytest.raises(ConfigError) as caught:
        SequenceRegression(bidirectional, info_flow=0.1)
    assert caught.value.field == "info_flow"


def test_build_module_refuses_tbptt_on_per_sequence_targets(datasets: dict) -> None:
    # The spec refuses it; a recorded config (`seqlab rerun`) is not validated again.
    config = parse_spec(_spec("adding", ADDING, {"a": {}})).trial("a")
    recorded = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, architecture="recurrent"),
        train=dataclasses.replace(config.train, tbptt=4),
    )
    with pytest.raises(ConfigError, match="one target per sequence") as caught:
        trainable.build_module(recorded, datasets["adding"])
    assert caught.value.field == "tbptt"


class OptimizerSees(L.Callback):
    """Records, at every optimizer step, the largest |gradient element| the optimizer read.

    A post-step hook, so that it sees the gradients after clipping: Adam reads `.grad`
    without changing it.
    """

    def __init__(self) -> None:
        self.largest: list[float] = []

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            optimizer.register_step_post_hook(self._record)

    def _record(self, optimizer: torch.optim.Optimizer, *args: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grads = [p.grad.abs().max() for p in params if p.grad is not None]
        self.largest.append(float(torch.stack(grads).max()))


def _fit(config: dict[str, Any], dataset: DatasetRef, *callbacks: L.Callback) -> L.Trainer:
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = trainable.build_module(config, dataset)
    data = NpzDataModule(dataset.uri, batch_size=config.train.batch_size, seed=config.seed)
    trainer = trainable.make_trainer(config.train, list(callbacks))
    trainer.fit(module, datamodule=data)
    return trainer


def test_one_epoch_fit_with_tbptt_steps_once_per_batch(datasets: dict) -> None:
    config = parse_spec(_spec("copy", COPY, {"a": LM}, tbptt=5)).trial("a")
    sees = OptimizerSees()
    trainer = _fit(config, datasets["copy"], sees)
    assert not trainer.lightning_module.automatic_optimization
    assert trainer.global_step == len(sees.largest) == 3  # 48 sequences, batches of 16
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert math.isfinite(float(trainer.callback_metrics["val/loss"]))


def test_a_checkpoint_counted_under_automatic_optimization_resumes_at_its_step(
    datasets: dict, tmp_path: Path
) -> None:
    """A trial saved before the modules stepped their optimizer themselves goes on counting."""
    config = parse_spec(_spec("adding", ADDING, {"a": {}})).trial("a")
    path = tmp_path / "trial.ckpt"
    _fit(config, datasets["adding"]).save_checkpoint(path)  # 1 epoch: 3 steps
    checkpoint = torch.load(path, weights_only=False)
    loops = checkpoint["loops"]["fit_loop"]
    manual = loops["epoch_loop.manual_optimization.optim_step_progress"]
    assert manual["total"]["completed"] == 3
    # where Lightning kept the count when the modules optimized automatically
    automatic = loops["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]
    automatic["step"] = copy.deepcopy(manual)
    for counter in manual.values():
        counter.update(dict.fromkeys(counter, 0))
    torch.save(checkpoint, path)

    module = trainable.build_module(config, datasets["adding"])
    trainer = trainable.make_trainer(dataclasses.replace(config.train, max_epochs=2))
    data = NpzDataModule(datasets["adding"].uri, batch_size=16, seed=config.seed)
    trainer.fit(module, datamodule=data, ckpt_path=path)
    assert trainer.global_step == 6  # 3 + 3, not the second epoch's 3 alone


# -- clipping by value --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task,variant,tbptt",
    [("adding", {"cell": "tanh"}, None), ("copy", LM, 5)],
    ids=["full-bptt", "tbptt"],
)
def test_clip_by_value_bounds_every_element_the_optimizer_sees(
    datasets: dict, task: str, variant: dict[str, Any], tbptt: int | None
) -> None:
    v = 1e-4  # far below the raw gradients, so clipping bites
    options = COPY if task == "copy" else ADDING
    raw = _spec(task, options, {"a": variant}, grad_clip=v, grad_clip_algorithm="value")
    config = parse_spec({**raw, "fixed": {**raw["fixed"], "tbptt": tbptt}}).trial("a")
    sees = OptimizerSees()
    _fit(config, datasets[task], sees)
    assert sees.largest and max(sees.largest) <= v * (1 + 1e-6)
    assert max(sees.largest) == pytest.approx(v)  # some element was clipped to exactly v


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_a_trainer_step_is_a_hand_written_clipped_adam_step(datasets: dict, algorithm: str) -> None:
    """The module steps its optimizer itself: forward, backward, clip, Adam, as a bare loop."""
    clip = 1e-2 if algorithm == "norm" else 1e-4  # far below the raw gradients: clipping bites
    raw = _spec("adding", ADDING, {"a": {}}, grad_clip=clip, grad_clip_algorithm=algorithm)
    config = parse_spec(raw).trial("a")
    trainer = _fit(config, datasets["adding"])

    torch.manual_seed(config.seed)  # what `L.seed_everything` does for the weights
    net = trainable.build_net(config, datasets["adding"])
    optimizer = torch.optim.Adam(net.parameters(), lr=config.train.lr)
    data = NpzDataModule(datasets["adding"].uri, batch_size=16, seed=config.seed)
    data.setup("fit")
    for batch in data.train_dataloader():
        loss = torch.nn.functional.mse_loss(net(batch["x"], batch["x_len"]), batch["y"])
        optimizer.zero_grad()
        loss.backward()
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        else:
            torch.nn.utils.clip_grad_value_(net.parameters(), clip)
        optimizer.step()

    trained = trainer.lightning_module.net.state_dict()
    assert trainer.global_step == 3  # 48 sequences, batches of 16
    for name, value in net.state_dict().items():
        torch.testing.assert_close(trained[name], value, msg=name)


# -- the information-flow regularizer ----------------------------------------------------------


@pytest.mark.parametrize("cell,layers", [("tanh", 1), ("lstm", 2), ("leaky", 1)])
def test_stepwise_run_matches_run_and_links_the_steps(cell: str, layers: int) -> None:
    torch.manual_seed(0)
    recurrence = recurrence_for(ModelConfig("seq2one", cell, 5, num_layers=layers), 3)
    x = torch.randn(2, 6, 3)
    h, _ = recurrence.run(x)
    stepped, _, hs = run_stepwise(recurrence, x)
    torch.testing.assert_close(stepped, h)
    (jacobian_path,) = torch.autograd.grad(hs[-1].sum(), hs[0])  # h(6) depends on h(1)
    assert float(jacobian_path.abs().sum()) > 0
    with recording_states(recurrence) as calls:
        recurrence(x)
    assert len(calls) == 1 and len(calls[0]) == 6
    assert "run" not in vars(recurrence)  # the method is back


def test_information_flow_trains_and_reports_omega(datasets: dict) -> None:
    config = parse_spec(_spec("adding", ADDING, {"a": {}}, info_flow=0.5)).trial("a")
    trainer = _fit(config, datasets["adding"])
    omega = float(trainer.callback_metrics["train/info_flow"])
    assert math.isfinite(omega) and omega >= 0
    module = trainer.lightning_module  # Omega has a gradient: the weights it acts on move it
    data = NpzDataModule(datasets["adding"].uri, 16, 0)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    with recording_states(module.net.recurrence) as calls:
        loss, _, _ = module.model_step(batch)
    penalty = information_flow_penalty(calls[0], loss)
    (grad,) = torch.autograd.grad(penalty, module.net.recurrence.rnn.weight_hh_l0)
    assert float(grad.abs().sum()) > 0


# -- diagnostics ---------------------------------------------------------------------------------


def test_diagnostics_measure_the_gradient_that_flows_back_in_time() -> None:
    torch.manual_seed(0)
    net = build_model(ModelConfig("seq2one", "tanh", 6), 3, 1)
    module = SequenceRegression(net)
    batch = {"x": torch.randn(4, 10, 3), "x_len": torch.full((4,), 10), "y": torch.randn(4, 1)}
    metrics = RecurrenceDiagnostics(lags=(0, 4, 9)).gradient_metrics(module, net.recurrence, batch)
    # the loss reads h(tau) alone: any gradient at an earlier step came back through time
    assert metrics["diag/grad_h_lag_4"] > 0 and metrics["diag/grad_h_lag_9"] > 0


def test_trial_reports_diagnostics_every_epoch_without_changing_training(
    datasets: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray.tune

    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(trainable, "placement", lambda: {"ray/node_id": "here"})
    monkeypatch.setattr(
        ray.tune, "report", lambda metrics, checkpoint=None: reports.append(metrics)
    )
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    raw = _spec("adding", ADDING, {"a": {"cell": "lstm", "hidden_size": 8}}, max_epochs=2)
    for diagnostics in (False, True):
        config = parse_spec({**raw, "fixed": {**raw["fixed"], "diagnostics": diagnostics}})
        trainable.train_trial(config.trial("a").nested(), datasets["adding"])
    plain, diagnosed = reports[:2], reports[2:]
    assert len(diagnosed) == 2  # one report per epoch
    for result in diagnosed:
        assert {"diag/grad_h_lag_0", "diag/grad_h_lag_8", "diag/spectral_radius"} <= result.keys()
        assert "diag/max_singular_value" in result and "diag/grad_h_lag_16" not in result  # T=12
        assert all(math.isfinite(v) for k, v in result.items() if k.startswith("diag/"))
    assert not any(k.startswith("diag/") for result in plain for k in result)
    # measuring takes no optimizer step and draws no random number the training would see
    assert [r["val/loss"] for r in plain] == [r["val/loss"] for r in diagnosed]


# -- the report ---------------------------------------------------------------------------------


def _study(client: MlflowClient, with_lags: bool) -> str:
    """A parent run and one repeat per variant and seed, as a study logs them."""
    experiment = client.create_experiment(f"study-{with_lags}")
    spec = parse_spec(_spec("adding", ADDING, {"rnn": {}, "lstm": {"cell": "lstm"}}))
    parent = client.create_run(experiment, tags={"kind": "study"}).info.run_id
    client.log_text(parent, json.dumps(spec.model_dump(mode="json")), "spec.json")
    client.set_tag(parent, "dataset.metric", "mse")
    client.set_tag(parent, "dataset.baseline", str(1 / 6))
    for variant, decay in (("rnn", 0.5), ("lstm", 0.95)):
        # a trial with other values: the plot prefers the repeats when they have the metrics
        tags = {"mlflow.parentRunId": parent, "variant": variant, "kind": "trial", "seed": "0"}
        trial = client.create_run(experiment, tags=tags).info.run_id
        client.log_metric(trial, "val/loss", 0.3, step=0)
        for lag in (0, 1, 2, 4, 8) if with_lags else ():
            client.log_metric(trial, f"diag/grad_h_lag_{lag}", 123.0, step=0)
        client.set_terminated(trial)
        for seed in (1, 2):
            tags = {"mlflow.parentRunId": parent, "variant": variant, "kind": "repeat"}
            run = client.create_run(experiment, tags={**tags, "seed": str(seed)}).info.run_id
            for epoch in range(2):
                client.log_metric(run, "train/loss", 0.2 - 0.01 * epoch, step=epoch)
                client.log_metric(run, "val/loss", 0.2 - 0.01 * epoch, step=epoch)
                for lag in (0, 1, 2, 4, 8) if with_lags else ():
                    value = decay**lag * (1 + epoch) * seed
                    client.log_metric(run, f"diag/grad_h_lag_{lag}", value, step=epoch)
            client.log_metric(run, "test/mse", 0.1 if variant == "lstm" else 0.16)
            client.set_terminated(run)
    client.set_terminated(parent)
    return parent


def test_report_plots_gradient_norm_against_lag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    record = report.collect(client, _study(client, with_lags=True))
    curves = plots.gradient_by_lag(record)
    assert curves["rnn"][8] == pytest.approx(0.5**8 * 2 * 1.5)  # median of seeds, last epoch
    built = report.build(record)
    assert "`plots/gradient_norm_by_lag.png`" in built.markdown
    report.write(built, tmp_path / "out")
    png = tmp_path / "out" / "plots" / "gradient_norm_by_lag.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    parent = record.parent_run_id
    report.publish(client, parent, built)
    published = {a.path for a in client.list_artifacts(parent, "plots")}
    assert "plots/gradient_norm_by_lag.png" in published

    plain = report.build(report.collect(client, _study(client, with_lags=False)))
    assert "gradient_norm_by_lag.png" not in plain.figures
    assert "gradient_norm_by_lag" not in plain.markdown


def _steps(n: int) -> dict[str, dict[str, int]]:
    """A Lightning progress counter at n steps."""
    return {"total": {"ready": n, "completed": n}, "current": {"ready": n, "completed": n}}


def test_the_checkpoint_shim_moves_an_automatic_step_count_to_the_manual_one() -> None:
    """`carry_step_count` copies the count of a checkpoint saved under automatic optimization
    where the manual count is empty, and leaves a checkpoint that counted by hand as it is."""
    from seqmodels.lit.checkpoints import AUTOMATIC, MANUAL_STEPS, carry_step_count

    def checkpoint(manual: int, automatic: int) -> dict[str, Any]:
        automatic_steps = {"optimizer": {"step": _steps(automatic)}}
        return {"loops": {"fit_loop": {MANUAL_STEPS: _steps(manual), AUTOMATIC: automatic_steps}}}

    old = checkpoint(manual=0, automatic=7)
    carry_step_count(old)
    assert old["loops"]["fit_loop"][MANUAL_STEPS] == _steps(7)
    new = checkpoint(manual=3, automatic=0)
    carry_step_count(new)
    assert new == checkpoint(manual=3, automatic=0)
    bare: dict[str, Any] = {}
    carry_step_count(bare)  # a checkpoint without loops (weights only) is left alone
    assert bare == {}
