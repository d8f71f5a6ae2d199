"""TPSR and every searched cell: one skeleton around a genotype's cell.

Skeleton (paper Sec. 3.2 / published TPSR): mean shift -> 3x3 conv (3 -> n) ->
cell -> PReLU -> x2 sub-pixel blocks (3x3 conv to 12 channels + PixelShuffle(2);
the first from n channels, the others from 3) -> inverse mean shift.

The skeleton is described here once. :class:`CellSR` builds it from the part constructors
below, and :func:`skeleton_parts` lists the same parts at a given size (latency-table key,
module factory, input shape, Mult-Adds) for the latency tables (:mod:`tinysr.profile.lut`)
and the closed-form :func:`mult_adds`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from torch import nn

from ..genotype import TPSR_GENOTYPE, Cell, Genotype
from ..ops import conv_macs, prelu_macs, sum_macs
from .blocks import MeanShift, SubPixelUp, num_x2_steps
from .registry import register_family, register_model

OUT_CHANNELS = 3  # RGB


# ------------------------------------------------------------------- part constructors
def make_sub_mean() -> nn.Module:
    return MeanShift()


def make_head(n_feats: int) -> nn.Module:
    return nn.Conv2d(3, n_feats, 3, padding=1)


def make_cell_act() -> nn.Module:
    return nn.PReLU()


def up_channels(scale: int, n_feats: int) -> list[int]:
    """Input channels of each x2 sub-pixel block: the first takes the cell's n, the others RGB."""
    return [n_feats if i == 0 else OUT_CHANNELS for i in range(num_x2_steps(scale))]


def make_up(cin: int) -> nn.Module:
    return SubPixelUp(cin, OUT_CHANNELS)


def make_add_mean() -> nn.Module:
    return MeanShift(inverse=True)


