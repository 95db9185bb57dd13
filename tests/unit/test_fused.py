"""Fused members (`seqmodels.models.fused`, `seqmodels.optim`): member k of a group, trained for
3 epochs on its own batches, matches its network trained alone with torch's Adam and clipping,
per-epoch losses within 1e-6 relative (float64), for every registered cell (the book's options
included), an encoder-decoder and a language model; every architecture x cell runs fused as
each member alone; a member whose loss turns NaN is frozen while the others' trajectories do
not change."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from seqmodels.batch import FIRST_SYMBOL, PAD
from seqmodels.config import ModelConfig
from seqmodels.models import ARCHITECTURES
from seqmodels.models.architectures import build_model
from seqmodels.models.cells import CELLS
from seqmodels.models.fused import Members
from seqmodels.optim import MemberSteps
from tests.unit.test_architectures import SEQ2SEQ, TOKEN_VOCAB, config_for, makes_sense, token_batch

EPOCHS, BATCHES, B, T, F, H = 3, 4, 8, 6, 2, 6
# Each cell at its defaults, and the book's variants of the gated cells (the cell-by-cell path)
CONFIGS = {name: {} for name in CELLS.names()} | {
    "lstm-peepholes": {"cell": "lstm", "cell_options": {"peepholes": True}},
    "gru-reset-before": {"cell": "gru", "cell_options": {"reset": "before"}},
}


@dataclasses.dataclass(frozen=True)
class Member:
    seed: int
    lr: float
    weight_decay: float
    grad_clip: float | None


MEMBERS = (
    Member(1, 1e-2, 0.0, None),
    Member(2, 3e-3, 1e-2, 0.5),
    Member(3, 2e-2, 1e-3, 0.05),  # a bound below the gradient's norm: it clips every step
)


def _config(name: str) -> ModelConfig:
    fields = CONFIGS[name]
    return ModelConfig(
        cell=fields.get("cell", name), hidden_size=H, cell_options=fields.get("cell_options", {})
    )


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A member's own training set: BATCHES batches of (B, T, F) and their targets (B, 1)."""
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(BATCHES, B, T, F, generator=g, dtype=torch.float64)
    return x, x[..., 0].sum(-1, keepdim=True) * 0.1


def _order(seed: int, epoch: int) -> list[int]:
    """A member's own order of batches in an epoch."""
    return torch.randperm(
        BATCHES, generator=torch.Generator().manual_seed(seed * 10 + epoch)
    ).tolist()


