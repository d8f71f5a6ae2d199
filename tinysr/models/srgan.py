"""SRGAN's generator, SRResNet: 16 residual blocks with batch norm, PReLU, sub-pixel upsampling."""
from __future__ import annotations

from torch import nn

from .blocks import SubPixelUp, num_x2_steps
from .registry import register_family, register_model


class ResidualBlock(nn.Module):
    def __init__(self, nf: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.BatchNorm2d(nf), nn.PReLU(),
                                  nn.Conv2d(nf, nf, 3, padding=1), nn.BatchNorm2d(nf))

    def forward(self, x):
        return x + self.body(x)


@register_family
class SRResNet(nn.Module):
    """Input and output RGB in [0, 1]."""

    family = "srgan"

    def __init__(self, scale: int = 4, nf: int = 64, num_blocks: int = 16):
        super().__init__()
        self.scale = scale
        self._config = dict(scale=scale, nf=nf, num_blocks=num_blocks)
        self.head = nn.Sequential(nn.Conv2d(3, nf, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[ResidualBlock(nf) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.BatchNorm2d(nf))
        self.up = nn.Sequential(*[SubPixelUp(nf, nf, nn.PReLU()) for _ in range(num_x2_steps(scale))])
        self.tail = nn.Conv2d(nf, 3, 9, padding=4)

    def config(self) -> dict:
        return dict(self._config)

    def forward(self, x):
        h = self.head(x)
        h = h + self.body_tail(self.body(h))
        return self.tail(self.up(h))


@register_model("srresnet_x4", family="srgan", scale=4,
                description="SRGAN generator (SRResNet): 16 residual blocks with BN, 64 features")
def srresnet_x4(**kw):
    return SRResNet(4, **kw)
