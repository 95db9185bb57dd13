"""Architectures, training techniques, generation and diagnostics of the model zoo."""

from __future__ import annotations

import itertools
import math
from typing import Any

import lightning as L
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from seqmodels.batch import BOS, EOS, FIRST_SYMBOL, PAD
from seqmodels.data import NpzDataModule
from seqmodels.diagnostics import RecurrenceDiagnostics
from seqmodels.errors import ConfigError
from seqmodels.generate import beam_search, generate, next_token, sample_language_model
from seqmodels.lit import LanguageModel, Seq2Seq, SequenceClassification, SequenceRegression
from seqmodels.models import (
    ARCHITECTURES,
    CELLS,
    AttentionEncoderDecoder,
    Bidirectional,
    ModelConfig,
    OutputRecurrent,
    Recurrent,
    Recursive,
    Seq2SeqArchitecture,
    SeqToOne,
    TorchRecurrence,
    Unrolled,
    balanced_tree,
    build_model,
    depth,
    detach_state,
    load_torch_weights,
    takes_argument,
    tree_from_parents,
    tree_from_token_parents,
)
from seqmodels.models.sequence import own_output_probability
from seqmodels.tasks.listops import ListOpsOptions, ListOpsTask
from seqmodels.training import information_flow_penalty, truncated_bptt

torch.set_num_threads(1)

SEQ2SEQ = ("encoder_decoder", "attention")
TOKEN_VOCAB = 9  # PAD, BOS, EOS and six symbols


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def config_for(arch: str, cell: str, **kw: Any) -> ModelConfig:
    """A tiny config of `arch` with `cell`, with the options that make the pair meaningful."""
    arch_options = dict(kw.pop("arch_options", {}))
    if arch == "output_recurrent" and cell not in ("tanh", "relu"):
        arch_options.setdefault("hidden_to_hidden", True)
    if arch in SEQ2SEQ:
        arch_options.setdefault("embedding_size", 6)
    kw.setdefault("hidden_size", 5)
    return ModelConfig(architecture=arch, cell=cell, arch_options=arch_options, **kw)


def makes_sense(arch: str, cell: str) -> bool:
    return arch != "recursive" or cell in ("tanh", "relu")


def token_batch(B: int, S: int, U: int, vocab: int = TOKEN_VOCAB) -> dict[str, torch.Tensor]:
    """Random sources and targets ending in EOS, padded per the batch contract."""
    x_len = torch.randint(1, S + 1, (B,))
    x_len[0] = S
    y_len = torch.randint(1, U + 1, (B,))
    y_len[0] = U
    x = torch.randint(FIRST_SYMBOL, vocab, (B, S))
    x[torch.arange(S)[None] >= x_len[:, None]] = PAD
    y = torch.randint(FIRST_SYMBOL, vocab, (B, U))
    y[torch.arange(B), y_len - 1] = EOS
    y[torch.arange(U)[None] >= y_len[:, None]] = PAD
    return {"x": x, "x_len": x_len, "y": y, "y_len": y_len}


# --- registry and config ----------------------------------------------------------------------


def test_every_architecture_is_registered() -> None:
    assert ARCHITECTURES.names() == sorted(
        [
            "seq2one",
            "recurrent",
            "output_recurrent",
            "bidirectional",
            "encoder_decoder",
            "attention",
            "deep",
            "recursive",
            "autoencoder",
        ]
    )


