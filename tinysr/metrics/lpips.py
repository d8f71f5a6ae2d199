"""LPIPS v0.1 (Zhang et al. 2018) with the VGG16 (default, the paper's) or AlexNet backbone.

Inputs are RGB in [0, 1] (scaled to [-1, 1] inside, as ``lpips`` does with ``normalize=True``).
Features at the trunk's taps (VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; AlexNet:
relu1 ... relu5) are unit-normalised along channels, their squared differences weighted by the
learned 1x1 linear layers, averaged spatially, summed. ``LPIPS(net="alex")`` is the ``lpips``
package's default variant, the one most of the literature reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..weights_store import find_weights
from .alexnet import load_alexnet_features
from .vgg import load_vgg16_features


@dataclass(frozen=True)
class Trunk:
    weights: str  # weights_store name of the trunk
    lin_weights: str  # weights_store name of the v0.1 linear layers
    load: Callable[..., nn.Sequential]
    taps: tuple[int, ...]  # module indices of the tapped ReLUs in ``features``
    channels: tuple[int, ...]


TRUNKS = {
    "vgg": Trunk("vgg16", "lpips_vgg", load_vgg16_features, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
    "alex": Trunk("alexnet", "lpips_alex", load_alexnet_features, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
}
NETS = tuple(TRUNKS)
TAPS = TRUNKS["vgg"].taps  # module indices of relu1_2 ... relu5_3
CHANNELS = TRUNKS["vgg"].channels
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """``net``: ``"vgg"`` or ``"alex"``; ``trunk_path`` / ``lin_path``: explicit weight files
    (default: looked up by :func:`tinysr.weights_store.find_weights`). ``vgg_path`` is the
    former name of ``trunk_path``."""

    def __init__(self, vgg_path=None, lin_path=None, *, net: str = "vgg", trunk_path=None):
        super().__init__()
        if net not in TRUNKS:
            raise ValueError(f"LPIPS net must be one of {', '.join(NETS)}, not {net!r}")
        if vgg_path is not None and net != "vgg":
            raise ValueError(f"vgg_path given for LPIPS(net={net!r}); use trunk_path")
        spec = TRUNKS[net]
        self.net = net
        feats = spec.load(find_weights(spec.weights, trunk_path if trunk_path is not None else vgg_path))
        self.slices = nn.ModuleList()
        start = 0
        for tap in spec.taps:
            self.slices.append(nn.Sequential(*[feats[i] for i in range(start, tap + 1)]))
            start = tap + 1
        lin = torch.load(find_weights(spec.lin_weights, lin_path), map_location="cpu", weights_only=True)
        self.lins = nn.ParameterList(nn.Parameter(lin[f"lin{i}.model.1.weight"], requires_grad=False)
                                     for i in range(len(spec.taps)))
        for w, c in zip(self.lins, spec.channels):
            if tuple(w.shape) != (1, c, 1, 1):
                raise ValueError(f"LPIPS-{net} linear layers: expected shape (1, {c}, 1, 1), got {tuple(w.shape)}")
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
