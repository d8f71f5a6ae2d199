"""LPIPS v0.1 (Zhang et al. 2018) with the VGG16 backbone.

Inputs are RGB in [0, 1] (scaled to [-1, 1] inside, as ``lpips`` does with ``normalize=True``).
Features of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 are unit-normalised along channels,
their squared differences weighted by the learned 1x1 linear layers, averaged spatially, summed.
"""
from __future__ import annotations

import torch
from torch import nn

from ..weights_store import find_weights
from .vgg import load_vgg16_features

TAPS = (3, 8, 15, 22, 29)  # module indices of relu1_2 ... relu5_3
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    def __init__(self, vgg_path=None, lin_path=None):
        super().__init__()
        vgg = load_vgg16_features(find_weights("vgg16", vgg_path))
        self.slices = nn.ModuleList()
        start = 0
        for tap in TAPS:
            self.slices.append(nn.Sequential(*[vgg[i] for i in range(start, tap + 1)]))
            start = tap + 1
        lin = torch.load(find_weights("lpips_vgg", lin_path), map_location="cpu", weights_only=True)
        self.lins = nn.ParameterList(nn.Parameter(lin[f"lin{i}.model.1.weight"], requires_grad=False)
                                     for i in range(len(TAPS)))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    @staticmethod
    def _unit(x, eps=1e-10):
        return x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distance per batch element; ``a``, ``b``: N x 3 x H x W in [0, 1]."""
        x = ((a * 2 - 1) - self.shift) / self.scale
        y = ((b * 2 - 1) - self.shift) / self.scale
        total = 0
        for sl, w in zip(self.slices, self.lins):
            x, y = sl(x), sl(y)
            d = (self._unit(x) - self._unit(y)) ** 2
            total = total + (d * w).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        return total.view(-1)


def lpips_distance(model: LPIPS, sr_uint8, hr_uint8) -> float:
    """LPIPS between two H x W x 3 uint8 images."""
    t = lambda im: torch.from_numpy(im.transpose(2, 0, 1).copy()).float().div(255.0)[None]  # noqa: E731
    with torch.no_grad():
        return float(model(t(sr_uint8), t(hr_uint8))[0])
