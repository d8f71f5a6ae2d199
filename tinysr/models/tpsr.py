"""TPSR and every searched cell: one skeleton around a genotype's cell.

Skeleton (paper Sec. 3.2 / published TPSR): mean shift -> 3x3 conv (3 -> n) ->
cell -> PReLU -> x2 sub-pixel blocks (3x3 conv to 12 channels + PixelShuffle(2);
the first from n channels, the others from 3) -> inverse mean shift.

Skeleton options (the extended search space ``tpsr_plus``; the defaults are the paper's skeleton
above, and a network at its defaults is exactly the published one: same modules, state-dict keys
and ``config()``):

* ``n_feats``: the width (16);
* ``n_cells``: the depth, the cell applied ``n_cells`` times in sequence, each with its own weights
  (1; for more the cells are ``cell.0``, ``cell.1``, ...);
* ``upsampler``: ``"tpsr"`` (the two x2 sub-pixel blocks) or ``"anchor"``, the int8-minded skeleton
  of the hand-designed mobile winners (ABPN, QuickSRNet; :mod:`tinysr.models.mobile`): 3x3 conv
  (3 -> n) -> cell(s) -> PReLU -> 3x3 conv (n -> 3 * scale^2), plus the input repeated scale^2
  times along channels (a fixed 1x1 convolution, :class:`~tinysr.models.mobile.Anchor`), then one
  depth-to-space. The anchor skeleton has **no mean shift**: the convolutions learn a residual over
  nearest-neighbour up-sampling of the [0, 1] input, and the network's tensors stay in the small
  ranges that int8 quantization needs (the 0..255 scaling of the published weights is kept only
  where those weights are);
* ``clip``: the output clipped to [0, 1] (``nn.Hardtanh``): for the anchor skeleton before
  depth-to-space (as QuickSRNet), for the TPSR skeleton after the inverse mean shift;
* ``linear``: every full convolution trained as a collapsible linear block (SESR), collapsed for export;
* ``skip``: a long residual over the cells (SESR's): the head's output added to the cells' activated
  output, before the tail (anchor) or the first sub-pixel block (TPSR). One n-channel ADD, no weights:
  deep chains of convolutions train through it from the first steps.

A :class:`~tinysr.genotype.NetworkGenotype` (text ``w32 d2 anchor clip | <cell>``) holds a cell
with its skeleton; ``CellSR`` takes one as its genotype.

The skeleton is described here once. :class:`CellSR` builds it from the part constructors
below, and :func:`skeleton_parts` lists the same parts at a given size (latency-table key,
module factory, input shape, Mult-Adds) for the latency tables (:mod:`tinysr.profile.lut`)
and the closed-form :func:`mult_adds`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
from torch import nn

from ..genotype import (DEFAULT_DEPTH, DEFAULT_UPSAMPLER, TPSR_GENOTYPE, Cell, Genotype,
                        NetworkGenotype, parse_genotype)
from ..ops import LINEAR_EXPAND, CollapsibleConv, collapsed_state_dict, conv_macs, elementwise, prelu_macs, sum_macs
from .blocks import MeanShift, SubPixelUp, num_x2_steps
from .registry import register_family, register_model

OUT_CHANNELS = 3  # RGB


# ------------------------------------------------------------------- part constructors
def make_sub_mean() -> nn.Module:
    return MeanShift()


def make_head(n_feats: int, linear: bool = False) -> nn.Module:
    if linear:
        return CollapsibleConv(3, n_feats, 3, LINEAR_EXPAND)
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


def make_clip() -> nn.Module:
    return nn.Hardtanh(0.0, 1.0)


def make_tail(n_feats: int, scale: int, linear: bool = False) -> nn.Module:
    """The anchor skeleton's last conv: 3x3, n -> 3 * scale^2 (the residual over the anchor)."""
    if linear:
        return CollapsibleConv(n_feats, OUT_CHANNELS * scale * scale, 3, LINEAR_EXPAND)
    return nn.Conv2d(n_feats, OUT_CHANNELS * scale * scale, 3, padding=1)


def make_anchor(scale: int) -> nn.Module:
    from .mobile import Anchor

    return Anchor(OUT_CHANNELS, scale)


