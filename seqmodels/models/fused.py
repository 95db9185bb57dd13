"""Fused members: K networks of one shape run as one batched model (Deep Learning 10 is about
small recurrent nets, and one small net cannot fill a device; K of them, fused, nearly can).

`Members` stacks the K networks' parameters on a leading axis (`torch.func.stack_module_state`)
and runs them with one `vmap` of the network's own `forward` (`functional_call`): every cell
keeps its one readable `forward`, and member k computes exactly what its network alone would.
Each input carries a leading K axis too: member k reads its own batch.

torch's fused `nn.RNN`, `nn.LSTM` and `nn.GRU` (the fast path, `recurrences.TorchRecurrence`)
have no batching rule under `vmap` (the GRU none, the LSTM a slow fallback, pytorch#134606,
#112459), so a member's fast recurrences run as their cell-by-cell twins
(`recurrences.Unrolled`): the same function, one step at a time, its parameters computed from
torch's, which are the ones trained (a twin's one bias is torch's two, which Adam steps apart).

`MemberSteps` (`seqmodels.optim`) takes the optimizer steps: each member's own learning rate,
weight decay and clipping, and a member whose loss turns non-finite frozen while the others go
on.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils import _pytree as pytree

from seqmodels.models.cells import CELLS
from seqmodels.models.cells.base import TorchLayerWeights
from seqmodels.models.recurrences import TorchRecurrence, Unrolled, load_torch_weights
from seqmodels.options import CELL_OPTIONS

# torch's mode -> the cell, and the options, that compute the same function cell by cell
TWINS: dict[str, tuple[str, dict[str, Any]]] = {
    "RNN_TANH": ("tanh", {}),
    "RNN_RELU": ("relu", {}),
    "LSTM": ("lstm", {"cell_input": "tanh", "peepholes": False}),
    "GRU": ("gru", {"reset": "after"}),
}


def cell_by_cell(net: nn.Module) -> nn.Module:
    """`net` with every torch fast-path recurrence replaced, in place, by its cell-by-cell twin
    holding the same weights; `net` is returned."""
    for path, fast in _fast_recurrences(net):
        parent, _, name = path.rpartition(".")
        twin = _twin(fast)
        load_torch_weights(twin, fast)
        setattr(net.get_submodule(parent) if parent else net, name, twin)
    return net


def _fast_recurrences(net: nn.Module) -> list[tuple[str, TorchRecurrence]]:
    return [(path, m) for path, m in net.named_modules() if isinstance(m, TorchRecurrence)]


def _twin(fast: TorchRecurrence) -> Unrolled:
    rnn = fast.rnn
    cell, options = TWINS[rnn.mode]
    return Unrolled(
        rnn.input_size,
        rnn.hidden_size,
        rnn.num_layers,
        CELLS.get(cell),
        CELL_OPTIONS[cell](**options),
        rnn.bidirectional,
    ).to(dtype=rnn.weight_ih_l0.dtype, device=rnn.weight_ih_l0.device)


class Members(nn.Module):
    """K networks of one shape (the same architecture, cell, options and sizes) as one module.

    `forward(x, x_len=None, y=None, **extra)`, the `Network` protocol's with a leading K axis on
    every input (x (K, B, ...), x_len (K, B)): each member reads its own batch; returns each
    member's outputs stacked, (K, B, ...) (a `DecoderOutput`'s fields each so).

    Its parameters are the members' own, stacked: one tensor (K, ...) per parameter of a member
    network, torch's fast-path ones included (two biases where the cell has one). A fast
    recurrence runs as its cell-by-cell twin, whose parameters are computed from torch's in
    each forward (`StepCell.from_torch`, differentiable): so the optimizer trains exactly the
    parameters a member trains alone, and a loss summed over the members gives each slice the
    gradient of its own member's loss. `member(k)` is member k as its own network, in its own
    layout: its checkpoint, its test and its registered model are an ordinary trial's.

    Args:
        nets: the K networks, each initialised as it would be alone (its own seed).
    Raises:
        ValueError: no network, or networks whose parameters differ in name or shape.
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("a fused group has at least one member")
        shapes = [[(n, p.shape) for n, p in net.named_parameters()] for net in nets]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("fused members must share their parameters' names and shapes")
        params, buffers = stack_module_state(list(nets))
        self.size = len(nets)
        self.names = list(params)
        self.stacked = nn.ParameterList(nn.Parameter(p.detach().clone()) for p in params.values())
        self.buffer_names = list(buffers)
        for i, buffer in enumerate(buffers.values()):
            self.register_buffer(f"stacked_buffer_{i}", buffer.clone())
        # Kept out of `modules()`, so that their own parameters are no one's: a member in its
        # own layout (what `member` fills), and its cell-by-cell twin (what `forward` runs).
        self.__dict__["_layout"] = copy.deepcopy(nets[0])
        self.__dict__["_twin"] = cell_by_cell(copy.deepcopy(nets[0]))
        self.__dict__["_fast"] = [
            (path, fast.rnn.mode, self._twin.get_submodule(path))
            for path, fast in _fast_recurrences(self._layout)
        ]

    def _buffers_now(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"stacked_buffer_{i}") for i, n in enumerate(self.buffer_names)}

    def _twin_params(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One member's parameters in its twin's layout, computed from its own."""
        found = dict(params)
        for path, mode, twin in self._fast:
            for layer, directions in enumerate(twin.layers):
                for direction, cell in enumerate(directions):
                    suffix = f"l{layer}" + ("_reverse" if direction else "")
                    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                    torch_names = [f"{path}.rnn.{n}_{suffix}" for n in names]
                    weights = TorchLayerWeights(*(found.pop(n) for n in torch_names))
                    for name, value in cell.from_torch(weights, mode).items():
                        found[f"{path}.layers.{layer}.{direction}.{name}"] = value
        return found

    def forward(
        self,
        x: torch.Tensor,
        x_len: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        **extra: torch.Tensor,
    ) -> Any:
        """What each member's `forward` returns, stacked on a leading K axis; every input,
        `extra` ones too (`Network.extra_inputs`), has that axis: member k reads slice k."""
        params = dict(zip(self.names, self.stacked, strict=True))
        keys = list(extra)

        # vmap returns tensors only: the output's structure, and where it holds None (a
        # `DecoderOutput`'s unused fields), are kept aside and put back
        shape: list[tuple[pytree.TreeSpec, list[bool]]] = []

        def one(p: dict, b: dict, x: Any, x_len: Any, y: Any, *values: Any) -> Any:
            kwargs = dict(zip(keys, values, strict=True))
            out = functional_call(self._twin, (self._twin_params(p), b), (x, x_len, y), kwargs)
            leaves, spec = pytree.tree_flatten(out)
            shape[:] = [(spec, [leaf is None for leaf in leaves])]
            return tuple(leaf for leaf in leaves if leaf is not None)

        inputs = (x, x_len, y, *extra.values())
        dims = (0, 0, *(None if value is None else 0 for value in inputs))
        tensors = iter(vmap(one, in_dims=dims)(params, self._buffers_now(), *inputs))
        spec, nones = shape[0]
        return pytree.tree_unflatten([None if n else next(tensors) for n in nones], spec)

    def member(self, k: int) -> nn.Module:
        """Member k as a network of its own, in its own layout, holding its current weights."""
        net = copy.deepcopy(self._layout)
        state = {n: p[k].detach().clone() for n, p in zip(self.names, self.stacked, strict=True)}
        state |= {n: b[k].clone() for n, b in self._buffers_now().items()}
        net.load_state_dict(state)
        return net


__all__ = ["TWINS", "Members", "cell_by_cell"]