class LeafSum(nn.Module):
    """Two PReLU branches summed: a graph holding one leaf-sum ADD of the cell (``Cell.forward``'s ``+``)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.PReLU(), nn.PReLU(init=0.5)

    def forward(self, x):
        return self.a(x) + self.b(x)


# ------------------------------------------------------------------------------- model
@register_family
class CellSR(nn.Module):
    family = "tpsr"

    def __init__(self, genotype: Genotype | str = TPSR_GENOTYPE, scale: int = 4, n_feats: int = 16):
        super().__init__()
        if isinstance(genotype, str):
            genotype = Genotype.parse(genotype)
        self.genotype, self.scale, self.n_feats = genotype, scale, n_feats
        self.sub_mean = make_sub_mean()
        self.head = make_head(n_feats)
        self.cell = Cell(genotype, n_feats)
        self.cell_act = make_cell_act()
        self.up = nn.Sequential(*[make_up(c) for c in up_channels(scale, n_feats)])
        self.add_mean = make_add_mean()

    def config(self) -> dict:
        return {"genotype": str(self.genotype), "scale": self.scale, "n_feats": self.n_feats}

    def forward(self, x):
        h = self.head(self.sub_mean(x))
        return self.add_mean(self.up(self.cell_act(self.cell(h))))


# ----------------------------------------------------------------- the parts, described
@dataclass(frozen=True)
class SkeletonPart:
    """One fixed part of a :class:`CellSR` network (or the cell's leaf-sum ADD) at one input size.

    ``per``: ``"network"`` (once per network) or ``"extra leaf"`` (once per cell leaf beyond the
    first: the leaf-sum ADD). ``op``: when set, the part is this one TFLite operator of
    ``make()``'s converted graph (the rest of that graph only feeds it).
    """

    name: str  # head | leaf_add | cell_act | up1, up2, ... | add_mean
    key: str  # latency-table key
    what: str
    make: Callable[[], nn.Module]
    channels: int  # input channels
    size: tuple  # input (h, w)
    mult_adds: float
    per: str = "network"
    op: str | None = None

    def count(self, genotype: Genotype) -> int:
        """How many times a network of ``genotype`` contains this part."""
        return 1 if self.per == "network" else len(genotype.leaves) - 1


def head_part(n: int, h: int, w: int) -> SkeletonPart:
    """Mean shift + the 3x3 head conv 3 -> n on an h x w input (the trilevel networks' head too)."""
    return SkeletonPart("head", f"skeleton.head_c3_n{n}_{h}x{w}", f"mean shift + head conv3 3->{n}",
                        lambda: nn.Sequential(make_sub_mean(), make_head(n)), 3, (h, w),
                        MeanShift.mult_adds(h, w) + conv_macs(3, n, 3, h, w))


def add_part(n: int, h: int, w: int) -> SkeletonPart:
    """One ADD of two n-channel maps, cut out of a two-input graph: the cell's leaf sum (and a
    trilevel cell's residual ADD)."""
    return SkeletonPart("leaf_add", f"skeleton.add_n{n}_{h}x{w}", f"leaf-sum ADD, {n} ch (one per extra leaf)",
                        LeafSum, n, (h, w), sum_macs(n, h, w), per="extra leaf", op="ADD")


def skeleton_parts(scale: int = 4, n_feats: int = 16, input_size=(180, 320)) -> list[SkeletonPart]:
    """The fixed parts of a ``CellSR(genotype, scale, n_feats)`` on an ``input_size`` input, in network order."""
    n = int(n_feats)
    h, w = (int(v) for v in input_size)
    parts = [
        head_part(n, h, w),
        add_part(n, h, w),
        SkeletonPart("cell_act", f"skeleton.prelu_n{n}_{h}x{w}", f"cell-output PReLU, {n} ch", make_cell_act, n,
                     (h, w), prelu_macs(n, h, w)),
    ]
    hh, ww = h, w
    for i, cin in enumerate(up_channels(scale, n)):
        parts.append(SkeletonPart(f"up{i + 1}", f"skeleton.up_c{cin}_{hh}x{ww}",
                                  f"x2 sub-pixel block: conv3 {cin}->{4 * OUT_CHANNELS} + DEPTH_TO_SPACE",
                                  lambda cin=cin: make_up(cin), cin, (hh, ww),
                                  SubPixelUp.mult_adds(cin, OUT_CHANNELS, hh, ww)))
        hh, ww = hh * 2, ww * 2
    parts.append(SkeletonPart("add_mean", f"skeleton.addmean_c3_{hh}x{ww}", "inverse mean shift", make_add_mean,
                              OUT_CHANNELS, (hh, ww), MeanShift.mult_adds(hh, ww)))
    return parts


@lru_cache(maxsize=256)
def _fixed_mult_adds(scale: int, n_feats: int, h: int, w: int) -> float:
    return sum(p.mult_adds for p in skeleton_parts(scale, n_feats, (h, w)) if p.per == "network")


def mult_adds(genotype: Genotype | str, scale: int = 4, n_feats: int = 16, input_size=(180, 320)) -> float:
    """Mult-Adds of ``CellSR(genotype, scale, n_feats)`` on an ``input_size`` input, in closed form.

    The cell's (:meth:`Genotype.mult_adds`: nodes, their PReLUs, leaf sums) plus the skeleton
    parts'; equal to :func:`tinysr.complexity.measure` of the built network, without building it.
    """
    if isinstance(genotype, str):
        genotype = Genotype.parse(genotype)
    h, w = (int(v) for v in input_size)
    return genotype.mult_adds(n_feats, h, w) + _fixed_mult_adds(int(scale), int(n_feats), h, w)


@register_model("tpsr_x4", family="tpsr", scale=4, weights="tpsr_x4.pt",
                description="TPSR (ECCV 2020) cell, 16 features, x4")
def tpsr_x4(genotype=TPSR_GENOTYPE, n_feats=16):
    return CellSR(genotype, 4, n_feats)


@register_model("tpsr_x4_gan", family="tpsr", scale=4, weights="tpsr_x4_gan.pt",
                description="TPSR cell x4, perceptual: GAN-fine-tuned tpsr_x4 (tinysr/configs/tpsr_x4_gan.yaml)")
def tpsr_x4_gan(genotype=TPSR_GENOTYPE, n_feats=16):
    return CellSR(genotype, 4, n_feats)


@register_model("tpsr_x2", family="tpsr", scale=2, weights="tpsr_x2.pt",
                description="TPSR (ECCV 2020) cell, 16 features, x2")
def tpsr_x2(genotype=TPSR_GENOTYPE, n_feats=16):
    return CellSR(genotype, 2, n_feats)


@register_model("tpsr_pareto_x4", family="tpsr", scale=4, weights="tpsr_pareto_x4.pt",
                description="TPSR cell x4 trained with the Pareto comparison's common recipe (configs/pareto_x4.yaml)")
def tpsr_pareto_x4(genotype=TPSR_GENOTYPE, n_feats=16):
    return CellSR(genotype, 4, n_feats)