class AnchorOuter(nn.Module):
    """The anchor skeleton without its cell and cell PReLU (a latency-table part): head conv -> tail conv,
    plus the anchor, [clip], depth-to-space. Built from the same constructors as :class:`CellSR`."""

    def __init__(self, n_feats: int, scale: int, clip: bool):
        super().__init__()
        self.head, self.tail, self.anchor = make_head(n_feats), make_tail(n_feats, scale), make_anchor(scale)
        self.clip = make_clip() if clip else nn.Identity()
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.clip(self.tail(self.head(x)) + self.anchor(x)))


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
    """The skeleton (see the module doc) around ``genotype``'s cell.

    ``genotype``: a :class:`Genotype`, a :class:`NetworkGenotype` or either's text. A network genotype
    sets the skeleton options; an option given here too must agree with it. Options left ``None`` take
    the network genotype's value, else the paper's (16, 1, ``"tpsr"``, no clip).
    """

    family = "tpsr"

    def __init__(self, genotype: Genotype | NetworkGenotype | str = TPSR_GENOTYPE, scale: int = 4,
                 n_feats: int | None = None, n_cells: int | None = None, upsampler: str | None = None,
                 clip: bool | None = None, linear: bool | None = None, skip: bool | None = None):
        super().__init__()
        if isinstance(genotype, str):
            genotype = parse_genotype(genotype)
        given = {"n_feats": n_feats, "n_cells": n_cells, "upsampler": upsampler, "clip": clip, "linear": linear,
                 "skip": skip}
        if isinstance(genotype, NetworkGenotype):
            for key, value in given.items():
                have = getattr(genotype, key)
                if value is not None and (bool(value) if key in ("clip", "linear", "skip") else value) != have:
                    raise ValueError(f"{key}={value!r} contradicts the network genotype {genotype} ({key} {have!r})")
            net = genotype
        else:
            net = NetworkGenotype(genotype, **{k: v for k, v in given.items() if v is not None})
        self.genotype, self.scale, self.n_feats = net.cell, scale, net.n_feats
        self.n_cells, self.upsampler, self.clip_output = net.n_cells, net.upsampler, net.clip
        self.linear, self.skip = net.linear, net.skip
        n = net.n_feats
        cells = [Cell(net.cell, n, net.linear) for _ in range(net.n_cells)]
        if net.upsampler == "tpsr":
            self.sub_mean = make_sub_mean()
            self.head = make_head(n, net.linear)
            self.cell = cells[0] if len(cells) == 1 else nn.Sequential(*cells)
            self.cell_act = make_cell_act()
            self.up = nn.Sequential(*[make_up(c) for c in up_channels(scale, n)])
            self.add_mean = make_add_mean()
        else:
            self.head = make_head(n, net.linear)
            self.cell = cells[0] if len(cells) == 1 else nn.Sequential(*cells)
            self.cell_act = make_cell_act()
            self.tail = make_tail(n, scale, net.linear)
            self.anchor = make_anchor(scale)
            self.shuffle = nn.PixelShuffle(scale)
        if net.clip:
            self.clip = make_clip()

    @classmethod
    def of(cls, genotype, scale: int = 4, n_feats: int | None = None) -> "CellSR":
        """The network of ``genotype``: a network genotype (or its text) in its own skeleton, a bare cell in
        the paper's skeleton at width ``n_feats`` (a network genotype keeps its own width)."""
        if isinstance(genotype, str):
            genotype = parse_genotype(genotype)
        if isinstance(genotype, NetworkGenotype):
            return cls(genotype, scale)
        return cls(genotype, scale, n_feats)

    @property
    def network(self) -> NetworkGenotype:
        """The cell with this network's skeleton."""
        return NetworkGenotype(self.genotype, self.n_feats, self.n_cells, self.upsampler, self.clip_output,
                               self.linear, self.skip)

    @property
    def genotype_text(self) -> str:
        """The text that rebuilds this network with ``tinysr train --genotype``: the cell's for the paper's
        skeleton (16 features, as every existing genotype), else the network genotype's."""
        return self.network.genotype_text

    def config(self) -> dict:
        cfg = {"genotype": str(self.genotype), "scale": self.scale, "n_feats": self.n_feats}
        if self.n_cells != DEFAULT_DEPTH:
            cfg["n_cells"] = self.n_cells
        if self.upsampler != DEFAULT_UPSAMPLER:
            cfg["upsampler"] = self.upsampler
        if self.clip_output:
            cfg["clip"] = True
        if self.linear:
            cfg["linear"] = True
        if self.skip:
            cfg["skip"] = True
        return cfg

    @torch.no_grad()
    def collapse(self) -> "CellSR":
        """The deployed network: a ``linear`` network with every collapsible block one plain convolution
        (the same network without ``linear``; exact to float rounding). Any other network: itself."""
        if not self.linear:
            return self
        out = CellSR(self.network.deployed(), self.scale)
        out.load_state_dict(collapsed_state_dict(self), strict=True)
        return out.train(self.training)

    def _body(self, h):
        """The cells and their PReLU on the head's output ``h`` (plus ``h`` with ``skip``)."""
        y = self.cell_act(self.cell(h))
        return y + h if self.skip else y

    def forward(self, x):
        if self.upsampler == "tpsr":
            y = self.add_mean(self.up(self._body(self.head(self.sub_mean(x)))))
            return self.clip(y) if self.clip_output else y
        y = self.tail(self._body(self.head(x))) + self.anchor(x)
        if self.clip_output:
            y = self.clip(y)
        return self.shuffle(y)


