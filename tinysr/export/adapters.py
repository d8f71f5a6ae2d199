"""Wrappers that give an exported network the I/O a deployment wants."""
from __future__ import annotations

from torch import nn


class IOAdapter(nn.Module):
    """Value range (``value_max``: 1 or 255) and, for ONNX, NHWC layout around an NCHW [0, 1] model."""

    def __init__(self, model: nn.Module, value_max: float = 1.0, nhwc: bool = False):
        super().__init__()
        self.model, self.value_max, self.nhwc = model, float(value_max), nhwc
        self.scale = model.scale

    def forward(self, x):
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        if self.value_max != 1.0:
            x = x * (1.0 / self.value_max)
        y = self.model(x)
        if self.value_max != 1.0:
            y = y * self.value_max
        return y.permute(0, 2, 3, 1) if self.nhwc else y