@pytest.mark.parametrize(
    "kw,field,fragment",
    [
        (
            {"architecture": "attention", "arch_options": {"atention_size": 3}},
            "arch_options.atention_size",
            "choose from: embedding_size",
        ),
        (
            {"architecture": "encoder_decoder", "arch_options": {"context": "middle"}},
            "arch_options.context",
            "'initial', 'input', 'both'",
        ),
        (
            {"architecture": "encoder_decoder", "arch_options": {"stop": "never"}},
            "arch_options.stop",
            "'eos', 'bernoulli', 'length'",
        ),
        (
            {
                "architecture": "encoder_decoder",
                "arch_options": {"feedback": False, "context": "initial"},
            },
            "arch_options.feedback",
            "needs an input",
        ),
        (
            {"architecture": "deep", "arch_options": {"input_layers": -1}},
            "arch_options.input_layers",
            ">= 0",
        ),
        (
            {"architecture": "autoencoder", "arch_options": {"x": 1}},
            "arch_options.x",
            "takes no options",
        ),
        (
            {"architecture": "seq2one", "arch_options": {"x": 1}},
            "arch_options.x",
            "choose from: embedding_size",
        ),
        (
            {"architecture": "seq2one", "arch_options": {"embedding_size": -1}},
            "arch_options.embedding_size",
            ">= 0",
        ),
        ({"architecture": "recursive", "cell": "lstm"}, "cell", "choose from: relu, tanh"),
        ({"architecture": "output_recurrent", "cell": "gru"}, "cell", "hidden_to_hidden"),
        (
            {"architecture": "output_recurrent", "arch_options": {"training": "self"}},
            "arch_options.training",
            "'teacher_forcing'",
        ),
        ({"architecture": "transformer"}, "architecture", "choose from: attention"),
    ],
)
def test_bad_architecture_options_raise_config_error(
    kw: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ModelConfig(**kw)
    assert info.value.field == field
    assert fragment in str(info.value)


# --- shapes over architecture x cell x (B, T) -------------------------------------------------


@pytest.mark.parametrize("B,T", [(1, 1), (3, 5)])
@pytest.mark.parametrize("cell", CELLS.names())
@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_shapes(arch: str, cell: str, B: int, T: int) -> None:
    if not makes_sense(arch, cell):
        with pytest.raises(ConfigError):
            config_for(arch, cell)
        return
    config = config_for(arch, cell)
    if arch in SEQ2SEQ:
        net = build_model(config, TOKEN_VOCAB, TOKEN_VOCAB)
        batch = token_batch(B, T, T + 1)
        out = net(batch["x"], batch["x_len"], batch["y"])
        assert out.logits.shape == (B, T + 1, TOKEN_VOCAB)
        assert torch.isfinite(out.logits).all()
        return
    net = build_model(config, 4, 2)
    out = net(torch.randn(B, T, 4))
    per_step = arch not in ("seq2one", "recursive")
    assert out.shape == ((B, T, 2) if per_step else (B, 2))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru", "leaky"])
def test_fast_path_applies_automatically(cell: str) -> None:
    """Architectures build through build_recurrence: torch's module wherever it can."""
    expected = TorchRecurrence if cell in ("tanh", "lstm", "gru") else Unrolled
    assert isinstance(build_model(config_for("recurrent", cell), 4, 2).recurrence, expected)
    net = build_model(config_for("encoder_decoder", cell), TOKEN_VOCAB, TOKEN_VOCAB)
    assert isinstance(net.decoder, expected) and isinstance(net.encoder.forward_rec, expected)
    deep = build_model(config_for("deep", cell, num_layers=2), 4, 2)
    assert all(isinstance(layer, expected) for layer in deep.layers)
    deep_transition = config_for("deep", cell, arch_options={"transition_layers": 1})
    assert isinstance(build_model(deep_transition, 4, 2).layers[0], Unrolled)


def test_token_inputs_for_language_models() -> None:
    net = build_model(config_for("recurrent", "gru", arch_options={"embedding_size": 4}), 9, 9)
    x = torch.randint(0, 9, (2, 6))
    assert net(x).shape == (2, 6, 9)


# --- every architecture learns a tiny task ----------------------------------------------------


def tiny_task(arch: str) -> tuple[torch.nn.Module, Any]:
    """A network and a closure returning its loss on a fixed tiny batch."""
    if arch in SEQ2SEQ:
        net = build_model(config_for(arch, "gru", hidden_size=16), TOKEN_VOCAB, TOKEN_VOCAB)
        batch = token_batch(8, 4, 4)

        def loss() -> torch.Tensor:
            out = net(batch["x"], batch["x_len"], batch["y"])
            return F.cross_entropy(out.logits.transpose(1, 2), batch["y"], ignore_index=PAD)

        return net, loss
    x = torch.randn(8, 5, 3)
    if arch in ("seq2one", "recursive"):
        y = x.sum(dim=(1, 2))[:, None]  # (8, 1)
    elif arch == "autoencoder":
        y = x
    else:
        y = x.cumsum(1)[..., :1]  # (8, 5, 1): a running sum
    net = build_model(config_for(arch, "tanh", hidden_size=16), 3, y.shape[-1])

    def loss() -> torch.Tensor:
        pred = net(x, y=y) if isinstance(net, OutputRecurrent) else net(x)
        return F.mse_loss(pred, y)

    return net, loss


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_each_architecture_trains(arch: str) -> None:
    net, loss = tiny_task(arch)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    first = float(loss())
    for _ in range(40):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert float(loss()) < 0.7 * first


# --- output recurrence: teacher forcing, free running, scheduled sampling ---------------------


def test_teacher_forcing_and_free_running_differ_in_training_agree_at_test() -> None:
    tf = build_model(config_for("output_recurrent", "tanh"), 3, 2)
    free_cfg = config_for("output_recurrent", "tanh", arch_options={"training": "free_running"})
    fr = build_model(free_cfg, 3, 2)
    fr.load_state_dict(tf.state_dict())
    x, y = torch.randn(4, 6, 3), torch.randn(4, 6, 2) * 3
    tf.train(), fr.train()
    out_tf, out_fr = tf(x, y=y), fr(x, y=y)
    torch.testing.assert_close(out_tf[:, 0], out_fr[:, 0])  # nothing fed back at t = 1
    assert (out_tf[:, 1:] - out_fr[:, 1:]).abs().max() > 1e-2
    # teacher forcing feeds y(t-1): changing y changes its outputs; free running ignores y
    assert (tf(x, y=y + 1) - out_tf).abs().max() > 1e-2
    torch.testing.assert_close(fr(x, y=y + 1), out_fr)
    tf.eval(), fr.eval()
    torch.testing.assert_close(tf(x, y=y), fr(x, y=y))
    torch.testing.assert_close(tf(x, y=y), tf(x))  # at test time y is never read
    torch.testing.assert_close(tf(x), out_fr)  # and eval is the free-running computation


def test_scheduled_sampling_follows_its_schedule() -> None:
    assert own_output_probability(0.0, 0.5) == 0.0
    assert own_output_probability(0.25, 0.5) == 0.5
    assert own_output_probability(0.9, 0.5) == 1.0
    cfg = config_for("output_recurrent", "tanh", arch_options={"training": "scheduled_sampling"})
    ss = build_model(cfg, 3, 2)
    tf = build_model(config_for("output_recurrent", "tanh"), 3, 2)
    fr = build_model(
        config_for("output_recurrent", "tanh", arch_options={"training": "free_running"}), 3, 2
    )
    tf.load_state_dict(ss.state_dict()), fr.load_state_dict(ss.state_dict())
    x, y = torch.randn(4, 6, 3), torch.randn(4, 6, 2)
    ss.set_progress(0.0)  # start: always y(t-1), i.e. teacher forcing
    torch.testing.assert_close(ss(x, y=y), tf(x, y=y))
    ss.set_progress(1.0)  # end: always its own output, i.e. free running
    torch.testing.assert_close(ss(x, y=y), fr(x, y=y))


def test_output_recurrent_without_hidden_to_hidden_has_no_w_h_path() -> None:
    """Fig 10.4: with teacher forcing, h(t) depends on x(t) and y(t-1) only."""
    net = build_model(config_for("output_recurrent", "tanh"), 3, 2)
    x, y = torch.randn(1, 5, 3, requires_grad=True), torch.randn(1, 5, 2)
    (grad,) = torch.autograd.grad(net(x, y=y)[0, 4].sum(), x)
    assert grad[0, 4].abs().sum() > 0 and grad[0, :4].abs().sum() == 0


# --- bidirectional, attention and padding ----------------------------------------------------


def test_bidirectional_is_exact_on_padded_batches_and_sees_both_sides() -> None:
    net = build_model(config_for("bidirectional", "gru", num_layers=2), 3, 2)
    assert isinstance(net, Bidirectional)
    x = torch.randn(2, 6, 3)
    x_len = torch.tensor([6, 4])
    alone = net(x[1:, :4])
    torch.testing.assert_close(net(x, x_len)[1:, :4], alone)
    assert (net(x)[1:, :4] - alone).abs().max() > 1e-4  # ignoring lengths reads the padding
    xg = x[:1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(xg)[0, 2].sum(), xg)
    assert (grad[0].abs().sum(-1) > 0).all()  # o(t) sees the past and the future


LENGTHS = torch.tensor([6, 3, 1, 5])  # the first fills the batch; the others are padded


def padded_floats(F_: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 6, F) floats whose padding is noise, not zeros: a model that reads it shows it."""
    return torch.randn(4, 6, F_), LENGTHS.clone()


def padded_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 6) token ids with PAD past each length."""
    x = torch.randint(FIRST_SYMBOL, TOKEN_VOCAB, (4, 6))
    x[torch.arange(6)[None] >= LENGTHS[:, None]] = PAD
    return x, LENGTHS.clone()


def each_alone(net: torch.nn.Module, x: torch.Tensor, x_len: torch.Tensor) -> torch.Tensor:
    """net's output for each sequence run on its own, cut to its length: (B, ...)."""
    return torch.cat([net(x[i : i + 1, : int(n)]) for i, n in enumerate(x_len)])


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize(
    "cell,cell_options",
    [("tanh", {}), ("lstm", {}), ("gru", {}), ("gru", {"reset": "before"}), ("leaky", {})],
    ids=["tanh", "lstm", "gru", "gru-book", "leaky"],
)
def test_seq2one_is_exact_on_padded_batches(
    cell: str, cell_options: dict[str, Any], bidirectional: bool
) -> None:
    """A padded batch gives each sequence the output it gets alone, on both paths."""
    config = config_for(
        "seq2one", cell, num_layers=2, bidirectional=bidirectional, cell_options=cell_options
    )
    net = build_model(config, 3, 2)
    fast = not cell_options and cell != "leaky"
    assert isinstance(net.recurrence, TorchRecurrence if fast else Unrolled)
    x, x_len = padded_floats()
    alone = each_alone(net, x, x_len)
    torch.testing.assert_close(net(x, x_len), alone)
    assert (net(x)[1:] - alone[1:]).abs().max() > 1e-4  # without lengths it reads the padding


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_seq2one_reads_token_ids(bidirectional: bool) -> None:
    options = {"embedding_size": 4}
    config = config_for("seq2one", "lstm", bidirectional=bidirectional, arch_options=options)
    net = build_model(config, TOKEN_VOCAB, 3)
    x, x_len = padded_tokens()
    out = net(x, x_len)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out, each_alone(net, x, x_len))
    (grad,) = torch.autograd.grad(out.sum(), net.inputs.embedding.weight)
    assert grad[PAD].abs().sum() == 0  # the padding index never learns


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_fast_and_cell_by_cell_agree_on_padded_batches(bidirectional: bool) -> None:
    """Packing (fast path) and length-aware reversal (cell by cell) give the same states."""
    config = config_for("seq2one", "gru", num_layers=2, bidirectional=bidirectional)
    fast = build_model(config, 3, 2)
    assert isinstance(fast.recurrence, TorchRecurrence)
    gru = CELLS.get("gru")
    slow = SeqToOne(Unrolled(3, 5, 2, gru, gru.options_type(), bidirectional), 2)
    load_torch_weights(slow.recurrence, fast.recurrence)
    slow.head.load_state_dict(fast.head.state_dict())
    x, x_len = padded_floats()
    valid = (torch.arange(6)[None] < x_len[:, None])[..., None]  # (B, T, 1)
    h_fast = fast.recurrence(x, x_len) * valid  # states past x_len are unspecified
    h_slow = slow.recurrence(x, x_len) * valid
    torch.testing.assert_close(h_slow, h_fast, atol=1e-5, rtol=0)
    torch.testing.assert_close(slow(x, x_len), fast(x, x_len), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["seq2one", "recurrent", "bidirectional", "deep", "autoencoder"])