# ----------------------------------------------------------------- the parts, described
@dataclass(frozen=True)
class SkeletonPart:
    """One fixed part of a :class:`CellSR` network (or the cell's leaf-sum ADD) at one input size.

    ``per``: ``"network"`` (once per network) or ``"extra leaf"`` (once per cell leaf beyond the
    first: the leaf-sum ADD; and once more for a network's ``skip`` ADD, the same n-channel ADD). ``op``: when set, the part is this one TFLite operator of
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

    def count(self, genotype: Genotype | NetworkGenotype, n_cells: int | None = None) -> int:
        """How many times a network of ``genotype`` (with ``n_cells`` cells; default: a network genotype's
        own depth, else 1) contains this part."""
        if self.per == "network":
            return 1
        if n_cells is None:
            n_cells = genotype.n_cells if isinstance(genotype, NetworkGenotype) else 1
        skip = isinstance(genotype, NetworkGenotype) and genotype.skip
        return int(n_cells) * (len(genotype.leaves) - 1) + int(skip)


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


def skeleton_parts(scale: int = 4, n_feats: int = 16, input_size=(180, 320), upsampler: str = "tpsr",
                   clip: bool = False) -> list[SkeletonPart]:
    """The fixed parts of a ``CellSR(genotype, scale, n_feats, upsampler=, clip=)`` on an ``input_size``
    input, in network order (the depth only repeats the cell: its leaf-sum ADDs, see :meth:`SkeletonPart.count`).

    The anchor skeleton's parts: ``outer`` (head conv, tail conv, anchor, ADD, [clip], depth-to-space:
    :class:`AnchorOuter`, one graph with the RGB input, so that the converter's channel permutation for
    depth-to-space is measured as the network has it), the leaf-sum ADD and the cell PReLU.
    """
    n, scale = int(n_feats), int(scale)
    h, w = (int(v) for v in input_size)
    if upsampler not in ("tpsr", "anchor"):
        raise ValueError(f"upsampler must be tpsr or anchor, got {upsampler!r}")
    act = SkeletonPart("cell_act", f"skeleton.prelu_n{n}_{h}x{w}", f"cell-output PReLU, {n} ch", make_cell_act, n,
                       (h, w), prelu_macs(n, h, w))
    if upsampler == "anchor":
        r2 = OUT_CHANNELS * scale * scale
        outer = SkeletonPart(
            "outer", f"skeleton.anchor{'_clip' if clip else ''}_n{n}_x{scale}_{h}x{w}",
            f"anchor skeleton: head conv3 3->{n}, tail conv3 {n}->{r2}, anchor conv1 3->{r2}, ADD"
            + (", clip" if clip else "") + ", DEPTH_TO_SPACE",
            lambda: AnchorOuter(n, scale, clip), 3, (h, w),
            conv_macs(3, n, 3, h, w) + conv_macs(n, r2, 3, h, w) + conv_macs(3, r2, 1, h, w)
            + elementwise(r2 * h * w) * (2 if clip else 1))
        return [outer, add_part(n, h, w), act]
    parts = [head_part(n, h, w), add_part(n, h, w), act]
    hh, ww = h, w
    for i, cin in enumerate(up_channels(scale, n)):
        parts.append(SkeletonPart(f"up{i + 1}", f"skeleton.up_c{cin}_{hh}x{ww}",
                                  f"x2 sub-pixel block: conv3 {cin}->{4 * OUT_CHANNELS} + DEPTH_TO_SPACE",
                                  lambda cin=cin: make_up(cin), cin, (hh, ww),
                                  SubPixelUp.mult_adds(cin, OUT_CHANNELS, hh, ww)))
        hh, ww = hh * 2, ww * 2
    if clip:
        parts.append(SkeletonPart("add_mean", f"skeleton.addmean_clip_c3_{hh}x{ww}", "inverse mean shift + clip",
                                  lambda: nn.Sequential(make_add_mean(), make_clip()), OUT_CHANNELS, (hh, ww),
                                  MeanShift.mult_adds(hh, ww) + elementwise(OUT_CHANNELS * hh * ww)))
    else:
        parts.append(SkeletonPart("add_mean", f"skeleton.addmean_c3_{hh}x{ww}", "inverse mean shift", make_add_mean,
                                  OUT_CHANNELS, (hh, ww), MeanShift.mult_adds(hh, ww)))
    return parts


def network_skeleton_parts(genotype: NetworkGenotype, scale: int = 4, input_size=(180, 320)) -> list[SkeletonPart]:
    """:func:`skeleton_parts` of a network genotype's skeleton."""
    return skeleton_parts(scale, genotype.n_feats, input_size, genotype.upsampler, genotype.clip)


