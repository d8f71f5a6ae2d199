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


def load_vgg16_features(path) -> nn.Sequential:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    if not feats:
        raise ValueError(f"{path}: no 'features.*' tensors; expected a torchvision VGG16 state dict")
    net = vgg16_features()
    net.load_state_dict(feats, strict=True)
    return net.eval().requires_grad_(False)


class VGG16(nn.Module):
    """Stand-in for ``torchvision.models.vgg16``: just ``.features`` (what LPIPS and perceptual losses use)."""

    def __init__(self, features: nn.Sequential | None = None):
        super().__init__()
        self.features = features if features is not None else vgg16_features()
