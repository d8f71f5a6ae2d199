"""Discriminators: the SRGAN/ESRGAN VGG-style network and the TPSR searchable template.

Both take an RGB patch of a fixed side (``input_size``) and return one logit per image, shape
``(N, 1)`` (no sigmoid: pair them with a BCE-with-logits, hinge or relativistic loss).

:class:`VGGStyleDiscriminator` follows BasicSR's ``VGGStyleDiscriminator`` layer for layer and
keeps its attribute names (``conv0_0``, ``bn0_1``, ..., ``linear1``, ``linear2``), so a BasicSR
``net_d`` state dict loads into it unchanged: conv3 (bias, no BN) -> conv4/2 -> [conv3 -> conv4/2]
x 4 with the width doubling up to ``8 * num_feat``; BN after every conv but the first (those convs
have no bias); LeakyReLU 0.2 everywhere; 5 stride-2 stages for 128-px patches (6 for 256-px, the
extra stage at ``8 * num_feat``), then Linear(8 num_feat x 4 x 4, 100) -> LeakyReLU -> Linear(100, 1).

:class:`SearchedDiscriminator` is the paper's discriminator search space (Sec. 3.3; the repository's
SEARCH_SPACE.md): 5 reduction blocks, block b = an operation from the generator's Op
(:data:`tinysr.ops.OP_NAMES`, 16 choices, on the block's width n_b) then a reduction from ROp
(:data:`ROP_NAMES`, 7 choices: Conv(k, 2 n_b, stride 2), k in {1, 3, 5, 7}, and the same with
4 groups, k in {3, 5, 7}) then batch norm; after 5 blocks flatten -> optional bottleneck
Linear(m) -> Linear(1). Its genotype is :class:`DiscriminatorGenotype`.

The paper fixes the template above and leaves the rest open; the choices made here:

* Stem: conv3 (3 -> ``n_feats``, bias) -> LeakyReLU 0.2, without batch norm, the first layer of
  the VGG-style discriminator. The template needs *some* stem: Op maps n to n channels, so the
  first block cannot take RGB directly.
* Width: ``n_feats = 16``, the generator's n, so block b works on 16 * 2^b channels (16 .. 256)
  and the 5th reduction ends at 512 channels, the VGG-style discriminator's final width; on a
  128-px patch the flattened features (512 x 4 x 4 = 8192) are then exactly that network's.
  ``n_feats`` must be a multiple of 4 (the grouped operations use 4 groups).
* Patch size: ``input_size = 128``, the ESRGAN/BasicSR GAN patch; any multiple of 32 works (the
  5 reductions halve it 5 times; the last map is input_size / 32 on a side).
* Activations: LeakyReLU 0.2 (the SRGAN/ESRGAN discriminators' activation) after the operation
  and after the batch norm, i.e. a block is ``Op -> LReLU -> ROp -> BN -> LReLU``; without the
  first one a convolutional Op and the reduction would compose to one linear map. The
  activation follows every Op, ``identity`` included, so that a block is one uniform template.
  The reductions have no bias (batch norm follows them).
* Bottleneck: ``bottleneck = 100`` (the VGG-style head's width), followed by LeakyReLU 0.2;
  ``bottleneck=None`` maps the flattened features straight to the logit.
* ``spectral_norm=True`` wraps every Conv2d and Linear (the operations' own convolutions
  included) in ``torch.nn.utils.spectral_norm``; batch norm stays, as the template has it.
* The registered ``tpsr_d`` uses :data:`DEFAULT_D_GENOTYPE` (conv3 then rconv3 in every
  block): a plain reference point of the space, not a searched result.

Genotype text form: the 5 blocks separated by spaces, each ``OP>ROP`` (e.g.
``"conv3>rconv3 dsep5>rgconv5 identity>rconv1 se>rgconv7 inv3>rconv5"``). As integers
(:meth:`DiscriminatorGenotype.encode`) it is the 10 decisions ``(op_0, rop_0, ..., op_4, rop_4)``,
op an index into :data:`tinysr.ops.OP_NAMES`, rop an index into :data:`ROP_NAMES`; the sizes
of the decisions are :data:`DECISION_SIZES`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from ..ops import GROUPS, OP_NAMES, get_op
from .registry import register_family, register_model

NUM_BLOCKS = 5
LRELU_SLOPE = 0.2


def _lrelu() -> nn.Module:
    # Not in place: after an ``identity`` operation two activations would rewrite one saved tensor.
    return nn.LeakyReLU(LRELU_SLOPE)


def _apply_spectral_norm(module: nn.Module) -> None:
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.utils.spectral_norm(m)


def _check_input(x: torch.Tensor, channels: int, size: int, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2] != size or x.shape[3] != size:
        raise ValueError(f"{name} takes (N, {channels}, {size}, {size}) patches, got {tuple(x.shape)}")


# ------------------------------------------------------------------------ VGG-style (BasicSR)
VGG_INPUT_SIZES = (128, 256)


@register_family
class VGGStyleDiscriminator(nn.Module):
    """SRGAN/ESRGAN discriminator (BasicSR layout) for ``input_size`` x ``input_size`` patches (128 or 256)."""

    family = "vgg_discriminator"
    kind = "discriminator"

    def __init__(self, in_channels: int = 3, num_feat: int = 64, input_size: int = 128, spectral_norm: bool = False):
        super().__init__()
        if input_size not in VGG_INPUT_SIZES:
            raise ValueError(f"VGG-style discriminator: input_size {input_size} must be 128 or 256 (as in BasicSR)")
        self.in_channels, self.num_feat, self.input_size = in_channels, num_feat, input_size
        self.spectral_norm = bool(spectral_norm)
        widths = [num_feat, 2 * num_feat, 4 * num_feat, 8 * num_feat, 8 * num_feat]
        if input_size == 256:
            widths.append(8 * num_feat)
        self.num_stages = len(widths)
        self.conv0_0 = nn.Conv2d(in_channels, num_feat, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(num_feat, num_feat, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(num_feat, affine=True)
        for i in range(1, self.num_stages):
            cin, cout = widths[i - 1], widths[i]
            setattr(self, f"conv{i}_0", nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(cout, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(cout, cout, 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(cout, affine=True))
        self.linear1 = nn.Linear(widths[-1] * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=LRELU_SLOPE, inplace=True)
        if self.spectral_norm:
            _apply_spectral_norm(self)

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "num_feat": self.num_feat, "input_size": self.input_size,
                "spectral_norm": self.spectral_norm}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels, self.input_size, type(self).__name__)
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, self.num_stages):
            feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)


# --------------------------------------------------------------------------- the genotype
@dataclass(frozen=True)
class ROpSpec:
    """A reduction: Conv(k, 2n, groups, stride 2, padding k // 2), no bias."""

    name: str
    kernel: int
    groups: int

    def build(self, n: int) -> nn.Module:
        return nn.Conv2d(n, 2 * n, self.kernel, stride=2, padding=self.kernel // 2, groups=self.groups, bias=False)


ROPS: dict[str, ROpSpec] = {
    **{f"rconv{k}": ROpSpec(f"rconv{k}", k, 1) for k in (1, 3, 5, 7)},
    **{f"rgconv{k}": ROpSpec(f"rgconv{k}", k, GROUPS) for k in (3, 5, 7)},
}
ROP_NAMES: tuple[str, ...] = tuple(ROPS)
DECISION_SIZES: tuple[int, ...] = (len(OP_NAMES), len(ROP_NAMES)) * NUM_BLOCKS


@dataclass(frozen=True)
class DBlock:
    op: str
    rop: str

    def __str__(self) -> str:
        return f"{self.op}>{self.rop}"


@dataclass(frozen=True)
class DiscriminatorGenotype:
    """The 5 blocks of a :class:`SearchedDiscriminator`, each an operation and a reduction."""

    blocks: tuple[DBlock, ...]

    def __post_init__(self):
        if len(self.blocks) != NUM_BLOCKS:
            raise ValueError(f"a discriminator genotype has {NUM_BLOCKS} blocks, got {len(self.blocks)}")
        for i, b in enumerate(self.blocks):
            if b.op not in OP_NAMES:
                raise ValueError(f"block {i} ({b}): unknown operation {b.op!r}; known: {', '.join(OP_NAMES)}")
            if b.rop not in ROPS:
                raise ValueError(f"block {i} ({b}): unknown reduction {b.rop!r}; known: {', '.join(ROP_NAMES)}")

    @classmethod
    def parse(cls, text: str) -> "DiscriminatorGenotype":
        items = text.replace(",", " ").split()
        if len(items) != NUM_BLOCKS:
            raise ValueError(f"discriminator genotype {text!r} has {len(items)} blocks, expected {NUM_BLOCKS} "
                             "OP>ROP items separated by spaces")
        blocks = []
        for i, item in enumerate(items):
            parts = item.split(">")
            if len(parts) != 2:
                raise ValueError(f"cannot read block {i} {item!r} of discriminator genotype {text!r}: expected OP>ROP, "
                                 f"e.g. conv3>rconv3")
            blocks.append(DBlock(*parts))
        return cls(tuple(blocks))

    def __str__(self) -> str:
        return " ".join(str(b) for b in self.blocks)

    def encode(self) -> tuple[int, ...]:
        """The 10 decisions ``(op_0, rop_0, ..., op_4, rop_4)`` as indices into OP_NAMES / ROP_NAMES."""
        return tuple(i for b in self.blocks for i in (OP_NAMES.index(b.op), ROP_NAMES.index(b.rop)))

    @classmethod
    def decode(cls, decisions) -> "DiscriminatorGenotype":
        """Inverse of :meth:`encode`; each decision must lie in ``range(DECISION_SIZES[i])``."""
        decisions = [int(d) for d in decisions]
        if len(decisions) != len(DECISION_SIZES):
            raise ValueError(f"a discriminator genotype has {len(DECISION_SIZES)} decisions, got {len(decisions)}")
        for i, (d, size) in enumerate(zip(decisions, DECISION_SIZES)):
            if not 0 <= d < size:
                what = "operation" if i % 2 == 0 else "reduction"
                raise ValueError(f"decision {i} (block {i // 2} {what}) = {d}: must be in 0..{size - 1}")
        return cls(tuple(DBlock(OP_NAMES[decisions[2 * b]], ROP_NAMES[decisions[2 * b + 1]])
                         for b in range(NUM_BLOCKS)))

    @classmethod
    def random(cls, rng: random.Random | None = None) -> "DiscriminatorGenotype":
        """Sample uniformly from the discriminator search space."""
        rng = rng or random.Random()
        return cls.decode([rng.randrange(size) for size in DECISION_SIZES])


# Plain strided convolutions throughout: the searched template's counterpart of the VGG-style D.
DEFAULT_D_GENOTYPE = DiscriminatorGenotype.parse("conv3>rconv3 " * NUM_BLOCKS)


class DiscriminatorBlock(nn.Module):
    """``Op(n) -> LeakyReLU -> ROp(n -> 2n, stride 2) -> BatchNorm(2n) -> LeakyReLU``."""

    def __init__(self, op: str, rop: str, n: int):
        super().__init__()
        if rop not in ROPS:
            raise ValueError(f"unknown reduction {rop!r}; known: {', '.join(ROP_NAMES)}")
        self.op = get_op(op).build(n)
        self.act1 = _lrelu()
        self.reduce = ROPS[rop].build(n)
        self.bn = nn.BatchNorm2d(2 * n)
        self.act2 = _lrelu()

    def forward(self, x):
        return self.act2(self.bn(self.reduce(self.act1(self.op(x)))))


@register_family
class SearchedDiscriminator(nn.Module):
    """The TPSR discriminator template around a :class:`DiscriminatorGenotype` (see the module docstring)."""

    family = "searched_discriminator"
    kind = "discriminator"

    def __init__(self, genotype: DiscriminatorGenotype | str = DEFAULT_D_GENOTYPE, in_channels: int = 3,
                 n_feats: int = 16, input_size: int = 128, bottleneck: int | None = 100, spectral_norm: bool = False):
        super().__init__()
        if isinstance(genotype, str):
            genotype = DiscriminatorGenotype.parse(genotype)
        step = 2 ** NUM_BLOCKS
        if input_size < step or input_size % step:
            raise ValueError(f"searched discriminator: input_size {input_size} must be a positive multiple of {step}")
        if n_feats < GROUPS or n_feats % GROUPS:
            raise ValueError(f"searched discriminator: n_feats {n_feats} must be a positive multiple of {GROUPS} "
                             "(the grouped operations)")
        if bottleneck is not None and bottleneck < 1:
            raise ValueError(f"searched discriminator: bottleneck {bottleneck} must be None or at least 1")
        self.genotype, self.in_channels, self.n_feats = genotype, in_channels, n_feats
        self.input_size, self.bottleneck, self.spectral_norm = input_size, bottleneck, bool(spectral_norm)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, n_feats, 3, padding=1, bias=True), _lrelu())
        self.blocks = nn.Sequential(*[DiscriminatorBlock(b.op, b.rop, n_feats * 2 ** i)
                                      for i, b in enumerate(genotype.blocks)])
        side = input_size // step
        flat = n_feats * step * side * side
        if bottleneck is None:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 1))
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, bottleneck), _lrelu(), nn.Linear(bottleneck, 1))
        if self.spectral_norm:
            _apply_spectral_norm(self)

    def config(self) -> dict:
        return {"genotype": str(self.genotype), "in_channels": self.in_channels, "n_feats": self.n_feats,
                "input_size": self.input_size, "bottleneck": self.bottleneck, "spectral_norm": self.spectral_norm}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels, self.input_size, type(self).__name__)
        return self.head(self.blocks(self.stem(x)))


# ------------------------------------------------------------------------------ registry
@register_model("vgg_d128", family="vgg_discriminator",
                description="SRGAN/ESRGAN VGG-style discriminator (BasicSR), 64 features, 128-px patches")
def vgg_d128(**kw):
    return VGGStyleDiscriminator(**{"input_size": 128, **kw})


@register_model("vgg_d128_sn", family="vgg_discriminator",
                description="VGG-style discriminator with spectral norm, 64 features, 128-px patches")
def vgg_d128_sn(**kw):
    return VGGStyleDiscriminator(**{"input_size": 128, "spectral_norm": True, **kw})


@register_model("tpsr_d", family="searched_discriminator",
                description="TPSR discriminator template (plain conv3 blocks), 16 features, 128-px patches")
def tpsr_d(genotype=DEFAULT_D_GENOTYPE, **kw):
    return SearchedDiscriminator(genotype, **kw)