@lru_cache(maxsize=256)
def _fixed_mult_adds(scale: int, n_feats: int, h: int, w: int, upsampler: str = "tpsr", clip: bool = False) -> float:
    return sum(p.mult_adds for p in skeleton_parts(scale, n_feats, (h, w), upsampler, clip) if p.per == "network")


def mult_adds(genotype: Genotype | NetworkGenotype | str, scale: int = 4, n_feats: int = 16,
              input_size=(180, 320)) -> float:
    """Mult-Adds of ``CellSR.of(genotype, scale, n_feats)`` on an ``input_size`` input, in closed form.

    The cell's (:meth:`Genotype.mult_adds`: nodes, their PReLUs, leaf sums; times the depth) plus the
    skeleton parts'; equal to :func:`tinysr.complexity.measure` of the built network, without building
    it. ``n_feats`` is the width of a bare cell; a network genotype (or its text) has its own.
    """
    if isinstance(genotype, str):
        genotype = parse_genotype(genotype)
    h, w = (int(v) for v in input_size)
    if isinstance(genotype, NetworkGenotype):
        n = genotype.n_feats
        return (genotype.n_cells * genotype.cell.mult_adds(n, h, w) + (sum_macs(n, h, w) if genotype.skip else 0)
                + _fixed_mult_adds(int(scale), n, h, w, genotype.upsampler, genotype.clip))
    return genotype.mult_adds(n_feats, h, w) + _fixed_mult_adds(int(scale), int(n_feats), h, w)


@register_model("tpsr_x4", family="tpsr", scale=4, weights="tpsr_x4.pt",
                description="TPSR (ECCV 2020) cell, 16 features, x4")
def tpsr_x4(genotype=TPSR_GENOTYPE, n_feats=None):
    return CellSR(genotype, 4, n_feats)


@register_model("tpsr_x4_gan", family="tpsr", scale=4, weights="tpsr_x4_gan.pt",
                description="TPSR cell x4, perceptual: GAN-fine-tuned tpsr_x4 (tinysr/configs/tpsr_x4_gan.yaml)")
def tpsr_x4_gan(genotype=TPSR_GENOTYPE, n_feats=None):
    return CellSR(genotype, 4, n_feats)


@register_model("tpsr_x2", family="tpsr", scale=2, weights="tpsr_x2.pt",
                description="TPSR (ECCV 2020) cell, 16 features, x2")
def tpsr_x2(genotype=TPSR_GENOTYPE, n_feats=None):
    return CellSR(genotype, 2, n_feats)


@register_model("tpsr_pareto_x4", family="tpsr", scale=4, weights="tpsr_pareto_x4.pt",
                description="TPSR cell x4 trained with the Pareto comparison's common recipe (configs/pareto_x4.yaml)")
def tpsr_pareto_x4(genotype=TPSR_GENOTYPE, n_feats=None):
    return CellSR(genotype, 4, n_feats)


#: The demo generator search's best cell (tinysr/configs/search_demo.yaml, README "Searching a generator").
SEARCH_DEMO_GENOTYPE = "conv1@in identity@in identity@0 dsep3@1 identity@in inv3@4 identity@in conv1@in dsep3@2 inv3@8"


