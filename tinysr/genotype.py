"""The TPSR cell description (a genotype) and the module it builds.

A genotype is a tuple of nodes; node ``i`` applies an operation from
:data:`tinysr.ops.OPS` (always followed by a PReLU) to one input: ``-1`` for the
cell input or the index ``j < i`` of an earlier node. The outputs of the leaf
nodes (those no other node consumes) are summed to form the cell output. This
covers the paper's whole generator search space S_G = Op x Z_1 x ... x Op x Z_10.

Text form, used on command lines and in checkpoints: nodes separated by spaces,
each ``OP@SRC`` with ``SRC`` either ``in`` or the node index, e.g. the published
TPSR cell is :data:`TPSR_GENOTYPE`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from .ops import OP_NAMES, OPS, get_op, prelu_macs, sum_macs

CELL_INPUT = -1


@dataclass(frozen=True)
class Node:
    op: str
    src: int  # CELL_INPUT or an earlier node index

    def __str__(self) -> str:
        return f"{self.op}@{'in' if self.src == CELL_INPUT else self.src}"


@dataclass(frozen=True)
class Genotype:
    nodes: tuple[Node, ...]

    def __post_init__(self):
        if not self.nodes:
            raise ValueError("a genotype needs at least one node")
        for i, node in enumerate(self.nodes):
            get_op(node.op)
            if not (node.src == CELL_INPUT or 0 <= node.src < i):
                raise ValueError(f"node {i} ({node}) takes input {node.src}: must be 'in' or an earlier node 0..{i - 1}")

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        nodes = []
        for i, item in enumerate(text.replace(",", " ").split()):
            try:
                op, src = item.split("@")
                nodes.append(Node(op, CELL_INPUT if src == "in" else int(src)))
            except ValueError:
                raise ValueError(f"cannot read node {i} {item!r} of genotype {text!r}: expected OP@SRC, "
                                 "SRC = 'in' or an earlier node index") from None
        return cls(tuple(nodes))

    def __str__(self) -> str:
        return " ".join(str(n) for n in self.nodes)

    @property
    def leaves(self) -> tuple[int, ...]:
        used = {n.src for n in self.nodes}
        return tuple(i for i in range(len(self.nodes)) if i not in used)

    def mult_adds(self, n: int, h: int, w: int) -> float:
        """Mult-Adds of the cell (operations, their PReLUs and the leaf sum) on an h x w map."""
        total = sum(OPS[node.op].macs(n, h, w) + prelu_macs(n, h, w) for node in self.nodes)
        return total + (len(self.leaves) - 1) * sum_macs(n, h, w)

    def latency_keys(self, n: int, h: int, w: int) -> list[str]:
        return [OPS[node.op].latency_key(n, h, w) for node in self.nodes]

    @classmethod
    def random(cls, num_nodes: int = 10, rng: random.Random | None = None,
               ops: tuple[str, ...] = OP_NAMES) -> "Genotype":
        """Sample uniformly from the search space: an op and an input for every node."""
        rng = rng or random.Random()
        return cls(tuple(Node(rng.choice(ops), rng.randrange(-1, i)) for i in range(num_nodes)))


TPSR_GENOTYPE = Genotype.parse(
    "dsep5@in conv7@0 conv7@1 conv3@2 conv3@2 conv5@4 dsep3@5 conv5@3 conv3@7 conv7@in")


class CellNode(nn.Module):
    def __init__(self, op: str, n: int):
        super().__init__()
        self.op = get_op(op).build(n)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.op(x))


class Cell(nn.Module):
    """The module a genotype describes: n channels in, n channels out, same resolution."""

    def __init__(self, genotype: Genotype, n: int):
        super().__init__()
        self.genotype = genotype
        self.nodes = nn.ModuleList(CellNode(node.op, n) for node in genotype.nodes)
        self._srcs = [node.src for node in genotype.nodes]
        self._leaves = list(genotype.leaves)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for node, src in zip(self.nodes, self._srcs):
            outs.append(node(x if src == CELL_INPUT else outs[src]))
        y = outs[self._leaves[0]]
        for i in self._leaves[1:]:
            y = y + outs[i]
        return y
