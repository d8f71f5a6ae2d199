"""VGG16 ``features`` in plain ``torch.nn`` (torchvision layout: 31 modules, indices 0-30).

torchvision cannot be imported on CPU-only installs here, so the network is rebuilt and loaded
from a torchvision-format state dict (``features.N.weight``; a full ``vgg16-397923af.pth`` works
too, its classifier is ignored).
"""
from __future__ import annotations

import torch
from torch import nn

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


def load_torchvision_features(path, net: nn.Sequential, what: str) -> nn.Sequential:
    """``net`` (a plain-torch ``features`` trunk) loaded strictly from the ``features.*`` tensors of a
    torchvision-format state dict, frozen, in eval mode."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    if not feats:
        raise ValueError(f"{path}: no 'features.*' tensors; expected a torchvision {what} state dict")
    net.load_state_dict(feats, strict=True)
    return net.eval().requires_grad_(False)


def load_vgg16_features(path) -> nn.Sequential:
    return load_torchvision_features(path, vgg16_features(), "VGG16")


class VGG16(nn.Module):
    """Stand-in for ``torchvision.models.vgg16``: just ``.features`` (what LPIPS and perceptual losses use)."""

    def __init__(self, features: nn.Sequential | None = None):
        super().__init__()
        self.features = features if features is not None else vgg16_features()