def test_full_lengths_change_nothing(arch: str) -> None:
    """Fixed-length data passes x_len == T: exactly the outputs of x alone."""
    arch_options = {"output": "final"} if arch == "deep" else {}
    config = config_for(arch, "lstm", bidirectional=arch != "deep", arch_options=arch_options)
    net = build_model(config, 3, 3)
    x = torch.randn(2, 5, 3)
    assert torch.equal(net(x, torch.full((2,), 5)), net(x))


@pytest.mark.parametrize("transition_layers", [0, 1])
def test_deep_final_output_is_exact_on_padded_token_batches(transition_layers: int) -> None:
    options = {"output": "final", "embedding_size": 4, "transition_layers": transition_layers}
    net = build_model(config_for("deep", "gru", num_layers=2, arch_options=options), 9, 2)
    x, x_len = padded_tokens()
    out = net(x, x_len)
    assert out.shape == (4, 2)
    torch.testing.assert_close(out, each_alone(net, x, x_len))
    every = build_model(config_for("deep", "gru", arch_options={"embedding_size": 4}), 9, 2)
    assert every(x, x_len).shape == (4, 6, 2)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_autoencoder_code_is_exact_on_padded_batches(bidirectional: bool) -> None:
    net = build_model(config_for("autoencoder", "gru", bidirectional=bidirectional), 3, 3)
    x, x_len = padded_floats()
    alone = torch.cat([net.encode(x[i : i + 1, : int(n)]) for i, n in enumerate(x_len)])
    torch.testing.assert_close(net.encode(x, x_len), alone)
    assert net(x, x_len).shape == (4, 6, 3)


