"""Building blocks shared by the generator families."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import conv_macs, elementwise

# DIV2K RGB mean, used by EDSR-style networks (and the published TPSR).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Fixed input normalisation ``(x - mean) * rgb_range`` (``inverse``: ``x / rgb_range + mean``).

    Networks take RGB in [0, 1]; the published TPSR weights work in 0..255, hence ``rgb_range``.
    """

    def __init__(self, mean=DIV2K_MEAN, rgb_range: float = 255.0, inverse: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.rgb_range = float(rgb_range)
        self.inverse = inverse

    @staticmethod
    def mult_adds(h: int, w: int, channels: int = 3) -> float:
        """Mult-Adds on an h x w map: one subtraction and one scaling (or scaling and addition) per element."""
        return elementwise(channels * h * w, 2)

    def forward(self, x):
        if self.inverse:
            return x * (1.0 / self.rgb_range) + self.mean
        return (x - self.mean) * self.rgb_range


class SubPixelUp(nn.Module):
    """3x3 conv to ``cout * 4`` channels, then PixelShuffle(2) (optionally an activation)."""

    def __init__(self, cin: int, cout: int, act: nn.Module | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x):
        return self.act(self.shuffle(self.conv(x)))

    @staticmethod
    def mult_adds(cin: int, cout: int, h: int, w: int) -> float:
        """Mult-Adds on an h x w input without the optional activation (the pixel shuffle moves data only)."""
        return conv_macs(cin, cout * 4, 3, h, w)


def num_x2_steps(scale: int) -> int:
    steps = int(round(math.log2(scale)))
    if scale < 2 or 2 ** steps != scale:
        raise ValueError(f"scale must be a power of two >= 2, got {scale}")
    return steps
