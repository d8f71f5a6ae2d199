"""MATLAB-compatible ``imresize(img, 1/s, 'bicubic')`` (antialiased), in numpy.

The standard benchmarks' LR images were made this way: cubic kernel a = -0.5,
widened by the scale when downscaling, source coordinate
``u = x / scale + 0.5 * (1 - 1 / scale)``, clamped (replicate) border, weights
normalised, height resized first, then width, and - for uint8 images - rounding
to uint8 after each pass. This reproduces ``LR_bicubic/X{2,4}`` bit-exactly.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (a = -0.5)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def _weights(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), each (out_len, taps): output i = sum_t w[i, t] * in[idx[i, t]]."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * cubic(scale * dist) if antialias else cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    idx = np.clip(idx, 1, in_len) - 1
    keep = np.any(w != 0, axis=0)
    return idx[:, keep].astype(np.int64), w[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    idx, w = _weights(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0).astype(np.float64)
    out = np.einsum("ot,ot...->o...", w, moved[idx])
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float | None = None, output_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an HxW or HxWxC array like MATLAB's ``imresize(..., 'bicubic')``.

    uint8 input is rounded and clamped to uint8 after each pass and returned as uint8;
    float input stays float (no rounding). Give ``scale`` (e.g. 1/4) or ``output_shape`` (H, W).
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    h, w = img.shape[:2]
    if output_shape is None:
        if scale is None:
            raise ValueError("give scale or output_shape")
        output_shape = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
        scales = (scale, scale)
    else:
        scales = (output_shape[0] / h, output_shape[1] / w)
    is_uint8 = img.dtype == np.uint8
    out = img
    for axis in (0, 1):
        out = _resize_axis(out, axis, output_shape[axis], scales[axis])
        if is_uint8:
            out = np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)  # MATLAB rounds halves up
    return out


def downscale(hr: np.ndarray, factor: int) -> np.ndarray:
    """LR image for an integer SR factor; ``hr`` is cropped to a multiple of ``factor`` first."""
    h, w = hr.shape[:2]
    hr = hr[: h - h % factor, : w - w % factor]
    return imresize(hr, 1.0 / factor)