def test_recurrent_bidirectional_language_model_is_exact_on_padded_batches() -> None:
    options = {"embedding_size": 4}
    net = build_model(
        config_for("recurrent", "lstm", bidirectional=True, arch_options=options), 9, 9
    )
    x, x_len = padded_tokens()
    out = net(x, x_len)
    for i, n in enumerate(x_len.tolist()):
        torch.testing.assert_close(out[i : i + 1, :n], net(x[i : i + 1, :n]))


def test_families_pass_lengths_to_nets_that_take_them() -> None:
    config = config_for("seq2one", "gru", bidirectional=True, arch_options={"embedding_size": 4})
    net = build_model(config, TOKEN_VOCAB, 3)
    x, x_len = padded_tokens()
    batch = {"x": x, "x_len": x_len, "y": torch.tensor([0, 1, 2, 0])}
    loss, _ = SequenceClassification(net).model_step(batch)
    torch.testing.assert_close(loss, F.cross_entropy(each_alone(net, x, x_len), batch["y"]))
    regression = SequenceRegression(net)
    _, pred, _ = regression.model_step({**batch, "y": torch.zeros(4, 3)})
    torch.testing.assert_close(pred, net(x, x_len))


def test_attention_ignores_padded_source_positions() -> None:
    net = build_model(config_for("attention", "gru", bidirectional=True), TOKEN_VOCAB, TOKEN_VOCAB)
    assert isinstance(net, AttentionEncoderDecoder)
    batch = token_batch(3, 6, 4)
    batch["x_len"] = torch.tensor([6, 3, 1])
    weights = net.attention_weights(batch["x"], batch["x_len"], batch["y"])  # (B, U, S)
    valid = torch.arange(6)[None] < batch["x_len"][:, None]
    assert (weights.masked_select(~valid[:, None].expand_as(weights)) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    # changing a padded source token changes nothing
    other = batch["x"].clone()
    other[1, 4] = FIRST_SYMBOL + 2
    a = net(batch["x"], batch["x_len"], batch["y"]).logits
    b = net(other, batch["x_len"], batch["y"]).logits
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("context", ["initial", "input", "both"])
def test_encoder_decoder_context_and_reversal(context: str) -> None:
    options = {"context": context, "reverse_source": True}
    net = build_model(config_for("encoder_decoder", "lstm", arch_options=options), 9, 9)
    batch = token_batch(2, 5, 3)
    out = net(batch["x"], batch["x_len"], batch["y"])
    x = batch["x"].clone().requires_grad_(False)
    assert out.logits.shape == (2, 3, 9)
    # the decoder depends on the source only through C: perturb a source token, logits change
    x[0, 0] = FIRST_SYMBOL if x[0, 0] != FIRST_SYMBOL else FIRST_SYMBOL + 1
    assert (net(x, batch["x_len"], batch["y"]).logits[0] - out.logits[0]).abs().max() > 1e-6


def test_encoder_decoder_teacher_forced_forward_equals_step_by_step() -> None:
    net = build_model(config_for("encoder_decoder", "gru"), TOKEN_VOCAB, TOKEN_VOCAB)
    batch = token_batch(3, 5, 4)
    fast = net(batch["x"], batch["x_len"], batch["y"])
    slow = Seq2SeqArchitecture.forward(net, batch["x"], batch["x_len"], batch["y"])
    torch.testing.assert_close(fast.logits, slow.logits)


# --- deep, recursive, autoencoder -------------------------------------------------------------


def test_deep_parts_add_depth_and_skip_connections() -> None:
    options = {"input_layers": 2, "transition_layers": 2, "output_layers": 1, "skip": True}
    net = build_model(config_for("deep", "lstm", num_layers=2, arch_options=options), 5, 2)
    assert len(net.input_mlp) == 4 and len(net.output_mlp) == 2
    assert all(len(layer.layers[0][0].mlp) == 4 for layer in net.layers)
    assert net(torch.randn(2, 4, 5)).shape == (2, 4, 2)
    final = build_model(config_for("deep", "tanh", arch_options={"output": "final"}), 5, 2)
    assert final(torch.randn(2, 4, 5)).shape == (2, 2)


@pytest.mark.parametrize("T", [1, 2, 3, 5, 8, 9, 16, 17])
def test_recursive_balanced_tree_has_log_depth(T: int) -> None:
    tree = balanced_tree(T)
    assert depth(tree) == math.ceil(math.log2(T))
    leaves: list[int] = []

    def collect(node: Any) -> None:
        if isinstance(node, int):
            leaves.append(node)
        else:
            collect(node[0]), collect(node[1])

    collect(tree)
    assert leaves == list(range(T))  # every position once, in order
    net = build_model(config_for("recursive", "tanh"), 3, 2)
    assert isinstance(net, Recursive)
    x = torch.randn(2, T, 3)
    torch.testing.assert_close(net(x), net(x, tree=tree))  # the batched levels compose that tree


def test_recursive_accepts_a_given_tree() -> None:
    # leaves 0..3; node 4 = (0, 1), node 5 = (4, 2), node 6 = (5, 3) the root: a chain
    chain = tree_from_parents([4, 4, 5, 6, 5, 6, -1])
    assert chain == (((0, 1), 2), 3)
    assert depth(chain) == 3 and depth(balanced_tree(4)) == 2
    net = build_model(config_for("recursive", "relu"), 3, 2)
    x = torch.randn(2, 4, 3)
    assert (net(x, tree=chain) - net(x)).abs().max() > 1e-6
    with pytest.raises(ValueError, match="one root"):
        tree_from_parents([2, 2, -1, -1])
    with pytest.raises(ValueError, match="needs 2"):
        tree_from_parents([3, 3, 3, -1])


def test_tree_from_token_parents_follows_listops_lists() -> None:
    # [MAX 2 9 [MIN 4 7 ] 0 ]: each list composes head first, left to right
    parents = [-1, 0, 0, 0, 3, 3, 3, 0, 0]
    inner = (((3, 4), 5), 6)
    assert tree_from_token_parents(parents) == (((((0, 1), 2), inner), 7), 8)
    assert tree_from_token_parents([-1]) == 0
    with pytest.raises(ValueError, match="one root"):
        tree_from_token_parents([-1, 0, -1])
    with pytest.raises(ValueError, match="cycle"):
        tree_from_token_parents([-1, 2, 1])


def test_recursive_composes_one_tree_per_example() -> None:
    """x_parent gives each example its own tree; x_len alone, its own balanced tree."""
    task = ListOpsTask(options=ListOpsOptions(max_length=20, n_train=6, n_val=1, n_test=1))
    data = task.generate(0)["train"]
    x, x_len, x_parent = (torch.from_numpy(data[k]) for k in ("x", "x_len", "x_parent"))
    options = {"embedding_size": 4}
    net = build_model(config_for("recursive", "tanh", arch_options=options), task.input_size, 10)
    out = net(x, x_len=x_len, x_parent=x_parent)
    assert out.shape == (6, 10)
    for i, n in enumerate(x_len.tolist()):
        tree = tree_from_token_parents(x_parent[i, :n].tolist())
        torch.testing.assert_close(out[i : i + 1], net(x[i : i + 1, :n], tree=tree))
    balanced = net(x, x_len=x_len)
    torch.testing.assert_close(balanced, each_alone(net, x, x_len))
    (grad,) = torch.autograd.grad(out.sum(), net.inputs.embedding.weight)
    assert grad[PAD].abs().sum() == 0  # padding is never a leaf
    floats = build_model(config_for("recursive", "relu"), 3, 2)
    z = torch.randn(2, 5, 3)
    assert torch.equal(floats(z, x_len=torch.full((2,), 5)), floats(z))  # full lengths: as before


def test_autoencoder_reconstructs_through_the_code_only() -> None:
    net = build_model(config_for("autoencoder", "gru", hidden_size=8), 3, 3)
    x = torch.randn(2, 5, 3)
    code = net.encode(x)
    assert code.shape == (2, 8)
    torch.testing.assert_close(net(x), net.decode(code, 5))  # nothing but h(tau) reaches it


# --- generation and the three ways to end a sequence (10.2.3) ---------------------------------


def test_next_token_greedy_temperature_top_k() -> None:
    logits = torch.tensor([[0.0, 1.0, 3.0, 2.0]]).expand(2000, 4)
    assert (next_token(logits, greedy=True) == 2).all()
    top2 = next_token(logits, top_k=2)
    assert set(top2.tolist()) == {2, 3}
    cold = next_token(logits, temperature=0.05)
    assert (cold == 2).float().mean() > 0.99
    hot = next_token(logits, temperature=100.0)
    assert (hot == 0).float().mean() > 0.15  # nearly uniform


def seq2seq_net(stop: str, arch: str = "encoder_decoder") -> Any:
    options = {"stop": stop, "max_length": 7}
    return build_model(config_for(arch, "gru", arch_options=options), TOKEN_VOCAB, TOKEN_VOCAB)


@pytest.mark.parametrize("arch", SEQ2SEQ)
def test_eos_ends_a_sequence(arch: str) -> None:
    net = seq2seq_net("eos", arch)
    batch = token_batch(4, 5, 3)
    with torch.no_grad():  # EOS very likely: every sequence ends at once
        net.out.bias[EOS] = 50.0
    out = generate(net, batch["x"], batch["x_len"])
    assert out.tokens.shape == (4, 1) and (out.tokens[:, 0] == EOS).all()
    with torch.no_grad():  # EOS impossible: sequences run to max_length
        net.out.bias[EOS] = -50.0
    out = generate(net, batch["x"], batch["x_len"], greedy=False)
    assert out.tokens.shape == (4, 7) and (out.lengths == 7).all() and (out.tokens != EOS).all()
    # each sequence ends with the step that emits EOS, PAD after it
    tokens = generate(seq2seq_net("eos", arch), batch["x"], batch["x_len"], greedy=False).tokens
    for row in tokens.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1 :])


