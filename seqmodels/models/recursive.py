"""Recursive networks, Deep Learning 10.6: composition over a tree instead of a chain.

A tree is a nested structure over the positions 0..T-1 of a sequence:

    Tree = int | tuple[Tree, Tree]

A leaf is a position; an internal node is a pair (left, right). `((0, 1), (2, 3))` composes
x(0), x(1) and x(2), x(3) first, then the two results. `tree_from_parents` builds one from a
parent index array. With no tree, `balanced_tree(T)` pairs neighbours level by level, so any
input reaches the root through ceil(log2 T) compositions instead of the chain's T - 1.
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import nn

from seqmodels.models.architectures import ARCHITECTURES, Architecture, ModelConfig

Tree = Union[int, tuple["Tree", "Tree"]]  # noqa: UP007  (a recursive alias needs the string)


def balanced_tree(length: int) -> Tree:
    """The tree that pairs neighbours level by level; an odd node out moves up unchanged."""
    if length < 1:
        raise ValueError("a tree needs at least one leaf")
    level: list[Tree] = list(range(length))
    while len(level) > 1:
        paired: list[Tree] = [(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = paired + level[len(paired) * 2 :]
    return level[0]


def depth(tree: Tree) -> int:
    """Compositions on the longest path from a leaf to the root; a single leaf has depth 0."""
    if isinstance(tree, int):
        return 0
    return 1 + max(depth(child) for child in tree)


def first_leaf(tree: Tree) -> int:
    return tree if isinstance(tree, int) else first_leaf(tree[0])


def tree_from_parents(parents: list[int]) -> Tree:
    """A tree from a parent index array.

    Nodes 0..T-1 are the leaves (positions), in order; nodes T.. are internal. `parents[i]` is
    node i's parent, -1 for the root. Every internal node has exactly two children; the left
    one is the one that covers the earlier positions.
    """
    children: dict[int, list[int]] = {}
    roots = []
    for node, parent in enumerate(parents):
        if parent < 0:
            roots.append(node)
        else:
            children.setdefault(parent, []).append(node)
    if len(roots) != 1:
        raise ValueError(f"a tree has one root (parent -1), not {len(roots)}")
    leaves = len(parents) - len(children)

    def build(node: int) -> Tree:
        kids = children.get(node, [])
        if not kids:
            if node >= leaves:
                raise ValueError(f"internal node {node} has no children")
            return node
        if len(kids) != 2:
            raise ValueError(f"node {node} has {len(kids)} children; a binary tree needs 2")
        left, right = sorted((build(k) for k in kids), key=first_leaf)
        return (left, right)

    return build(roots[0])


@ARCHITECTURES.register("recursive")
class Recursive(Architecture):
    """Recursive network, Deep Learning 10.6 (fig 10.14): leaves `h = act(b + U x(t))`, and each
    node `h = act(b + W_L h_left + W_R h_right)`, one shared W for the whole tree; the root
    feeds one output `o = c + V h_root`. The composition is the cell's activation (tanh or
    relu); gated cells have no one-step composition here.

    Shapes: `forward(x: (B, T, F), tree: Tree | None) -> (B, O)`; the tree is shared by the
    batch, and is `balanced_tree(T)` when None.
    """

    cells = ("relu", "tanh")

    def __init__(
        self, input_size: int, hidden_size: int, output_size: int, activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.leaf = nn.Linear(input_size, hidden_size)
        self.W = nn.Linear(2 * hidden_size, hidden_size)  # [W_L W_R] and b in one matmul
        self.head = nn.Linear(hidden_size, output_size)
        self.activation = torch.relu if activation == "relu" else torch.tanh

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Recursive:
        return cls(input_size, config.hidden_size, output_size, config.cell)

    def compose(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.activation(self.W(torch.cat([left, right], dim=-1)))

    def root(self, x: torch.Tensor, tree: Tree | None = None) -> torch.Tensor:
        """The root's state: (B, T, F) -> (B, H)."""
        leaves = self.activation(self.leaf(x))  # (B, T, H)
        if tree is not None:
            return self._compose_tree(leaves, tree)
        # the balanced tree, one level per matmul: pairs (0, 1), (2, 3), ... side by side
        level = leaves
        while level.shape[1] > 1:
            pairs = level.shape[1] // 2
            composed = self.compose(level[:, 0 : 2 * pairs : 2], level[:, 1 : 2 * pairs : 2])
            level = torch.cat([composed, level[:, 2 * pairs :]], dim=1)  # (B, ceil(n/2), H)
        return level[:, 0]

    def _compose_tree(self, leaves: torch.Tensor, tree: Tree) -> torch.Tensor:
        if isinstance(tree, int):
            return leaves[:, tree]
        left, right = tree
        return self.compose(self._compose_tree(leaves, left), self._compose_tree(leaves, right))

    def forward(self, x: torch.Tensor, tree: Tree | None = None) -> torch.Tensor:
        return self.head(self.root(x, tree))


def balanced_depth(length: int) -> int:
    """ceil(log2 T): the depth of `balanced_tree(T)`."""
    return math.ceil(math.log2(length)) if length > 1 else 0


__all__ = ["Recursive", "Tree", "balanced_depth", "balanced_tree", "depth", "tree_from_parents"]