def _net(config: ModelConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(config, F, 1).double()


def _alone(config: ModelConfig, m: Member, clip: str = "norm") -> list[float]:
    """The member trained on its own, as a trial trains: Adam, then clipping (Lightning's
    `clip_gradients` calls these two)."""
    net = _net(config, m.seed)
    opt = torch.optim.Adam(net.parameters(), lr=m.lr, weight_decay=m.weight_decay)
    x, y = _data(m.seed)
    losses = []
    for epoch in range(EPOCHS):
        total = 0.0
        for i in _order(m.seed, epoch):
            opt.zero_grad()
            loss = nn.functional.mse_loss(net(x[i]), y[i])
            loss.backward()
            if m.grad_clip is not None and clip == "norm":
                nn.utils.clip_grad_norm_(net.parameters(), m.grad_clip)
            elif m.grad_clip is not None:
                nn.utils.clip_grad_value_(net.parameters(), m.grad_clip)
            opt.step()
            total += float(loss.detach())
        losses.append(total / BATCHES)
    return losses


def _fused(
    config: ModelConfig,
    members: tuple[Member, ...],
    poison: int | None = None,
    clip: str = "norm",
) -> tuple[list[list[float]], Members, MemberSteps]:
    """The members trained as one group; `poison`: a member whose second batch holds a NaN."""
    group = Members([_net(config, m.seed) for m in members])
    steps = MemberSteps(
        group.stacked,
        len(members),
        lr=[m.lr for m in members],
        weight_decay=[m.weight_decay for m in members],
        grad_clip=[m.grad_clip for m in members],
        grad_clip_algorithm=clip,  # type: ignore[arg-type]
    )
    data = [_data(m.seed) for m in members]
    if poison is not None:
        data[poison] = (data[poison][0].clone(), data[poison][1])
        data[poison][0][1, 0, 0, 0] = float("nan")
    losses: list[list[float]] = [[] for _ in members]
    for epoch in range(EPOCHS):
        orders = [_order(m.seed, epoch) for m in members]
        totals = torch.zeros(len(members), dtype=torch.float64)
        for step in range(BATCHES):
            x = torch.stack([d[0][order[step]] for d, order in zip(data, orders, strict=True)])
            y = torch.stack([d[1][order[step]] for d, order in zip(data, orders, strict=True)])
            steps.zero_grad()
            out = group(x)  # (K, B, 1)
            each = ((out - y) ** 2).mean(dim=(1, 2))  # (K,): each member's own MSE
            torch.where(steps.alive, each, 0.0).sum().backward()
            steps.step(each)
            totals += each.detach()
        for k in range(len(members)):
            losses[k].append(float(totals[k]) / BATCHES)
    return losses, group, steps


@pytest.mark.parametrize("name", CONFIGS)
def test_each_member_trains_as_it_would_alone(name: str) -> None:
    config = _config(name)
    fused, group, _ = _fused(config, MEMBERS)
    for k, m in enumerate(MEMBERS):
        alone = _alone(config, m)
        assert fused[k] == pytest.approx(alone, rel=1e-6), (name, k)
    unclipped = _alone(config, dataclasses.replace(MEMBERS[2], grad_clip=None))
    assert fused[2] != pytest.approx(unclipped, rel=1e-6)  # its clipping did clip
    # member k, taken out of the group, predicts as the group's slice k
    x = _data(0)[0][0]
    together = group(torch.stack([x] * len(MEMBERS)))
    for k in range(len(MEMBERS)):
        torch.testing.assert_close(group.member(k)(x), together[k])


@pytest.mark.parametrize("name", ["tanh", "gru-reset-before"])
def test_clipping_by_value_clips_each_member_to_its_own_bound(name: str) -> None:
    config = _config(name)
    fused, _, _ = _fused(config, MEMBERS, clip="value")
    for k, m in enumerate(MEMBERS):
        assert fused[k] == pytest.approx(_alone(config, m, clip="value"), rel=1e-6), (name, k)


def test_a_member_whose_loss_turns_nan_is_frozen_and_the_others_go_on() -> None:
    config = _config("lstm")
    clean, _, _ = _fused(config, MEMBERS)
    poisoned, group, steps = _fused(config, MEMBERS, poison=1)
    assert steps.alive.tolist() == [True, False, True]
    for k in (0, 2):
        assert poisoned[k] == clean[k]  # exactly: nothing in a step mixes members
    weights = [p[1] for p in group.stacked]
    assert all(torch.isfinite(w).all() for w in weights)  # frozen before the NaN reached them


def test_members_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="share their parameters"):
        Members(
            [
                _net(_config("tanh"), 1),
                _net(dataclasses.replace(_config("tanh"), hidden_size=H + 1), 2),
            ]
        )


def test_the_fast_path_is_swapped_for_its_twin_with_the_same_function() -> None:
    for name in ("tanh", "relu", "lstm", "gru"):
        net = _net(_config(name), 5)
        group = Members([copy.deepcopy(net)])
        x = _data(5)[0][0]
        torch.testing.assert_close(group(x[None])[0], net(x))


PAIRS = [(a, c) for a in ARCHITECTURES.names() for c in CELLS.names() if makes_sense(a, c)]


@pytest.mark.parametrize(("arch", "cell"), PAIRS)
def test_every_architecture_and_cell_runs_fused_as_each_member_alone(arch: str, cell: str) -> None:
    """Members of every architecture x cell the registry builds (the pairs it refuses are
    test_architectures'): the group's outputs are each member's own, a decoder's fields each
    stacked, teacher forcing included."""
    config = config_for(arch, cell)
    if arch in SEQ2SEQ:
        nets = [_seeded(lambda: build_model(config, TOKEN_VOCAB, TOKEN_VOCAB), s) for s in (1, 2)]
        batches = [token_batch(3, 4, 5) for _ in nets]
        inputs = {k: torch.stack([b[k] for b in batches]) for k in ("x", "x_len", "y")}
        together = Members(nets)(inputs["x"], inputs["x_len"], inputs["y"])
        for k, (net, b) in enumerate(zip(nets, batches, strict=True)):
            torch.testing.assert_close(together.logits[k], net(b["x"], b["x_len"], b["y"]).logits)
        return
    nets = [_seeded(lambda: build_model(config, 4, 2), s) for s in (1, 2)]
    x, y = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 2)
    together = Members(nets)(x, y=y)
    for k, net in enumerate(nets):
        torch.testing.assert_close(together[k], net(x[k], y=y[k]))