def test_bernoulli_stop_output_ends_a_sequence() -> None:
    net = seq2seq_net("bernoulli")
    batch = token_batch(3, 5, 3)
    with torch.no_grad():
        net.out.bias[EOS] = 50.0  # EOS no longer ends anything: only the stop output does
        net.stop_head.bias.fill_(-50.0)
    out = generate(net, batch["x"], batch["x_len"])
    assert (out.lengths == 7).all() and (out.tokens == EOS).all()
    with torch.no_grad():
        net.stop_head.bias.fill_(50.0)
    assert (generate(net, batch["x"], batch["x_len"]).lengths == 1).all()


def test_length_output_fixes_tau_before_sampling() -> None:
    net = seq2seq_net("length", "attention")
    batch = token_batch(3, 5, 3)
    with torch.no_grad():
        net.length_head.weight.zero_()
        net.length_head.bias.fill_(-50.0)
        net.length_head.bias[4] = 50.0
        net.out.bias[EOS] = 50.0  # EOS is ignored too
    out = generate(net, batch["x"], batch["x_len"], greedy=False, top_k=3)
    assert (out.lengths == 4).all() and out.tokens.shape == (3, 4)
    beam = beam_search(net, batch["x"], batch["x_len"], beam_size=3)
    assert (beam.lengths == 4).all()


