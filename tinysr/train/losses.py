"""Losses of the GAN stage: the VGG16 perceptual loss and the two adversarial losses.

*Perceptual*: the distance between VGG16 features of the SR output and of the ground truth at one
layer (``relu2_2``, ``conv5_3``, ...; the names of :data:`VGG16_LAYERS`), inputs in [0, 1]
normalised with the ImageNet mean and std as torchvision's VGG expects. The trunk is the plain-torch
VGG16 of :mod:`tinysr.metrics.vgg`, the one LPIPS-VGG uses, frozen.

*Adversarial*, on the discriminator's logits ``real`` = D(HR) and ``fake`` = D(SR):

* ``standard`` (SRGAN; TPSR Eq. 8): L_D = BCE(real, 1) + BCE(fake, 0); the generator's term is the
  non-saturating BCE(fake, 1).
* ``relativistic`` (the relativistic average GAN of ESRGAN, as BasicSR computes it):
  L_D = (BCE(real - mean(fake), 1) + BCE(fake - mean(real), 0)) / 2, and the generator's term the
  same with the labels swapped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.vgg import IMAGENET_MEAN, IMAGENET_STD, VGG16_CFG, load_vgg16_features


def _vgg16_layer_names() -> dict[str, int]:
    """``conv{b}_{i}`` / ``relu{b}_{i}`` -> module index in VGG16 ``features`` (torchvision numbering)."""
    names, index, block, conv = {}, 0, 1, 1
    for v in VGG16_CFG:
        if v == "M":
            index, block, conv = index + 1, block + 1, 1
            continue
        names[f"conv{block}_{conv}"], names[f"relu{block}_{conv}"] = index, index + 1
        index, conv = index + 2, conv + 1
    return names


VGG16_LAYERS = _vgg16_layer_names()


class PerceptualLoss(nn.Module):
    """``criterion`` (``l1`` | ``mse``) between VGG16 features at ``layer`` of two N x 3 x H x W
    batches in [0, 1]; the second (the ground truth) carries no gradient."""

    def __init__(self, layer: str = "relu2_2", criterion: str = "l1", weights: str | None = None):
        super().__init__()
        if layer not in VGG16_LAYERS:
            raise ValueError(f"perceptual layer must be a VGG16 layer ({', '.join(VGG16_LAYERS)}), got {layer!r}")
        if criterion not in ("l1", "mse"):
            raise ValueError(f"perceptual criterion must be l1 or mse, got {criterion!r}")
        from ..weights_store import find_weights

        feats = load_vgg16_features(find_weights("vgg16", weights))
        self.layer, self.criterion = layer, criterion
        self.features = nn.Sequential(*[feats[i] for i in range(VGG16_LAYERS[layer] + 1)])
        for m in self.features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the tapped activation must not be overwritten by a later layer
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # the trunk stays frozen in eval mode
        return super().train(False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        f_sr = self.features((sr - self.mean) / self.std)
        with torch.no_grad():
            f_hr = self.features((hr - self.mean) / self.std)
        return F.l1_loss(f_sr, f_hr) if self.criterion == "l1" else F.mse_loss(f_sr, f_hr)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """L_D from the logits of real (HR) and generated patches; ``fake`` must be detached from G."""
    if kind == "standard":
        return _bce(real, 1.0) + _bce(fake, 0.0)
    if kind == "relativistic":
        return 0.5 * (_bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0))
    raise ValueError(f"adversarial loss must be standard or relativistic, got {kind!r}")


def generator_adversarial_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's adversarial term; ``real``: D(HR) (detached), ``fake``: D(G(LR)) with gradient."""
    if kind == "standard":
        return _bce(fake, 1.0)
    if kind == "relativistic":
        return 0.5 * (_bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0))
    raise ValueError(f"adversarial loss must be standard or relativistic, got {kind!r}")
