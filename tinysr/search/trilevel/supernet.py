"""The trilevel supernet (Wu et al. 2021, TrilevelNAS): network, cell and kernel levels in one
differentiable network, its expected cost, and the derivation of a discrete network.

**Network level.** A tree over the path of residual-in-residual cells and upsampling steps. A
tree node is a feature map, named by its *state*: how many cells it has passed at each resolution
level so far. From a node at level ``l`` with ``c`` cells there, the tree continues with one more
cell (when ``c < cells[l]``) or with an upsampling step to level ``l + 1``; an upsampling step out
of the last level ends in a candidate *output*. Paths do not merge: every edge (cell, upsampling
step, output tail) has its own weights. Backbone ``A`` upsamples by x2 steps (nearest x2 + conv),
so it has log2(scale) levels; backbone ``B`` has one level (the LR size) and one sub-pixel layer
to the output. The supernet's output is ``sum_o w_o * output_o`` with ``w = sparsestmax(beta,
r_network)``; the *ordering penalty* pairs every output with its parent (one cell fewer at the
deepest level that has cells), so that along every path the weights are non-increasing and the
zeros fall at the deep tail, which is pruned (the sorted sparsestmax).

**Cell level.** Every cell is ``x + node_k(... node_1(x))``; every node mixes the candidate
operations with ``a = sparsestmax(alpha, r_cell)`` (``r_cell`` annealed towards the vertex
distance, so ``a`` ends near one-hot); operations with zero weight are not computed.

**Kernel level.** The width-searched operations (``res3``, ``mb3``: :data:`tinysr.models.trilevel.WIDTH_OPS`)
are superkernels at their widest hidden width; the hidden channels are masked by ``sum_j g_j
mask_j`` with ``g = gumbel_softmax(gamma, tau)`` over the width ratios and ``mask_j`` keeping the
first ``hidden_width(op, n, ratio_j)`` channels (one width choice per node, shared by its ops).

**Expected cost.** :meth:`Supernet.expected_cost` = ``sum_o w_o * (cost of the parts on o's
path)`` + the head, where a node costs ``sum_op a_op * sum_j softmax(gamma)_j * cost(op, width_j)``
and every part's cost is a :class:`CostModel` lookup by the part's latency-table key: the measured
milliseconds of a device profile (``tinysr lut build --space trilevel``), or the part's Mult-Adds.
Differentiable in every architecture parameter (FBNet's expected latency, on the TrilevelNAS space).

**Derived cost.** The expected cost prices the weighted mixture, which the shallow outputs dominate
early, while derivation returns the deepest surviving output: a budget on the expected cost need
never bind on the returned network. :meth:`Supernet.derived_cost` is the returned network's cost with
the expected cost's gradient (straight-through); the search's efficiency term uses it by default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tinysr.genotype import CellNode
from tinysr.models.trilevel import (SKIP, UP, WIDTH_OPS, TriNode, TrilevelGenotype, cell_add_part, head_part,
                                    hidden_width, node_part, tail_a_part, tail_b_part, up_part)
from tinysr.models.blocks import num_x2_steps
from tinysr.models.tpsr import make_head, make_sub_mean
from tinysr.models.trilevel import MBBlock, NearestUp, ResBlock, TailA, TailB, check_op

from tinysr.search.trilevel.sparsestmax import order_penalty, sparsestmax, vertex_distance


@dataclass(frozen=True)
class SpaceSpec:
    """What a supernet searches: backbone, scale, width n, the most cells per resolution level,
    nodes per cell, candidate operations and hidden-width ratios."""

    backbone: str
    scale: int
    n_feats: int
    cells: tuple  # most cells at each level (A: log2(scale) levels; B: one)
    nodes: int
    ops: tuple
    ratios: tuple

    def __post_init__(self):
        if self.backbone not in ("A", "B"):
            raise ValueError(f"backbone must be A or B, got {self.backbone!r}")
        levels = num_x2_steps(self.scale) if self.backbone == "A" else 1
        if len(self.cells) != levels:
            raise ValueError(f"cells: backbone {self.backbone} at x{self.scale} has {levels} resolution level(s) "
                             f"(give one maximum per level), got {list(self.cells)}")
        if any(c < 0 for c in self.cells) or sum(self.cells) < 1:
            raise ValueError(f"cells must be >= 0 with at least one cell in all, got {list(self.cells)}")
        if self.nodes < 1 or self.n_feats < 1:
            raise ValueError("nodes and n_feats must be >= 1")
        if not self.ops:
            raise ValueError("ops: at least one candidate operation")
        for op in self.ops:
            check_op(op)
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops: each operation once, got {list(self.ops)}")
        if not self.ratios or any(not (r > 0) for r in self.ratios) or list(self.ratios) != sorted(set(self.ratios)):
            raise ValueError(f"width ratios must be positive and increasing, got {list(self.ratios)}")

    @property
    def levels(self) -> int:
        return len(self.cells)

    def widths(self, op: str) -> list[int]:
        return [hidden_width(op, self.n_feats, r) for r in self.ratios]


def _name(state: tuple) -> str:
    return "s" + "_".join(map(str, state))


@dataclass(frozen=True)
class Edge:
    kind: str  # cell | up | tail
    state: tuple  # the tree node the edge leads to (tail: the output's state)
    level: int  # resolution level of the edge's input


class MixedNode(nn.Module):
    """One cell node: every candidate operation, width-searched ones as masked superkernels."""

    def __init__(self, spec: SpaceSpec):
        super().__init__()
        n = spec.n_feats
        self.ops = list(spec.ops)
        self.mods = nn.ModuleDict()
        self.masks = {}
        for op in self.ops:
            if op == SKIP:
                continue
            if op in WIDTH_OPS:
                widths = spec.widths(op)
                self.mods[op] = (ResBlock if op == "res3" else MBBlock)(n, max(widths))  # the superkernel
                m = torch.zeros(len(widths), max(widths))
                for j, c in enumerate(widths):
                    m[j, :c] = 1.0
                self.register_buffer(f"mask_{op}", m, persistent=False)
            else:
                self.mods[op] = CellNode(op, n)

    def forward(self, x, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        out = 0.0
        zero = (a.detach() == 0).tolist()
        for i, op in enumerate(self.ops):
            if zero[i]:  # sparsestmax zero: no contribution and no gradient
                continue
            if op == SKIP:
                y = x
            elif op in WIDTH_OPS:
                mask = (g @ getattr(self, f"mask_{op}")).view(1, -1, 1, 1)
                y = self.mods[op](x, mask)
            else:
                y = self.mods[op](x)
            out = out + a[i] * y
        return out


class SuperCell(nn.Module):
    def __init__(self, spec: SpaceSpec):
        super().__init__()
        self.nodes = nn.ModuleList(MixedNode(spec) for _ in range(spec.nodes))

    def forward(self, x, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        y = x
        for i, node in enumerate(self.nodes):
            y = node(y, a[i], g[i])
        return x + y


def tree(spec: SpaceSpec) -> tuple[list[tuple], dict[tuple, list[Edge]]]:
    """``(outputs, paths)``: the candidate outputs' states, shallowest first, and each one's edges from the head."""
    outputs, paths = [], {}

    def walk(state: tuple, edges: list[Edge]):
        level = len(state) - 1
        if state[-1] < spec.cells[level]:
            nxt = state[:-1] + (state[-1] + 1,)
            walk(nxt, edges + [Edge("cell", nxt, level)])
        if level + 1 < spec.levels:
            nxt = state + (0,)
            walk(nxt, edges + [Edge("up", nxt, level)])
        else:
            outputs.append(state)
            paths[state] = edges + [Edge("tail", state, level)]

    walk((0,), [])
    outputs.sort(key=lambda s: (sum(s), s))
    return outputs, paths


def parent_pairs(outputs: list[tuple]) -> list[tuple[int, int]]:
    """``(parent, child)`` index pairs: the parent has one cell fewer at the deepest level that has cells."""
    index = {s: i for i, s in enumerate(outputs)}
    pairs = []
    for s, i in index.items():
        nz = [lvl for lvl, c in enumerate(s) if c > 0]
        if nz:
            p = list(s)
            p[nz[-1]] -= 1
            pairs.append((index[tuple(p)], i))
    return pairs


class Supernet(nn.Module):
    """The three-level supernet of a :class:`SpaceSpec`; architecture parameters in :attr:`arch`."""

    def __init__(self, spec: SpaceSpec):
        super().__init__()
        self.spec = spec
        n = spec.n_feats
        self.outputs, self.paths = tree(spec)
        self.pairs = parent_pairs(self.outputs)
        self.sub_mean, self.head = make_sub_mean(), make_head(n)
        self.cells, self.ups, self.tails = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        self.cell_states: list[tuple] = []
        for out in self.outputs:
            for e in self.paths[out]:
                key = _name(e.state)
                if e.kind == "cell" and key not in self.cells:
                    self.cells[key] = SuperCell(spec)
                    self.cell_states.append(e.state)
                elif e.kind == "up" and key not in self.ups:
                    self.ups[key] = NearestUp(n) if spec.backbone == "A" else nn.Identity()
                elif e.kind == "tail":
                    # A: the last x2 step and the conv to RGB; B: the one sub-pixel layer
                    self.tails[key] = (nn.Sequential(NearestUp(n), TailA(n)) if spec.backbone == "A"
                                       else TailB(n, spec.scale))
        self.cell_index = {s: i for i, s in enumerate(self.cell_states)}
        k = len(self.cell_states)
        self.arch = nn.ParameterDict({
            "beta": nn.Parameter(1e-3 * torch.randn(len(self.outputs))),  # off the centre, where sparsestmax has no direction
            "alpha": nn.Parameter(1e-3 * torch.randn(k, spec.nodes, len(spec.ops))),
            "gamma": nn.Parameter(torch.zeros(k, spec.nodes, len(spec.ratios))),
        })
        self.r_network, self.r_cell, self.tau = 0.0, 0.0, 1.0

    # -------------------------------------------------------------- architecture weights
    def weight_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("arch.")]

    def output_weights(self) -> torch.Tensor:
        beta = self.arch["beta"]
        return sparsestmax(beta, self.r_network * vertex_distance(beta.numel()))

    def op_weights(self) -> torch.Tensor:
        alpha = self.arch["alpha"]
        return sparsestmax(alpha, self.r_cell * vertex_distance(alpha.shape[-1]))

    def width_probs(self) -> torch.Tensor:
        return F.softmax(self.arch["gamma"], dim=-1)

    def width_sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gumbel-softmax over the width ratios (soft, temperature :attr:`tau`); noise from ``generator``."""
        gamma = self.arch["gamma"]
        u = torch.rand(gamma.shape, generator=generator).clamp(1e-9, 1 - 1e-9)
        return F.softmax((gamma - torch.log(-torch.log(u))) / self.tau, dim=-1)

    def order_penalty(self, w: torch.Tensor | None = None) -> torch.Tensor:
        return order_penalty(self.output_weights() if w is None else w, self.pairs)

    # ---------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        w = self.output_weights()
        a = self.op_weights()
        g = self.width_sample(generator) if self.training else self.width_probs()
        feats = {(0,): self.head(self.sub_mean(x))}
        y = 0.0
        zero = (w.detach() == 0).tolist()
        for i, out in enumerate(self.outputs):
            if zero[i]:
                continue
            prev = (0,)
            for e in self.paths[out]:
                key = _name(e.state)
                if e.kind == "tail":
                    y = y + w[i] * self.tails[key](feats[prev])
                    break
                if e.state not in feats:
                    if e.kind == "cell":
                        c = self.cell_index[e.state]
                        feats[e.state] = self.cells[key](feats[prev], a[c], g[c])
                    else:
                        feats[e.state] = self.ups[key](feats[prev])
                prev = e.state
        return y

    # ------------------------------------------------------------------------ expected cost
    def expected_cost(self, cost: "CostModel") -> torch.Tensor:
        """The cost of the network under the architecture weights (differentiable; see the module doc)."""
        w, a, p = self.output_weights(), self.op_weights(), self.width_probs()
        total = cost.head()
        for i, out in enumerate(self.outputs):
            path = 0.0
            for e in self.paths[out]:
                if e.kind == "cell":
                    c = self.cell_index[e.state]
                    path = path + cost.cell_add(e.level)
                    for j in range(self.spec.nodes):
                        path = path + sum(a[c, j, k] * cost.node(op, e.level, p[c, j])
                                          for k, op in enumerate(self.spec.ops))
                elif e.kind == "up":
                    path = path + cost.up(e.level)
                else:
                    path = path + cost.tail(e.level)
            total = total + w[i] * path
        return total

    def derived_cost(self, cost: "CostModel", expected: torch.Tensor | None = None) -> torch.Tensor:
        """The cost of the network :meth:`derive` returns now, with the gradient of :meth:`expected_cost`
        (straight-through): its value is the derived network's priced parts (the deepest surviving
        output's path, each node at its largest-weight operation and most probable width), so that a
        budget on it binds exactly while the network the search would return is over the budget;
        its gradient moves the output, operation and width weights towards cheaper choices as the
        expected cost does (the derived network itself is not differentiable)."""
        if expected is None:
            expected = self.expected_cost(cost)
        genotype, _ = self.derive()
        value = cost.of_genotype(genotype)
        return expected + (value - expected.detach())

    # ----------------------------------------------------------------------------- derive
    def derive(self) -> tuple[TrilevelGenotype, dict]:
        """The discrete network: prune the outputs of zero weight (with the ordering penalty at zero,
        exactly the tail of every path), take the surviving output with the most cells (ties: the
        larger weight), so the network keeps every cell the weighted sum used; on its path every
        node's largest-weight operation at its most probable width. Also returns what the choice was
        made from (``sorted``: whether the output weights were non-increasing along every path)."""
        with torch.no_grad():
            w = self.output_weights()
            a, p = self.op_weights(), self.width_probs()
            penalty = float(self.order_penalty(w))
        kept = [i for i in range(len(self.outputs)) if float(w[i]) > 0.0]
        best = max(kept, key=lambda i: (sum(self.outputs[i]), float(w[i])))
        out = self.outputs[best]
        steps = []
        for e in self.paths[out]:
            if e.kind == "cell":
                c = self.cell_index[e.state]
                nodes = []
                for j in range(self.spec.nodes):
                    op = self.spec.ops[int(torch.argmax(a[c, j]))]
                    hidden = self.spec.widths(op)[int(torch.argmax(p[c, j]))] if op in WIDTH_OPS else None
                    nodes.append(TriNode(op, hidden))
                steps.append(tuple(nodes))
            else:  # an x2 step, or the step to the output
                steps.append(UP)
        genotype = TrilevelGenotype(self.spec.backbone, tuple(steps))
        return genotype, {"output": list(out), "output_weight": float(w[best]),
                          "kept_outputs": [list(self.outputs[i]) for i in kept], "sorted": penalty <= 1e-6}

    def arch_snapshot(self) -> dict:
        """The architecture weights as plain lists (for the run's history and plots)."""
        with torch.no_grad():
            return {"outputs": [list(s) for s in self.outputs], "w": self.output_weights().tolist(),
                    "ops": list(self.spec.ops), "ratios": list(self.spec.ratios), "n_feats": self.spec.n_feats,
                    "cells": [list(s) for s in self.cell_states], "a": self.op_weights().tolist(),
                    "p": self.width_probs().tolist(), "r_network": self.r_network, "r_cell": self.r_cell,
                    "tau": self.tau}