def _seeded(build: Any, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build()


def _slice(out: Any, k: int) -> Any:
    """Member k's part of a group's output: a tensor's, or each field of a decoder's."""
    if isinstance(out, torch.Tensor):
        return out[k]
    return type(out)(*(None if f is None else f[k] for f in out))


FAMILIES = {
    # an encoder-decoder with attention over token ids: cross-entropy of its teacher-forced logits
    "seq2seq": (
        lambda: config_for("attention", "gru"),
        lambda g: token_batch(6, 4, 5),
        lambda out, b: nn.functional.cross_entropy(
            out.logits.transpose(1, 2), b["y"], ignore_index=PAD
        ),
    ),
    # a language model over token ids: each step's next token
    "lm": (
        lambda: config_for("recurrent", "lstm", arch_options={"embedding_size": 4}),
        lambda g: (lambda t: {"x": t[:, :-1], "x_len": None, "y": t[:, 1:]})(
            torch.randint(FIRST_SYMBOL, TOKEN_VOCAB, (6, 7), generator=g)
        ),
        lambda out, b: nn.functional.cross_entropy(out.transpose(1, 2), b["y"]),
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_seq2seq_and_a_language_model_member_train_as_alone(family: str) -> None:
    make_config, make_batch, loss_of = FAMILIES[family]
    config = make_config()
    batches = {}
    for m in MEMBERS:
        torch.manual_seed(100 + m.seed)  # token_batch draws from the global generator
        g = torch.Generator().manual_seed(100 + m.seed)
        batches[m.seed] = [make_batch(g) for _ in range(BATCHES)]

    def forward(net: Any, b: dict) -> Any:
        y = b["y"] if family == "seq2seq" else None
        return net(b["x"], b["x_len"], y) if b["x_len"] is not None else net(b["x"], y=y)

    def build(m: Member) -> nn.Module:
        torch.manual_seed(m.seed)
        return build_model(config, TOKEN_VOCAB, TOKEN_VOCAB).double()

    alone: dict[int, list[float]] = {}
    for m in MEMBERS:
        net = build(m)
        opt = torch.optim.Adam(net.parameters(), lr=m.lr, weight_decay=m.weight_decay)
        alone[m.seed] = []
        for epoch in range(EPOCHS):
            total = 0.0
            for i in _order(m.seed, epoch):
                opt.zero_grad()
                loss = loss_of(forward(net, batches[m.seed][i]), batches[m.seed][i])
                loss.backward()
                if m.grad_clip is not None:
                    nn.utils.clip_grad_norm_(net.parameters(), m.grad_clip)
                opt.step()
                total += float(loss.detach())
            alone[m.seed].append(total / BATCHES)

    group = Members([build(m) for m in MEMBERS])
    steps = MemberSteps(
        group.stacked,
        len(MEMBERS),
        lr=[m.lr for m in MEMBERS],
        weight_decay=[m.weight_decay for m in MEMBERS],
        grad_clip=[m.grad_clip for m in MEMBERS],
    )
    fused: dict[int, list[float]] = {m.seed: [] for m in MEMBERS}
    for epoch in range(EPOCHS):
        orders = [_order(m.seed, epoch) for m in MEMBERS]
        totals = torch.zeros(len(MEMBERS), dtype=torch.float64)
        for step in range(BATCHES):
            chosen = [batches[m.seed][o[step]] for m, o in zip(MEMBERS, orders, strict=True)]
            stacked = {
                key: None if chosen[0][key] is None else torch.stack([b[key] for b in chosen])
                for key in ("x", "x_len", "y")
            }
            steps.zero_grad()
            out = forward(group, stacked)
            each = torch.stack([loss_of(_slice(out, k), b) for k, b in enumerate(chosen)])
            each.sum().backward()
            steps.step(each)
            totals += each.detach()
        for k, m in enumerate(MEMBERS):
            fused[m.seed].append(float(totals[k]) / BATCHES)
    for m in MEMBERS:
        assert fused[m.seed] == pytest.approx(alone[m.seed], rel=1e-6), (family, m)


def test_a_member_whose_gradient_alone_is_not_finite_is_frozen_too() -> None:
    weights = nn.Parameter(torch.ones(2, 3, dtype=torch.float64))
    steps = MemberSteps([weights], 2, lr=0.1)
    weights.grad = torch.tensor([[1.0, 1.0, 1.0], [1.0, float("inf"), 1.0]], dtype=torch.float64)
    steps.step(torch.tensor([0.5, 0.5], dtype=torch.float64))  # both losses finite
    assert steps.alive.tolist() == [True, False]
    assert torch.equal(weights[1].detach(), torch.ones(3, dtype=torch.float64))  # kept
    assert (weights[0].detach() < 1).all()  # the other stepped