def test_seq2seq_training_loss_includes_stop_and_length_outputs() -> None:
    batch = token_batch(4, 5, 4)
    for stop, head in (("bernoulli", "stop_head"), ("length", "length_head")):
        module = Seq2Seq(seq2seq_net(stop))
        loss, *_ = module.model_step(batch)
        loss.backward()
        assert getattr(module.net, head).weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", SEQ2SEQ)
def test_beam_of_one_is_greedy(arch: str) -> None:
    net = seq2seq_net("eos", arch)
    batch = token_batch(3, 5, 3)
    greedy = generate(net, batch["x"], batch["x_len"])
    beam = beam_search(net, batch["x"], batch["x_len"], beam_size=1)
    for b in range(3):
        n = int(greedy.lengths[b])
        assert beam.tokens[b, :n].tolist() == greedy.tokens[b, :n].tolist()
    wide = beam_search(net, batch["x"], batch["x_len"], beam_size=4)
    assert (wide.lengths >= 1).all() and (wide.lengths <= 7).all()


def _most_likely_by_enumeration(net: Any, x: torch.Tensor, x_len: torch.Tensor, steps: int) -> list:
    """The most likely target of the source x (1, S) among every target the decoder can emit
    in at most `steps` steps: ending with EOS, or `steps` tokens without one. Each is scored
    by teacher forcing."""
    V = net.vocab_size
    targets = [
        list(t) + [EOS]
        for n in range(steps)
        for t in itertools.product([v for v in range(V) if v != EOS], repeat=n)
    ] + [list(t) for t in itertools.product([v for v in range(V) if v != EOS], repeat=steps)]
    best, best_score = None, float("-inf")
    for n in range(1, steps + 1):
        same = torch.tensor([t for t in targets if len(t) == n])  # (N, n)
        logits = net(x.expand(len(same), -1), x_len.expand(len(same)), same).logits
        scores = torch.log_softmax(logits, -1).gather(2, same[..., None]).sum((1, 2))
        i = int(scores.argmax())
        if float(scores[i]) > best_score:
            best, best_score = same[i].tolist(), float(scores[i])
    return best


@pytest.mark.parametrize("arch", SEQ2SEQ)
def test_a_beam_wider_than_every_hypothesis_finds_the_most_likely_target(arch: str) -> None:
    net = seq2seq_net("eos", arch).eval()
    batch = token_batch(3, 5, 3)
    steps = 3  # 1 + 8 + 8 * 8 * 9 = 585 targets: a beam of 600 never drops one
    wide = beam_search(net, batch["x"], batch["x_len"], beam_size=600, max_length=steps)
    with torch.no_grad():
        for b in range(3):
            x, x_len = batch["x"][b : b + 1], batch["x_len"][b : b + 1]
            expected = _most_likely_by_enumeration(net, x, x_len, steps)
            n = int(wide.lengths[b])
            assert wide.tokens[b, :n].tolist() == expected
            assert (wide.tokens[b, n:] == PAD).all()


@pytest.mark.parametrize("stop", ["eos", "length"])
def test_beam_search_of_a_batch_is_each_source_searched_alone(stop: str) -> None:
    net = seq2seq_net(stop, "attention")
    batch = token_batch(6, 5, 3)
    together = beam_search(net, batch["x"], batch["x_len"], beam_size=3)
    for b in range(6):
        alone = beam_search(net, batch["x"][b : b + 1], batch["x_len"][b : b + 1], beam_size=3)
        n = int(alone.lengths[0])
        assert int(together.lengths[b]) == n
        assert together.tokens[b, :n].tolist() == alone.tokens[0, :n].tolist()


def test_language_model_sampling_stops_at_eos() -> None:
    net = build_model(config_for("recurrent", "lstm", arch_options={"embedding_size": 4}), 9, 9)
    assert isinstance(net, Recurrent)
    prefix = torch.full((3, 2), FIRST_SYMBOL)
    with torch.no_grad():
        net.head.bias[EOS] = 50.0
    out = sample_language_model(net, prefix, max_length=5)
    assert out.tokens.tolist() == [[EOS]] * 3
    with torch.no_grad():
        net.head.bias[EOS] = -50.0
    out = sample_language_model(net, prefix, max_length=5, top_k=2)
    assert out.tokens.shape == (3, 5) and (out.lengths == 5).all()


