"""ESRGAN (RRDBNet) and MESRGAN, whose dense-block convolutions are MobileNetV2 bottlenecks."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import num_x2_steps
from .registry import register_family, register_model


def conv3(cin: int, cout: int) -> nn.Module:
    return nn.Conv2d(cin, cout, 3, padding=1)


class MBConv(nn.Module):
    """MobileNetV2 bottleneck from ``cin`` to ``cout``: 1x1 expand (x e), 3x3 depthwise, 1x1 project.

    Residual when ``cin == cout`` (as MobileNetV2); LeakyReLU(0.2) after expand and depthwise.
    """

    def __init__(self, cin: int, cout: int, expand: int = 2):
        super().__init__()
        hidden = cin * expand
        self.expand = nn.Conv2d(cin, hidden, 1)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.project = nn.Conv2d(hidden, cout, 1)
        self.residual = cin == cout

    def forward(self, x):
        y = F.leaky_relu(self.expand(x), 0.2)
        y = self.project(F.leaky_relu(self.dw(y), 0.2))
        return x + y if self.residual else y


class DenseBlock(nn.Module):
    """Five densely connected convolutions (growth ``gc``), LeakyReLU(0.2), residual scaling 0.2."""

    def __init__(self, nf: int = 64, gc: int = 32, conv=conv3):
        super().__init__()
        self.convs = nn.ModuleList(conv(nf + i * gc, gc if i < 4 else nf) for i in range(5))

    def forward(self, x):
        feats = [x]
        for i, conv in enumerate(self.convs):
            y = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(F.leaky_relu(y, 0.2))
        return x + 0.2 * y


class RRDB(nn.Module):
    def __init__(self, nf: int, gc: int, num_dense: int = 3, conv=conv3):
        super().__init__()
        self.dense = nn.Sequential(*[DenseBlock(nf, gc, conv) for _ in range(num_dense)])

    def forward(self, x):
        return x + 0.2 * self.dense(x)


@register_family
class RRDBNet(nn.Module):
    """ESRGAN generator; input and output RGB in [0, 1]. Nearest x2 upsampling + conv per step."""

    family = "esrgan"

    def __init__(self, scale: int = 4, nf: int = 64, gc: int = 32, num_blocks: int = 23, num_dense: int = 3,
                 mobile: bool = False, expand: int = 2):
        super().__init__()
        self.scale = scale
        self._config = dict(scale=scale, nf=nf, gc=gc, num_blocks=num_blocks, num_dense=num_dense,
                            mobile=mobile, expand=expand)
        conv = partial(MBConv, expand=expand) if mobile else conv3
        self.conv_first = conv3(3, nf)
        self.body = nn.Sequential(*[RRDB(nf, gc, num_dense, conv) for _ in range(num_blocks)])
        self.conv_body = conv3(nf, nf)
        self.ups = nn.ModuleList(conv3(nf, nf) for _ in range(num_x2_steps(scale)))
        self.conv_hr = conv3(nf, nf)
        self.conv_last = conv3(nf, 3)

    def config(self) -> dict:
        return dict(self._config)

    def forward(self, x):
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for up in self.ups:
            feat = F.leaky_relu(up(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


@register_model("esrgan_x4", family="esrgan", scale=4,
                description="ESRGAN RRDBNet: 23 RRDBs, 64 features, growth 32, residual scaling 0.2")
def esrgan_x4(**kw):
    return RRDBNet(4, **kw)


@register_model("mesrgan_x4", family="esrgan", scale=4,
                description="MESRGAN: RRDBNet with MobileNetV2 bottlenecks as dense-block convs, 1 dense block/RRDB")
def mesrgan_x4(num_blocks=23, num_dense=1, **kw):
    return RRDBNet(4, num_blocks=num_blocks, num_dense=num_dense, mobile=True, **kw)
