"""AlexNet ``features`` in plain ``torch.nn`` (torchvision layout: 13 modules, indices 0-12).

torchvision cannot be imported on CPU-only installs here, so the network is rebuilt and loaded
from a torchvision-format state dict (``features.N.weight``; a full ``alexnet-owt-7be5be79.pth``
works too, its classifier is ignored). The LPIPS-Alex trunk.
"""
from __future__ import annotations

import torch
from torch import nn


def alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )


def load_alexnet_features(path) -> nn.Sequential:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    if not feats:
        raise ValueError(f"{path}: no 'features.*' tensors; expected a torchvision AlexNet state dict")
    net = alexnet_features()
    net.load_state_dict(feats, strict=True)
    return net.eval().requires_grad_(False)


class AlexNet(nn.Module):
    """Stand-in for ``torchvision.models.alexnet``: just ``.features`` (what LPIPS uses)."""

    def __init__(self, features: nn.Sequential | None = None):
        super().__init__()
        self.features = features if features is not None else alexnet_features()