# --- training techniques ----------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["tanh", "lstm", "skip"])
def test_truncated_bptt_with_truncation_tau_is_full_bptt(cell: str) -> None:
    net = build_model(config_for("recurrent", cell), 3, 2)
    x, y = torch.randn(2, 8, 3), torch.randn(2, 8, 2)

    def loss_fn(out: torch.Tensor, window: slice) -> torch.Tensor:
        return (out - y[:, window]).square().sum()

    def grads(truncation: int) -> list[torch.Tensor]:
        net.zero_grad()
        truncated_bptt(net.run, x, loss_fn, truncation)
        return [p.grad.clone() for p in net.parameters()]

    net.zero_grad()
    loss_fn(net(x), slice(None)).backward()
    full = [p.grad.clone() for p in net.parameters()]
    for a, b in zip(grads(8), full, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(grads(100), full, strict=True):
        torch.testing.assert_close(a, b)
    short = grads(2)
    names = [n for n, _ in net.named_parameters()]
    W = next(i for i, n in enumerate(names) if "weight_hh" in n or n.endswith(".W.weight"))
    assert (short[W] - full[W]).abs().max() > 1e-6  # truncation changes the recurrent gradient


def test_detach_state_keeps_values_and_cuts_the_graph() -> None:
    h = torch.randn(2, 3, requires_grad=True) * 2
    state = [(h, h + 1)]
    cut = detach_state(state)
    assert torch.equal(cut[0][0], h) and not cut[0][0].requires_grad and not cut[0][1].requires_grad


def test_information_flow_penalty_is_zero_for_an_orthogonal_linear_map() -> None:
    """Omega is 0 when dh(t)/dh(t-1) preserves norms, positive when it shrinks them."""

    def penalty(W: torch.Tensor) -> float:
        hs = [torch.randn(2, 3, requires_grad=True)]
        for _ in range(4):
            hs.append(hs[-1] @ W.T)
        return float(information_flow_penalty(hs, hs[-1].square().sum()))

    Q, _ = torch.linalg.qr(torch.randn(3, 3))
    assert penalty(Q) == pytest.approx(0.0, abs=1e-6)
    assert penalty(0.5 * Q) == pytest.approx(4 * 0.25, rel=1e-4)  # 4 steps of (0.5 - 1)^2


# --- LightningModules and diagnostics ---------------------------------------------------------


def trainer(**kw: Any) -> L.Trainer:
    return L.Trainer(
        max_epochs=kw.pop("max_epochs", 1),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kw,
    )


def loader(batch: dict[str, torch.Tensor], copies: int = 2) -> DataLoader:
    """`copies` times the same ready-made batch."""
    return DataLoader([batch] * copies, batch_size=None)


def test_sequence_classification_logs_accuracy() -> None:
    net = build_model(config_for("seq2one", "gru"), 3, 4)
    module = SequenceClassification(net, lr=0.01)
    batch = {"x": torch.randn(6, 5, 3), "x_len": torch.full((6,), 5), "y": torch.arange(6) % 4}
    t = trainer(limit_val_batches=1)
    t.fit(module, loader(batch), loader(batch, 1))
    assert {"train/loss", "val/accuracy", "val/loss"} <= t.callback_metrics.keys()
    (metrics,) = t.test(module, loader(batch), verbose=False)
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    loss, acc = module.model_step(batch)
    assert metrics["test/cross_entropy"] == pytest.approx(float(loss), rel=1e-5)
    assert metrics["test/accuracy"] == pytest.approx(float(acc))


def test_seq2seq_logs_token_and_sequence_accuracy() -> None:
    module = Seq2Seq(seq2seq_net("eos", "attention"), lr=0.01)
    batch = token_batch(4, 5, 3)
    t = trainer()
    t.fit(module, loader(batch))
    (metrics,) = t.test(module, loader(batch), verbose=False)
    assert 0.0 <= metrics["test/exact_match"] <= metrics["test/token_accuracy"] <= 1.0
    assert 0.0 <= metrics["test/per"] and 0.0 <= metrics["test/wer"] <= 1.0
    _, token_acc, seq_acc, tokens = module.model_step(batch)
    assert tokens == int(batch["y_len"].sum())


def test_seq2seq_test_scores_free_running_decoding() -> None:
    net = seq2seq_net("eos")
    batch = token_batch(2, 4, 3)
    batch["y_len"] = torch.tensor([3, 1])
    batch["y"] = torch.tensor([[4, 5, EOS], [EOS, PAD, PAD]])
    with torch.no_grad():  # a network that always says EOS first: decodes to empty sequences
        net.out.weight.zero_()
        net.out.bias.fill_(-10.0)
        net.out.bias[EOS] = 10.0
    (metrics,) = trainer().test(Seq2Seq(net), loader(batch, 1), verbose=False)
    assert metrics["test/exact_match"] == pytest.approx(1 / 2)  # the empty target is right
    assert metrics["test/token_accuracy"] == pytest.approx(1 / 4)  # only the lone EOS right
    assert metrics["test/wer"] == pytest.approx(1 / 2)
    assert metrics["test/per"] == pytest.approx(2 / 2)  # two symbols deleted of two


def test_seq2seq_accuracy_counts_only_target_tokens() -> None:
    net = seq2seq_net("eos")
    batch = token_batch(2, 4, 3)
    batch["y_len"] = torch.tensor([3, 1])
    batch["y"] = torch.tensor([[4, 5, EOS], [EOS, PAD, PAD]])
    with torch.no_grad():  # a network that always says EOS: right on 2 of 4 target tokens
        net.out.weight.zero_()
        net.out.bias.fill_(-10.0)
        net.out.bias[EOS] = 10.0
    _, token_acc, seq_acc, _ = Seq2Seq(net).model_step(batch)
    assert float(token_acc) == pytest.approx(2 / 4)
    assert float(seq_acc) == pytest.approx(1 / 2)


def test_language_model_bpc_and_perplexity() -> None:
    net = build_model(config_for("recurrent", "gru", arch_options={"embedding_size": 4}), 9, 9)
    module = LanguageModel(net)
    x = torch.randint(FIRST_SYMBOL, 9, (4, 6))
    x[:, 0] = BOS
    y = torch.roll(x, -1, dims=1)  # next-token targets
    y_len = torch.tensor([5, 5, 3, 1])
    y[torch.arange(6)[None, :] >= y_len[:, None]] = PAD
    batch = {"x": x, "x_len": y_len + 1, "y": y, "y_len": y_len}
    loss, right, tokens = module.model_step(batch)
    assert tokens == 5 + 5 + 3 + 1 and 0 <= right <= tokens
    (metrics,) = trainer().test(module, loader(batch), verbose=False)
    assert metrics["test/cross_entropy"] == pytest.approx(float(loss), rel=1e-4)
    assert metrics["test/bits_per_char"] == pytest.approx(float(loss) / math.log(2), rel=1e-4)
    assert metrics["test/perplexity"] == pytest.approx(math.exp(float(loss)), rel=1e-4)
    assert metrics["test/accuracy"] == pytest.approx(right / tokens)


def test_sequence_regression_teacher_forces_output_recurrent_nets() -> None:
    net = build_model(config_for("output_recurrent", "tanh"), 3, 1)
    module = SequenceRegression(net, lr=0.01)
    x = torch.randn(4, 5, 3)
    batch = {"x": x, "x_len": torch.full((4,), 5), "y": x.cumsum(1)[..., :1]}
    loss, pred, _ = module.model_step(batch)
    torch.testing.assert_close(pred, net(x, y=batch["y"]))
    (metrics,) = trainer().test(module, loader(batch), verbose=False)
    assert math.isfinite(metrics["test/mse"])


class Recorder(L.Callback):
    def __init__(self) -> None:
        self.logged: dict[str, list[float]] = {}

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith("diag/"):
                self.logged.setdefault(key, []).append(float(value))


@pytest.mark.parametrize("cell", ["tanh", "lstm", "leaky"])
def test_diagnostics_callback_logs_finite_values(cell: str) -> None:
    net = build_model(config_for("seq2one", cell, hidden_size=6), 3, 1)
    module = SequenceRegression(net, lr=0.01)
    batch = {"x": torch.randn(4, 10, 3), "x_len": torch.full((4,), 10), "y": torch.randn(4, 1)}
    recorder = Recorder()
    t = trainer(callbacks=[RecurrenceDiagnostics(every_n_steps=1, lags=(0, 3, 9)), recorder])
    t.fit(module, loader(batch, 3))
    keys = {
        "diag/spectral_radius",
        "diag/max_singular_value",
        "diag/grad_h_lag_0",
        "diag/grad_h_lag_3",
        "diag/grad_h_lag_9",
        "diag/grad_h_ratio",
    }
    assert keys <= recorder.logged.keys()
    assert all(math.isfinite(v) for key in keys for v in recorder.logged[key])
    W = net.recurrent_weight
    assert W is not None and W.shape == (6, 6)
    radius = float(torch.linalg.eigvals(W.detach()).abs().max())
    assert recorder.logged["diag/spectral_radius"][-1] == pytest.approx(radius, rel=0.2)
    assert (
        recorder.logged["diag/spectral_radius"][-1]
        <= recorder.logged["diag/max_singular_value"][-1] + 1e-6
    )  # |lambda|max <= sigma_max always


def test_packing_matches_torchs_own_unsorted_packing() -> None:
    """The recurrence sorts a padded batch by length itself: the same outputs and final
    states, in the batch's own order, as torch's `enforce_sorted=False`."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    recurrence = TorchRecurrence(3, 5, num_layers=2, mode="LSTM", bidirectional=True)
    x, x_len = padded_floats()
    out, (h, c) = recurrence.run(x, x_len=x_len)
    packed = pack_padded_sequence(x, x_len, batch_first=True, enforce_sorted=False)
    expected, (h_expected, c_expected) = recurrence.rnn(packed)
    expected, _ = pad_packed_sequence(expected, batch_first=True, total_length=x.shape[1])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(h, h_expected)
    torch.testing.assert_close(c, c_expected)


def test_a_moved_batch_keeps_lengths_and_trees_on_the_host() -> None:
    """Lightning's move to a device, through the DataModule, leaves `HOST_KEYS` where they are;
    the "meta" device stands in for a GPU."""
    x, x_len = padded_floats()
    batch = {"x": x, "x_len": x_len, "x_parent": torch.zeros(4, 6, dtype=torch.long)}
    moved = NpzDataModule("unused").transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved["x"].device.type == "meta"
    assert moved["x_len"] is x_len and moved["x_parent"] is batch["x_parent"]


def test_takes_argument_reads_each_class_forward_once_and_tells_classes_apart() -> None:
    """The serving runtime asks which of x_len and x_parent a network takes; the answer is per
    class, so a subclass whose forward differs gets its own."""

    class WithoutLengths(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    class WithLengths(WithoutLengths):
        def forward(self, x: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
            return x

    seq2one = build_model(ModelConfig(cell="gru", hidden_size=4), input_size=2, output_size=1)
    recursive = build_model(config_for("recursive", "tanh"), 3, 2)
    for _ in range(2):  # the second answer comes from the cache
        assert takes_argument(seq2one, "x_len") and not takes_argument(seq2one, "x_parent")
        assert takes_argument(recursive, "x_parent")
        assert not takes_argument(WithoutLengths(), "x_len")
        assert takes_argument(WithLengths(), "x_len")
