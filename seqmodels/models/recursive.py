"""Recursive networks, Deep Learning 10.6: composition over a tree instead of a chain.

A tree is a nested structure over the positions 0..T-1 of a sequence:

    Tree = int | tuple[Tree, Tree]

A leaf is a position; an internal node is a pair (left, right). `((0, 1), (2, 3))` composes
x(0), x(1) and x(2), x(3) first, then the two results. `tree_from_parents` builds one from a
parent index array over leaves and internal nodes; `tree_from_token_parents` from a batch's
per-token `x_parent` (`seqmodels.batch`), where a token's parent is another token. With no
tree, `balanced_tree(T)` pairs neighbours level by level, so any input reaches the root
through ceil(log2 T) compositions instead of the chain's T - 1.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from seqmodels.config import ModelConfig, TokenOptions
from seqmodels.models.architectures import Architecture, register
from seqmodels.models.layers import InputLayer

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


def tree_from_token_parents(parents: list[int]) -> Tree:
    """A binary tree over the tokens of one sequence, from each token's parent token.

    `parents[j]` is the position of the token that heads token j's group, -1 for the root
    token; a ListOps operator heads its list (`seqmodels.tasks.listops.TREE_ENCODING`). A head
    and its group compose left to right, head first, as ListOps' own parses do:
    `[MAX 2 9 ]` is `((([MAX, 2), 9), ])`, and a nested head brings its own group's tree.
    Pass the sequence's true length only: padding also holds -1.

    Raises:
        ValueError: not exactly one root, a parent out of range, or a cycle.
    """
    roots = [j for j, parent in enumerate(parents) if parent < 0]
    if len(roots) != 1:
        raise ValueError(f"a tree has one root token (parent -1), not {len(roots)}")
    group: dict[int, list[int]] = {}
    for j, parent in enumerate(parents):
        if parent >= len(parents) or parent == j:
            raise ValueError(f"token {j} has parent {parent}, not a token of this sequence")
        if parent >= 0:
            group.setdefault(parent, []).append(j)  # in position order
    built = 0

    def build(head: int) -> Tree:
        nonlocal built
        built += 1
        node: Tree = head
        for member in group.get(head, []):
            node = (node, build(member))
        return node

    tree = build(roots[0])
    if built != len(parents):
        raise ValueError("some tokens do not reach the root: the parents hold a cycle")
    return tree


@register("recursive")
class Recursive(Architecture):
    """Recursive network, Deep Learning 10.6 (fig 10.14): leaves `h = act(b + U x(t))`, and each
    node `h = act(b + W_L h_left + W_R h_right)`, one shared W for the whole tree; the root
    feeds one output `o = c + V h_root`. The composition is the cell's activation (tanh or
    relu); gated cells have no one-step composition here.

    With `embedding_size` > 0 it reads token ids. Each example can have its own tree: from
    `x_parent` (B, T), the batch's per-token parents (`tree_from_token_parents`), or, given only
    `x_len`, `balanced_tree(x_len[b])`, so padding never enters. All the batch's nodes of one
    height compose in one matmul, so a batch costs one matmul per level of its deepest tree.

    Shapes: `forward(x: (B, T, F) or (B, T), x_len: (B,) | None, y ignored, *, tree: Tree |
    None, x_parent: (B, T) | None) -> (B, O)`. A `tree` is shared by the batch; with none of
    the three, the tree is `balanced_tree(T)`. `x_parent` is its one `extra_inputs`.
    """

    options_type = TokenOptions  # cells: relu and tanh (seqmodels.config.WIRINGS)
    extra_inputs = ("x_parent",)
    book = "10.6, fig 10.14"
    summary = "tree-structured composition; a balanced tree when none is given"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        activation: str = "tanh",
        embedding_size: int = 0,
    ) -> None:
        super().__init__()
        self.inputs = InputLayer(input_size, embedding_size)
        self.leaf = nn.Linear(self.inputs.output_size, hidden_size)
        self.W = nn.Linear(2 * hidden_size, hidden_size)  # [W_L W_R] and b in one matmul
        self.head = nn.Linear(hidden_size, output_size)
        self.activation = torch.relu if activation == "relu" else torch.tanh

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Recursive:
        options: TokenOptions = config.arch()
        return cls(input_size, config.hidden_size, output_size, config.cell, options.embedding_size)

    def compose(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.activation(self.W(torch.cat([left, right], dim=-1)))

    def root(self, x: torch.Tensor, tree: Tree | None = None) -> torch.Tensor:
        """The root's state, one tree for the whole batch: (B, T, F) or (B, T) -> (B, H)."""
        leaves = self.activation(self.leaf(self.inputs(x)))  # (B, T, H)
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

    def roots(self, x: torch.Tensor, trees: list[Tree]) -> torch.Tensor:
        """The root states of one tree per example: (B, T, F) or (B, T) -> (B, H).

        Nodes are numbered leaves first (b * T + t), then internal nodes by height, so each
        height appends one block to the table of states that the next height gathers from.
        """
        leaves = self.activation(self.leaf(self.inputs(x)))  # (B, T, H)
        B, T, H = leaves.shape
        levels: list[list[tuple[int, int]]] = []  # per height: (left, right) in pending ids
        pending: list[tuple[int, int]] = []  # (height, index in its level) of each node

        def visit(tree: Tree, b: int) -> int:
            """A pending id: >= 0 a leaf's row, < 0 the internal node -1 - k."""
            if isinstance(tree, int):
                if not 0 <= tree < T:
                    raise ValueError(f"leaf {tree} is outside the sequence's {T} positions")
                return b * T + tree
            left, right = visit(tree[0], b), visit(tree[1], b)
            height = 1 + max(pending[-1 - i][0] if i < 0 else 0 for i in (left, right))
            while len(levels) < height:
                levels.append([])
            pending.append((height, len(levels[height - 1])))
            levels[height - 1].append((left, right))
            return -len(pending)

        top = [visit(tree, b) for b, tree in enumerate(trees)]
        offsets = [B * T]  # row of each level's first node in the table
        for level in levels:
            offsets.append(offsets[-1] + len(level))

        def row(node: int) -> int:
            if node >= 0:
                return node
            height, index = pending[-1 - node]
            return offsets[height - 1] + index

        # every level's children, then the roots, as one index array: one copy to the device,
        # which does not wait for the GPU (a copy per level did, twice a level)
        rows = [row(child) for level in levels for pair in level for child in pair]
        index = torch.tensor(rows + [row(n) for n in top]).to(leaves.device, non_blocking=True)
        table = leaves.reshape(B * T, H)  # (B*T + nodes so far, H)
        start = 0
        for level in levels:
            pairs = index[start : start + 2 * len(level)].view(-1, 2)  # (nodes, 2): left, right
            table = torch.cat([table, self.compose(table[pairs[:, 0]], table[pairs[:, 1]])])
            start += 2 * len(level)
        return table[index[start:]]  # (B, H)

    def forward(
        self,
        x: torch.Tensor,
        x_len: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        *,
        tree: Tree | None = None,
        x_parent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if tree is None and (x_parent is not None or x_len is not None):
            T = x.shape[1]
            # trees are Python structures: a batch keeps lengths and parents on the CPU for this
            # (seqmodels.batch.HOST_KEYS); on a GPU, reading them there would wait for it
            lengths = [T] * x.shape[0] if x_len is None else x_len.tolist()
            if x_parent is not None:
                parents = x_parent.tolist()
                trees = [
                    tree_from_token_parents(p[:n]) for p, n in zip(parents, lengths, strict=True)
                ]
                return self.head(self.roots(x, trees))
            if any(n != T for n in lengths):
                return self.head(self.roots(x, [balanced_tree(n) for n in lengths]))
        return self.head(self.root(x, tree))


__all__ = [
    "Recursive",
    "Tree",
    "balanced_tree",
    "depth",
    "tree_from_parents",
    "tree_from_token_parents",
]
