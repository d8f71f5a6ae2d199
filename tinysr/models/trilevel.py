"""Networks of the trilevel search space (Wu et al., "Trilevel Neural Architecture Search for
Efficient Single Image Super-Resolution", 2021): a path of residual-in-residual cells and
upsampling steps, cells of chosen operations, operations of chosen widths.

A :class:`TrilevelGenotype` is the derived discrete architecture (what ``tinysr search trilevel``
writes; every command that takes a genotype accepts its text):

``A res3:8+conv3 mb3:48 up res3:16 up``
    Backbone ``A`` or ``B`` first, then the path from the LR head to the output, in order: a cell
    (its nodes joined by ``+``) or ``up``.
    * ``A``: every ``up`` is an x2 step (nearest-neighbour x2 + 3x3 conv + PReLU); the path ends
      with ``up`` and has log2(scale) of them; a 3x3 conv to RGB follows the last.
    * ``B``: post-upsampling: all cells at the LR size, then the one final ``up``, a single
      sub-pixel layer (3x3 conv to 3 * scale^2 channels + PixelShuffle(scale)).
    A cell ``x -> x + node_k(... node_1(x))`` (the outer residual) chains its nodes; a node is
    ``OP`` or ``OP:HIDDEN``:
    * ``skip``: identity;
    * ``res3:H``: residual block, 3x3 conv n -> H, PReLU, 3x3 conv H -> n, plus the input;
    * ``mb3:H``: depthwise-separable inverted residual (MobileNetV2), 1x1 n -> H, PReLU, 3x3
      depthwise, PReLU, 1x1 H -> n, plus the input;
    * any operation of the TPSR set (:data:`tinysr.ops.OPS`: ``conv3``, ``dsep5``, ...) followed
      by its PReLU, exactly the TPSR cell's node (:class:`tinysr.genotype.CellNode`).
    ``H`` (hidden channels) is what the kernel level searches; only ``res3`` and ``mb3`` have one.

The network is mean shift -> 3x3 head conv (3 -> n) -> the path -> tail -> inverse mean shift.
:func:`network_parts` lists its parts (latency-table key, module factory, input size, Mult-Adds)
once, for the latency tables (:mod:`tinysr.profile.lut`), the closed-form :func:`mult_adds` and the
search's expected cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..genotype import CellNode
from ..ops import OPS, conv_macs, prelu_macs, sum_macs
from .blocks import MeanShift, num_x2_steps
from .registry import register_family, register_model
from . import tpsr
from .tpsr import OUT_CHANNELS, make_add_mean, make_head, make_sub_mean

BACKBONES = ("A", "B")
SKIP = "skip"
#: Operations with a searched hidden width, and the hidden width of ratio 1 in units of n.
WIDTH_OPS = {"res3": 1, "mb3": 2}
UP = "up"


def node_ops() -> tuple[str, ...]:
    """Every operation a trilevel cell node may take."""
    return (SKIP, *WIDTH_OPS, *OPS)


def check_op(op: str) -> None:
    if op not in node_ops():
        raise ValueError(f"unknown trilevel operation {op!r}; known: {', '.join(node_ops())}")


def hidden_width(op: str, n: int, ratio: float) -> int:
    """Hidden channels of a width-searched ``op`` at ``ratio`` of its full width (n x expansion)."""
    return max(1, int(round(ratio * n * WIDTH_OPS[op])))


# ------------------------------------------------------------------------------ genotype
@dataclass(frozen=True)
class TriNode:
    op: str
    hidden: int | None = None

    def __post_init__(self):
        check_op(self.op)
        if self.op in WIDTH_OPS and (self.hidden is None or self.hidden < 1):
            raise ValueError(f"{self.op} needs its hidden width: {self.op}:H with H >= 1")
        if self.op not in WIDTH_OPS and self.hidden is not None:
            raise ValueError(f"{self.op} has no hidden width (only {', '.join(WIDTH_OPS)} do)")

    def __str__(self) -> str:
        return self.op if self.hidden is None else f"{self.op}:{self.hidden}"


@dataclass(frozen=True)
class TrilevelGenotype:
    """A derived trilevel network: backbone and path (cells = tuples of nodes, or :data:`UP`)."""

    backbone: str
    path: tuple  # of tuple[TriNode, ...] | "up"

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if not self.path or self.path[-1] != UP:
            raise ValueError(f"a trilevel path ends with '{UP}' (the step to the output size)")
        ups = sum(1 for s in self.path if s == UP)
        if self.backbone == "B" and ups != 1:
            raise ValueError(f"backbone B upsamples once, at the end (one sub-pixel layer); got {ups} '{UP}' steps")
        if any(s != UP and not s for s in self.path):
            raise ValueError("a trilevel cell needs at least one node")

    @classmethod
    def parse(cls, text: str) -> "TrilevelGenotype":
        tokens = text.replace(",", " ").split()
        if not tokens:
            raise ValueError("empty trilevel genotype")
        backbone, path = tokens[0].rstrip(":"), []
        for tok in tokens[1:]:
            if tok == UP:
                path.append(UP)
                continue
            nodes = []
            for item in tok.split("+"):
                op, _, hidden = item.partition(":")
                try:
                    nodes.append(TriNode(op, int(hidden) if hidden else None))
                except ValueError as e:
                    raise ValueError(f"cannot read node {item!r} of trilevel genotype {text!r}: {e}") from None
            path.append(tuple(nodes))
        return cls(backbone, tuple(path))

    @staticmethod
    def looks_like(text: str) -> bool:
        """True for a text that starts like a trilevel genotype (``A ...`` / ``B ...``)."""
        head = text.split()[:1]
        return bool(head) and head[0].rstrip(":") in BACKBONES and len(text.split()) > 1

    def __str__(self) -> str:
        return " ".join([self.backbone] + [UP if s == UP else "+".join(str(n) for n in s) for s in self.path])

    @property
    def cells(self) -> list[tuple[TriNode, ...]]:
        return [s for s in self.path if s != UP]

    @classmethod
    def random(cls, rng, scale: int = 4, ops=("res3", "mb3", "conv3"), ratios=(0.5, 1.0, 1.5), n: int = 16,
               cells=(3, 2), nodes: int = 2, backbones=BACKBONES) -> "TrilevelGenotype":
        """A random network of the trilevel space (``random.Random`` ``rng``): a backbone, then at each
        resolution level 0 to ``cells[level]`` cells (backbone B: ``cells[0]`` at the LR size) of 1 to
        ``nodes`` nodes, each an operation of ``ops`` (``skip`` left out: it is nothing to time) at a width
        ratio of ``ratios`` for the width-searched ones."""
        backbone = rng.choice(tuple(backbones))
        levels = num_x2_steps(int(scale)) if backbone == "A" else 1
        ops = [op for op in ops if op != SKIP]
        path: list = []
        for level in range(levels):
            for _ in range(rng.randint(0, int(cells[min(level, len(cells) - 1)]))):
                cell = []
                for _ in range(rng.randint(1, int(nodes))):
                    op = rng.choice(ops)
                    hidden = hidden_width(op, n, rng.choice(tuple(ratios))) if op in WIDTH_OPS else None
                    cell.append(TriNode(op, hidden))
                path.append(tuple(cell))
            path.append(UP)
        return cls(backbone, tuple(path))

    def scale_of(self, scale: int | None = None) -> int:
        """The upscaling factor: backbone A's from its x2 steps; B's is ``scale`` (required)."""
        if self.backbone == "A":
            s = 2 ** sum(1 for p in self.path if p == UP)
            if scale is not None and int(scale) != s:
                raise ValueError(f"genotype {self} upsamples x{s}, not x{scale}")
            return s
        if scale is None:
            raise ValueError("backbone B needs the scale")
        num_x2_steps(int(scale))
        return int(scale)


# ------------------------------------------------------------------------------ modules
class ResBlock(nn.Module):
    """3x3 conv n -> hidden, PReLU, 3x3 conv hidden -> n, plus the input. ``mask`` (1 x hidden x 1 x 1,
    the supernet's superkernel use) scales the hidden channels."""

    def __init__(self, n: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(n, hidden, 3, padding=1)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(hidden, n, 3, padding=1)

    def forward(self, x, mask=None):
        h = self.act(self.conv1(x))
        return x + self.conv2(h if mask is None else h * mask)


class MBBlock(nn.Module):
    """Inverted residual: 1x1 n -> hidden, PReLU, 3x3 depthwise, PReLU, 1x1 hidden -> n, plus the
    input; ``mask`` as :class:`ResBlock`'s (after each hidden activation)."""

    def __init__(self, n: int, hidden: int):
        super().__init__()
        self.expand = nn.Conv2d(n, hidden, 1)
        self.act1 = nn.PReLU()
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act2 = nn.PReLU()
        self.project = nn.Conv2d(hidden, n, 1)

    def forward(self, x, mask=None):
        h = self.act1(self.expand(x))
        if mask is not None:
            h = h * mask
        h = self.act2(self.dw(h))
        return x + self.project(h if mask is None else h * mask)


def build_node(node: TriNode, n: int) -> nn.Module:
    if node.op == SKIP:
        return nn.Identity()
    if node.op == "res3":
        return ResBlock(n, node.hidden)
    if node.op == "mb3":
        return MBBlock(n, node.hidden)
    return CellNode(node.op, n)


def node_macs(node: TriNode, n: int, h: int, w: int) -> float:
    if node.op == SKIP:
        return 0.0
    c = node.hidden
    if node.op == "res3":
        return conv_macs(n, c, 3, h, w) + prelu_macs(c, h, w) + conv_macs(c, n, 3, h, w) + sum_macs(n, h, w)
    if node.op == "mb3":
        return (conv_macs(n, c, 1, h, w) + prelu_macs(c, h, w) + conv_macs(c, c, 3, h, w, groups=c)
                + prelu_macs(c, h, w) + conv_macs(c, n, 1, h, w) + sum_macs(n, h, w))
    return OPS[node.op].macs(n, h, w) + prelu_macs(n, h, w)


def node_key(node: TriNode, n: int, h: int, w: int) -> str | None:
    """Latency-table key of a node (None for ``skip``, which costs nothing); TPSR ops share the TPSR keys."""
    if node.op == SKIP:
        return None
    if node.op in WIDTH_OPS:
        return f"tri.{node.op}_h{node.hidden}_n{n}_{h}x{w}"
    return OPS[node.op].latency_key(n, h, w)


class TriCell(nn.Module):
    """``x + nodes(x)``: a residual-in-residual cell."""

    def __init__(self, nodes, n: int):
        super().__init__()
        self.nodes = nn.Sequential(*[build_node(node, n) for node in nodes])

    def forward(self, x):
        return x + self.nodes(x)


class NearestUp(nn.Module):
    """Backbone A's x2 step: nearest-neighbour x2, 3x3 conv n -> n, PReLU."""

    def __init__(self, n: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(n, n, 3, padding=1)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.conv(self.up(x)))

    @staticmethod
    def mult_adds(n: int, h: int, w: int) -> float:
        return conv_macs(n, n, 3, 2 * h, 2 * w) + prelu_macs(n, 2 * h, 2 * w)


class TailA(nn.Module):
    """Backbone A's output: 3x3 conv n -> RGB, inverse mean shift."""

    def __init__(self, n: int):
        super().__init__()
        self.conv = nn.Conv2d(n, OUT_CHANNELS, 3, padding=1)
        self.add_mean = make_add_mean()

    def forward(self, x):
        return self.add_mean(self.conv(x))

    @staticmethod
    def mult_adds(n: int, h: int, w: int) -> float:
        return conv_macs(n, OUT_CHANNELS, 3, h, w) + MeanShift.mult_adds(h, w)


class TailB(nn.Module):
    """Backbone B's one sub-pixel layer: 3x3 conv n -> 3 scale^2, PixelShuffle(scale), inverse mean shift."""

    def __init__(self, n: int, scale: int):
        super().__init__()
        self.conv = nn.Conv2d(n, OUT_CHANNELS * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.add_mean = make_add_mean()

    def forward(self, x):
        return self.add_mean(self.shuffle(self.conv(x)))

    @staticmethod
    def mult_adds(n: int, scale: int, h: int, w: int) -> float:
        return conv_macs(n, OUT_CHANNELS * scale * scale, 3, h, w) + MeanShift.mult_adds(scale * h, scale * w)


# ------------------------------------------------------------------------------- parts
@dataclass(frozen=True)
class TriPart:
    """One part of a trilevel network at one input size (a latency-table entry)."""

    key: str
    what: str
    make: Callable[[], nn.Module]
    channels: int  # input channels
    size: tuple  # input (h, w)
    mult_adds: float
    level: str  # "network" (head, up, tail) or "cell" (nodes and cell ADDs: what the search chooses)
    op: str | None = None  # when set, the entry times only this TFLite operator of make()'s graph


def _from_skeleton(part, level: str, what: str | None = None) -> TriPart:
    """A TPSR skeleton part (the same module and latency-table key) as a trilevel part."""
    return TriPart(part.key, what or part.what, part.make, part.channels, part.size, part.mult_adds, level, part.op)


def head_part(n: int, h: int, w: int) -> TriPart:
    return _from_skeleton(tpsr.head_part(n, h, w), "network")


def node_part(node: TriNode, n: int, h: int, w: int) -> TriPart | None:
    key = node_key(node, n, h, w)
    if key is None:
        return None
    return TriPart(key, f"{node} ({n} ch)", lambda: build_node(node, n), n, (h, w), node_macs(node, n, h, w), "cell")


def cell_add_part(n: int, h: int, w: int) -> TriPart:
    """The cell's outer residual ADD: the TPSR leaf-sum ADD's entry."""
    return _from_skeleton(tpsr.add_part(n, h, w), "cell", f"cell residual ADD, {n} ch")


def up_part(n: int, h: int, w: int) -> TriPart:
    return TriPart(f"tri.upA_n{n}_{h}x{w}", f"nearest x2 + conv3 {n}->{n} + PReLU", lambda: NearestUp(n), n, (h, w),
                   NearestUp.mult_adds(n, h, w), "network")


def tail_a_part(n: int, h: int, w: int) -> TriPart:
    return TriPart(f"tri.tailA_n{n}_{h}x{w}", f"conv3 {n}->3 + inverse mean shift", lambda: TailA(n), n, (h, w),
                   TailA.mult_adds(n, h, w), "network")


def tail_b_part(n: int, scale: int, h: int, w: int) -> TriPart:
    return TriPart(f"tri.tailB_x{scale}_n{n}_{h}x{w}",
                   f"conv3 {n}->{OUT_CHANNELS * scale * scale} + DEPTH_TO_SPACE {scale} + inverse mean shift",
                   lambda: TailB(n, scale), n, (h, w), TailB.mult_adds(n, scale, h, w), "network")


def network_parts(genotype: "TrilevelGenotype | str", n: int, input_size=(180, 320),
                  scale: int | None = None) -> list[TriPart]:
    """Every part of ``TrilevelSR(genotype, scale, n)`` on an ``input_size`` input, in network order
    (a part used twice appears twice; ``skip`` nodes cost nothing and are not listed)."""
    g = TrilevelGenotype.parse(genotype) if isinstance(genotype, str) else genotype
    scale = g.scale_of(scale)
    h, w = (int(v) for v in input_size)
    parts = [head_part(n, h, w)]
    for step in g.path:
        if step != UP:
            parts += [p for p in (node_part(node, n, h, w) for node in step) if p is not None]
            parts.append(cell_add_part(n, h, w))
        elif g.backbone == "A":
            parts.append(up_part(n, h, w))
            h, w = 2 * h, 2 * w
    parts.append(tail_a_part(n, h, w) if g.backbone == "A" else tail_b_part(n, scale, h, w))
    return parts


def space_parts(n: int, input_size, scale: int, ops, ratios) -> list[TriPart]:
    """Every part a trilevel network of ``ops`` (hidden widths at ``ratios``) can contain, either
    backbone, on an ``input_size`` input: the latency-table entries of a trilevel space, each key once."""
    h, w = (int(v) for v in input_size)
    levels = num_x2_steps(scale)
    parts = [head_part(n, h, w), tail_b_part(n, scale, h, w), tail_a_part(n, h << levels, w << levels)]
    for level in range(levels):
        hh, ww = h << level, w << level
        for op in ops:
            if op == SKIP:
                continue
            hiddens = [hidden_width(op, n, r) for r in ratios] if op in WIDTH_OPS else [None]
            parts += [node_part(TriNode(op, c), n, hh, ww) for c in dict.fromkeys(hiddens)]
        parts += [cell_add_part(n, hh, ww), up_part(n, hh, ww)]
    return parts


def mult_adds(genotype: "TrilevelGenotype | str", scale: int | None = None, n_feats: int = 16,
              input_size=(180, 320)) -> float:
    """Mult-Adds of ``TrilevelSR(genotype, scale, n_feats)`` on an ``input_size`` input, in closed form."""
    return sum(p.mult_adds for p in network_parts(genotype, n_feats, input_size, scale))


# ------------------------------------------------------------------------------- model
@register_family
class TrilevelSR(nn.Module):
    family = "trilevel"

    def __init__(self, genotype: "TrilevelGenotype | str", scale: int | None = None, n_feats: int = 16):
        super().__init__()
        if isinstance(genotype, str):
            genotype = TrilevelGenotype.parse(genotype)
        self.genotype, self.n_feats = genotype, int(n_feats)
        self.scale = genotype.scale_of(scale)
        n = self.n_feats
        self.sub_mean = make_sub_mean()
        self.head = make_head(n)
        body = []
        for step in genotype.path:
            if step != UP:
                body.append(TriCell(step, n))
            elif genotype.backbone == "A":
                body.append(NearestUp(n))
        self.body = nn.Sequential(*body)
        self.tail = TailA(n) if genotype.backbone == "A" else TailB(n, self.scale)

    def config(self) -> dict:
        return {"genotype": str(self.genotype), "scale": self.scale, "n_feats": self.n_feats}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(self.sub_mean(x))))


#: The registry entry's default network: a small backbone-B network of the space (train it, or give
#: ``--genotype`` with a searched one).
DEFAULT_GENOTYPE = "B res3:16+conv3 mb3:32+skip res3:16 up"


@register_model("trilevel_x4", family="trilevel", scale=4,
                description="trilevel-search network x4 (give --genotype 'A ...' / 'B ...' from tinysr search trilevel)")
def trilevel_x4(genotype=DEFAULT_GENOTYPE, n_feats=16):
    return TrilevelSR(genotype, 4, n_feats)


#: The trilevel search demo's derived network (tinysr/configs/search_trilevel_demo.yaml, README "Trilevel search").
TRILEVEL_DEMO_GENOTYPE = "B mb3:48+mb3:48 mb3:32+mb3:32 mb3:48+mb3:48 mb3:48+mb3:48 up"
#: The trilevel search's derived networks at the Pareto comparison's three budgets
#: (tinysr/configs/search_trilevel_pareto_{quicksrnet_s,xlsr,quicksrnet_m}.yaml: up to eight cells, the efficiency
#: term at 95% of quicksrnet_s_x4's / xlsr_x4's / quicksrnet_m_x4's measured fp32 latency, two-sided band),
#: trained with the common recipe (README "Choosing a network").
TRILEVEL_AT_QUICKSRNET_S = "B mb3:48+mb3:48 mb3:32+mb3:32 mb3:32+mb3:32 mb3:32+mb3:32 up"
TRILEVEL_AT_XLSR = "B mb3:48+mb3:48 mb3:48+mb3:48 mb3:48+conv3 mb3:48+mb3:48 mb3:48+mb3:48 up"
TRILEVEL_AT_QUICKSRNET_M = ("B res3:24+mb3:48 mb3:48+mb3:48 mb3:48+mb3:48 mb3:48+mb3:48 mb3:32+mb3:32 mb3:32+res3:16 "
                            "up")

# Trilevel networks with bundled weights (NAME.pt): trilevel_x4 with the genotype as the entry's default.
for _name, _genotype, _what in (
        ("trilevel_demo_x4", TRILEVEL_DEMO_GENOTYPE,
         "the trilevel search demo's derived network, trained with the Pareto comparison's recipe"),
        ("trilevel_demo_x4_qat", TRILEVEL_DEMO_GENOTYPE,
         "trilevel_demo_x4, quantization-aware trained (tinysr/configs/qat_x4.yaml): for int8 export, which takes "
         "its learnt ranges"),
        ("trilevel_at_quicksrnet_s_x4", TRILEVEL_AT_QUICKSRNET_S,
         "trilevel search within QuickSRNet-small's latency (tinysr/configs/search_trilevel_pareto_quicksrnet_s.yaml), "
         "common recipe"),
        ("trilevel_at_xlsr_x4", TRILEVEL_AT_XLSR,
         "trilevel search within XLSR's latency (tinysr/configs/search_trilevel_pareto_xlsr.yaml), common recipe"),
        ("trilevel_at_quicksrnet_m_x4", TRILEVEL_AT_QUICKSRNET_M,
         "trilevel search within QuickSRNet-medium's latency "
         "(tinysr/configs/search_trilevel_pareto_quicksrnet_m.yaml), common recipe")):
    register_model(_name, family="trilevel", scale=4, weights=f"{_name}.pt", description=_what,
                   genotype=_genotype)(trilevel_x4)