class CostModel:
    """Cost of every part the supernet can contain, by latency-table key: ``table`` (a
    :class:`~tinysr.profile.lut.TrilevelTable`: measured ms) or, without one, the parts' Mult-Adds (in G).
    Part sizes are those of an ``input_size`` LR input (the table's, when given)."""

    def __init__(self, spec: SpaceSpec, input_size=(180, 320), table=None):
        self.spec, self.table = spec, table
        if table is not None:
            table.check(input_size=None, scale=spec.scale, n_feats=spec.n_feats)
            input_size = (table.h, table.w)
        self.unit = "ms" if table is not None else "G Mult-Adds"
        self.h, self.w = (int(v) for v in input_size)
        n = spec.n_feats
        self._node: dict[tuple, torch.Tensor] = {}
        self._fixed: dict[tuple, float] = {}
        for level in range(spec.levels):
            h, w = self.h << level, self.w << level
            for op in spec.ops:
                if op == SKIP:
                    vals = [0.0]
                elif op in WIDTH_OPS:
                    vals = [self._of(node_part(TriNode(op, c), n, h, w)) for c in spec.widths(op)]
                else:
                    vals = [self._of(node_part(TriNode(op), n, h, w))]
                self._node[(op, level)] = torch.tensor(vals)
            self._fixed[("add", level)] = self._of(cell_add_part(n, h, w))
            if spec.backbone == "A":
                self._fixed[("up", level)] = self._of(up_part(n, h, w))
        hs, ws = self.h << spec.levels, self.w << spec.levels
        last = spec.levels - 1
        self._fixed[("tail", last)] = (self._fixed[("up", last)] + self._of(tail_a_part(n, hs, ws))
                                       if spec.backbone == "A" else self._of(tail_b_part(n, spec.scale, self.h, self.w)))
        self._head = self._of(head_part(n, self.h, self.w)) + (table.overhead_ms if table is not None else 0.0)

    def _of(self, part) -> float:
        if self.table is None:
            return part.mult_adds / 1e9
        return self.table.entry(part.key)

    def head(self) -> float:
        return self._head

    def node(self, op: str, level: int, probs: torch.Tensor) -> torch.Tensor:
        vals = self._node[(op, level)]
        return vals[0] if vals.numel() == 1 else (probs * vals).sum()

    def cell_add(self, level: int) -> float:
        return self._fixed[("add", level)]

    def up(self, level: int) -> float:
        return self._fixed.get(("up", level), 0.0)

    def tail(self, level: int) -> float:
        return self._fixed[("tail", level)]

    def of_genotype(self, genotype: TrilevelGenotype) -> float:
        """The cost of a derived network, summed over its parts (the same lookups)."""
        from tinysr.models.trilevel import network_parts

        total = sum(self._of(p) for p in network_parts(genotype, self.spec.n_feats, (self.h, self.w),
                                                        self.spec.scale))
        return total + (self.table.overhead_ms if self.table is not None else 0.0)


def anneal(start: float, end: float, frac: float, kind: str = "linear") -> float:
    """``start`` -> ``end`` at ``frac`` in [0, 1]: linearly, or geometrically (``exp``, both > 0)."""
    frac = min(max(frac, 0.0), 1.0)
    if kind == "exp":
        return start * math.exp(math.log(end / start) * frac)
    return start + (end - start) * frac