@register_model("search_demo_x4", family="tpsr", scale=4, weights="search_demo_x4.pt",
                description="the demo generator search's best cell, trained with the Pareto comparison's recipe")
def search_demo_x4(genotype=SEARCH_DEMO_GENOTYPE, n_feats=16):
    return CellSR(genotype, 4, n_feats)


# ------------------------------------------------------------------ the Pareto comparison's searched networks
#: The best network (by proxy PSNR) within each budget of the Pareto comparison's generator searches in the
#: extended space (README "Choosing a network"): the budget is a hand-designed network's measured LiteRT fp32
#: latency on the comparison's host, less 5% for the latency table's error. Trained with the common recipe
#: (tinysr/configs/pareto_x4.yaml); the bundled weights are the collapsed (deployed) network. QuickSRNet-small's
#: budget: the first round (search_pareto_quicksrnet_s.yaml); XLSR's and QuickSRNet-medium's: the sixth round
#: (search_pareto6_*.yaml: regularized evolution from SESR-M5's shape, 1,000-step proxy; at XLSR's budget the
#: search returned that shape itself). The third round's networks at those budgets (30.47 / 27.53 and 30.73 /
#: 27.73 dB on Set5 / Set14) were ``w16 d1 anchor clip linear skip | conv3@in conv1@0 conv5@0 identity@in conv1@in
#: conv1@2 conv1@4 conv1@2 conv5@0 conv3@1`` and ``w16 d1 anchor clip linear skip | identity@in conv3@0 conv3@1
#: conv3@2 conv1@2 conv3@2 conv1@5 conv1@3 conv5@6 conv3@7``. The first round's (30.17 / 30.12 dB on Set5) were:
#: ``w16 d1 anchor clip linear | inv3@in inv3@in inv5@1 dsep5@1 dsep3@2 gconv5@1 conv1@1 conv7@2 identity@6 dsep3@in``
#: and ``w24 d1 anchor clip linear | identity@in se@in identity@in dsep3@2 gconv3@in se@0 gconv3@3 gconv3@6 conv1@3
#: conv1@6``.
SEARCHED_AT_QUICKSRNET_S = ("w16 d1 anchor clip linear | conv1@in dsep3@in dsep5@1 identity@2 inv5@in gconv3@4 ca@in "
                            "inv5@5 dsep5@7 inv3@0")
SEARCHED_AT_XLSR = ("w16 d1 anchor clip linear skip | conv3@in conv3@0 conv3@1 conv3@2 conv3@3 identity@4 identity@5 "
                    "identity@6 identity@7 identity@8")
SEARCHED_AT_QUICKSRNET_M = ("w16 d1 anchor clip linear skip | identity@in conv3@0 conv3@1 conv3@2 conv3@3 identity@4 "
                            "conv5@5 conv1@6 conv1@7 conv3@1")


@register_model("searched_at_quicksrnet_s_x4", family="tpsr", scale=4, weights="searched_at_quicksrnet_s_x4.pt",
                description="searched (tpsr_plus) within QuickSRNet-small's latency "
                            "(tinysr/configs/search_pareto_quicksrnet_s.yaml), common recipe")
def searched_at_quicksrnet_s_x4(genotype=SEARCHED_AT_QUICKSRNET_S, n_feats=None):
    return CellSR(genotype, 4, n_feats)


@register_model("searched_at_xlsr_x4", family="tpsr", scale=4, weights="searched_at_xlsr_x4.pt",
                description="searched (tpsr_plus) within XLSR's latency (tinysr/configs/search_pareto6_xlsr.yaml), "
                            "common recipe")
def searched_at_xlsr_x4(genotype=SEARCHED_AT_XLSR, n_feats=None):
    return CellSR(genotype, 4, n_feats)


@register_model("searched_at_quicksrnet_m_x4", family="tpsr", scale=4, weights="searched_at_quicksrnet_m_x4.pt",
                description="searched (tpsr_plus) within QuickSRNet-medium's latency "
                            "(tinysr/configs/search_pareto6_quicksrnet_m.yaml), common recipe")
def searched_at_quicksrnet_m_x4(genotype=SEARCHED_AT_QUICKSRNET_M, n_feats=None):
    return CellSR(genotype, 4, n_feats)
