"""AlexNet ``features`` in plain ``torch.nn`` (torchvision layout: 13 modules, indices 0-12).

torchvision cannot be imported on CPU-only installs here, so the network is rebuilt and loaded
from a torchvision-format state dict (``features.N.weight``; a full ``alexnet-owt-7be5be79.pth``
works too, its classifier is ignored). The LPIPS-Alex trunk.
"""
from __future__ import annotations

from torch import nn

from .vgg import load_torchvision_features


def alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )


def load_alexnet_features(path) -> nn.Sequential:
    return load_torchvision_features(path, alexnet_features(), "AlexNet")


class AlexNet(nn.Module):
    """Stand-in for ``torchvision.models.alexnet``: just ``.features`` (what LPIPS uses)."""

    def __init__(self, features: nn.Sequential | None = None):
        super().__init__()
        self.features = features if features is not None else alexnet_features()
