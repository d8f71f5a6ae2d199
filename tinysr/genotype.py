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

import dataclasses
import random
from dataclasses import dataclass

import torch
from torch import nn

from .ops import LINEAR_EXPAND, OP_NAMES, OPS, ConvOp, get_op, prelu_macs, sum_macs

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
    """One node: its operation on n channels, then PReLU. ``linear``: a full convolution (``conv1/3/5/7``)
    trains as a collapsible linear block (:class:`~tinysr.ops.ConvOp` with ``expand``); the other
    operations are unchanged."""

    def __init__(self, op: str, n: int, linear: bool = False):
        super().__init__()
        spec = get_op(op)
        self.op = ConvOp(n, spec.kernel, expand=LINEAR_EXPAND) if linear and spec.kind == "conv" else spec.build(n)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.op(x))


class Cell(nn.Module):
    """The module a genotype describes: n channels in, n channels out, same resolution."""

    def __init__(self, genotype: Genotype, n: int, linear: bool = False):
        super().__init__()
        self.genotype = genotype
        self.nodes = nn.ModuleList(CellNode(node.op, n, linear) for node in genotype.nodes)
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


# ------------------------------------------------------------------ the skeleton around the cell
#: Skeleton options of :class:`tinysr.models.tpsr.CellSR` (the paper's skeleton: 16 features, one
#: cell, two x2 sub-pixel blocks, no output clip).
DEFAULT_WIDTH, DEFAULT_DEPTH, DEFAULT_UPSAMPLER = 16, 1, "tpsr"
UPSAMPLERS = ("tpsr", "anchor")


@dataclass(frozen=True)
class NetworkGenotype:
    """A cell and the skeleton around it: width ``n_feats``, depth ``n_cells`` (the cell applied that many
    times in sequence, each with its own weights), ``upsampler`` (``"tpsr"``: mean shift and two x2
    sub-pixel blocks; ``"anchor"``: one conv to 3 * scale^2 plus the input-repeat anchor before one
    depth-to-space), ``clip`` (output clipped to [0, 1]) and ``linear`` (every full convolution, the
    cell's ``conv*`` nodes and the skeleton's head and tail, trained as a collapsible linear block as in
    SESR and collapsed for export: the deployed network is the same without ``linear``) and ``skip`` (a long
    residual as in SESR: the head's output added to the last cell's activated output, before the tail or
    the up-sampling; one n-channel ADD, no weights).

    Text form: the skeleton, ``|``, the cell, e.g. ``w32 d2 anchor clip | conv3@in dsep5@0``. The text
    always names width, depth and upsampler (``clip``, ``linear``, ``skip`` only when set); :meth:`parse` reads the tokens in
    any order, a missing one taking the paper's value, and a text without ``|`` as the cell alone in
    the paper's skeleton. A bare cell's text (:class:`Genotype`) never holds ``|``, so every existing
    genotype text keeps its meaning.
    """

    cell: Genotype
    n_feats: int = DEFAULT_WIDTH
    n_cells: int = DEFAULT_DEPTH
    upsampler: str = DEFAULT_UPSAMPLER
    clip: bool = False
    linear: bool = False
    skip: bool = False

    def __post_init__(self):
        if isinstance(self.cell, str):
            object.__setattr__(self, "cell", Genotype.parse(self.cell))
        object.__setattr__(self, "n_feats", int(self.n_feats))
        object.__setattr__(self, "n_cells", int(self.n_cells))
        object.__setattr__(self, "clip", bool(self.clip))
        object.__setattr__(self, "linear", bool(self.linear))
        object.__setattr__(self, "skip", bool(self.skip))
        if self.n_feats < 1:
            raise ValueError(f"the width must be at least 1, got {self.n_feats}")
        if self.n_cells < 1:
            raise ValueError(f"the depth (cells in sequence) must be at least 1, got {self.n_cells}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {', '.join(UPSAMPLERS)}, got {self.upsampler!r}")

    @property
    def skeleton(self) -> dict:
        """The :class:`~tinysr.models.tpsr.CellSR` keyword arguments of the skeleton."""
        return {"n_feats": self.n_feats, "n_cells": self.n_cells, "upsampler": self.upsampler, "clip": self.clip,
                "linear": self.linear, "skip": self.skip}

    @property
    def is_default(self) -> bool:
        """The paper's skeleton (16 features, one cell, TPSR up-sampling, no clip)."""
        return (self.n_feats, self.n_cells, self.upsampler, self.clip, self.linear, self.skip) == (
            DEFAULT_WIDTH, DEFAULT_DEPTH, DEFAULT_UPSAMPLER, False, False, False)

    @property
    def genotype_text(self) -> str:
        """The text that rebuilds this network (``tinysr train --genotype``): the cell's for the paper's
        skeleton (as every existing genotype), else the network genotype's."""
        return str(self.cell) if self.is_default else str(self)

    def deployed(self) -> "NetworkGenotype":
        """The network as exported: a ``linear`` network's collapsed form (the same without ``linear``)."""
        return dataclasses.replace(self, linear=False)

    # the cell's interface, so code that reads a genotype's nodes works on a network too
    @property
    def nodes(self) -> tuple[Node, ...]:
        return self.cell.nodes

    @property
    def leaves(self) -> tuple[int, ...]:
        return self.cell.leaves

    def prefix(self) -> str:
        return (f"w{self.n_feats} d{self.n_cells} {self.upsampler}" + (" clip" if self.clip else "")
                + (" linear" if self.linear else "") + (" skip" if self.skip else ""))

    def __str__(self) -> str:
        return f"{self.prefix()} | {self.cell}"

    @classmethod
    def parse(cls, text: str) -> "NetworkGenotype":
        if "|" not in text:
            return cls(Genotype.parse(text))
        head, _, cell = text.partition("|")
        kw: dict = {}
        for tok in head.split():
            if tok[0] == "w" and tok[1:].isdigit():
                key, value = "n_feats", int(tok[1:])
            elif tok[0] == "d" and tok[1:].isdigit():
                key, value = "n_cells", int(tok[1:])
            elif tok in UPSAMPLERS:
                key, value = "upsampler", tok
            elif tok in ("clip", "linear", "skip"):
                key, value = tok, True
            else:
                raise ValueError(f"cannot read {tok!r} in the skeleton {head.strip()!r} of {text!r}: expected "
                                 f"wN (width), dN (depth), {' or '.join(UPSAMPLERS)}, clip, linear, skip")
            if key in kw:
                raise ValueError(f"the skeleton {head.strip()!r} of {text!r} sets {key} twice")
            kw[key] = value
        return cls(Genotype.parse(cell), **kw)


def parse_genotype(text: str) -> "Genotype | NetworkGenotype":
    """A cell's text (``OP@SRC ...``) as a :class:`Genotype`, a text with a skeleton (``w32 d2 anchor
    clip | OP@SRC ...``) as a :class:`NetworkGenotype`."""
    return NetworkGenotype.parse(text) if "|" in text else Genotype.parse(text)


def as_network(genotype, n_feats: int | None = None) -> NetworkGenotype:
    """``genotype`` (a cell, a network or either's text) as a :class:`NetworkGenotype`; a bare cell goes
    into the paper's skeleton at width ``n_feats`` (default 16). A network keeps its own width."""
    if isinstance(genotype, str):
        genotype = parse_genotype(genotype)
    if isinstance(genotype, NetworkGenotype):
        return genotype
    return NetworkGenotype(genotype, DEFAULT_WIDTH if n_feats is None else int(n_feats))
