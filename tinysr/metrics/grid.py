"""Grid residual: how much of the SR error repeats with the period of the up-sampling grid.

A sub-pixel (PixelShuffle) up-sampler computes each of the ``s x s`` positions of an output block
with its own filter, so a network can leave a fixed pattern of period ``s`` on top of its output
(a "dot grid" over smooth and dark regions). The grid residual measures that pattern in grey levels:

1. ``r = Y(SR) - Y(HR)``, Y of ITU-R BT.601 studio range (16..235) from 8-bit RGB, as
   :func:`tinysr.metrics.psnr_ssim.rgb_to_y` (the PSNR convention);
2. ``shave`` pixels are taken off every border (default: the period, as PSNR's shave = scale),
   the shave **rounded up to a multiple of the period** so that the first kept row and column are
   phase 0 of the output grid: the phases are the output image's ``(y mod s, x mod s)``;
3. the kept region is cut into ``B x B`` blocks from its top-left corner, ``B`` = ``block`` rounded
   down to a multiple of the period (x3: 30), so that every phase has ``(B/s)^2`` samples in a
   block; partial blocks at the right and bottom edges are left out;
4. in each block, the mean of ``r`` per phase (``s^2`` means), minus the block's mean (the mean of
   its phase means, equal to its pixel mean);
5. the RMS of those deviations over all blocks and phases.

Properties (checked in ``tests/test_grid_residual.py``): 0 for an exact copy and for a constant
offset (it is removed by the block mean); linear in the amplitude ``a`` of an added period-``s``
pattern (the pattern's own phase deviation RMS times ``a``); small for anything that does not
repeat with period ``s`` — aperiodic noise of standard deviation ``sigma`` averages over the
``(B/s)^2`` samples of each phase, leaving about ``sigma / (B/s) * sqrt(1 - 1/s^2)``. Per-block
means follow slowly varying content, so image structure contributes only what is left of it in the
phase averages (nonzero for real images, the same for every model that reproduces the content).
"""
from __future__ import annotations

import numpy as np

from .psnr_ssim import rgb_to_y

DEFAULT_BLOCK = 32


def grid_layout(h: int, w: int, period: int, block: int = DEFAULT_BLOCK,
                shave: int | None = None) -> tuple[int, int, int, int]:
    """``(offset, side, rows, cols)``: the kept region starts at ``(offset, offset)`` (the shave
    rounded up to a multiple of ``period``), blocks are ``side`` x ``side`` (``block`` rounded down to
    a multiple of ``period``), ``rows`` x ``cols`` full blocks fit inside the shaved ``h`` x ``w`` image."""
    period, block = int(period), int(block)
    if period < 1:
        raise ValueError(f"grid residual: the period must be >= 1, got {period}")
    if block < period:
        raise ValueError(f"grid residual: the block ({block}) must be at least the period ({period})")
    shave = period if shave is None else int(shave)
    if shave < 0:
        raise ValueError(f"grid residual: shave must be >= 0, got {shave}")
    offset = -(-shave // period) * period
    side = block // period * period
    rows = max(0, (h - shave - offset) // side)
    cols = max(0, (w - shave - offset) // side)
    return offset, side, rows, cols


def phase_deviations(residual: np.ndarray, period: int, block: int = DEFAULT_BLOCK,
                     shave: int | None = None) -> np.ndarray:
    """Per block and phase, the mean of a 2-D ``residual`` minus the block's mean:
    an array ``(rows, cols, period, period)`` (see the module docstring for the layout)."""
    r = np.asarray(residual, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"grid residual: expected a 2-D residual, got shape {r.shape}")
    offset, side, rows, cols = grid_layout(r.shape[0], r.shape[1], period, block, shave)
    if rows == 0 or cols == 0:
        raise ValueError(f"grid residual: a {r.shape[1]}x{r.shape[0]} image holds no full {side}x{side} block "
                         f"after a {offset}-pixel shave")
    n = side // period
    kept = r[offset:offset + rows * side, offset:offset + cols * side]
    phases = kept.reshape(rows, n, period, cols, n, period).mean(axis=(1, 4))  # rows, s, cols, s
    phases = phases.transpose(0, 2, 1, 3)  # rows, cols, phase y, phase x
    return phases - phases.mean(axis=(2, 3), keepdims=True)


def grid_residual(sr: np.ndarray, hr: np.ndarray, period: int, block: int = DEFAULT_BLOCK,
                  shave: int | None = None) -> float:
    """The grid residual of ``sr`` against ``hr`` (equal-sized RGB, 8-bit values; uint8 or float), in
    grey levels of Y: RMS over blocks and phases of the per-phase mean of ``Y(sr) - Y(hr)`` in each
    ``block`` x ``block`` block minus the block's mean, phases taken modulo ``period`` (the scale) on
    the output grid. ``shave``: border left out (default ``period``; rounded up to a multiple of the
    period to keep the phases aligned). ``ValueError`` when no full block fits."""
    sr, hr = np.asarray(sr), np.asarray(hr)
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in size")
    dev = phase_deviations(rgb_to_y(sr) - rgb_to_y(hr), period, block, shave)
    return float(np.sqrt(np.mean(dev * dev)))


def grid_residual_or_none(sr: np.ndarray, hr: np.ndarray, period: int, block: int = DEFAULT_BLOCK,
                          shave: int | None = None) -> float | None:
    """:func:`grid_residual`, or ``None`` for an image too small to hold one full block."""
    offset, side, rows, cols = grid_layout(sr.shape[0], sr.shape[1], period, block, shave)
    return grid_residual(sr, hr, period, block, shave) if rows and cols else None


def model_grid_residual(model, pairs, block: int = DEFAULT_BLOCK) -> float | None:
    """Mean grid residual of a PyTorch SR model on in-memory ``(lr, hr)`` CHW [0, 1] pairs (training
    validation): outputs clamped and rounded to 8 bits, the period = the scale of each pair; images
    too small for one full block are left out (``None`` when all are). The model runs in eval mode
    under ``torch.no_grad`` and is put back in the mode it was in."""
    import torch

    from ..imageio import quantize

    def uint8(chw):
        return quantize(chw.detach().cpu().numpy().transpose(1, 2, 0))

    was_training = model.training
    model.eval()
    values = []
    try:
        with torch.no_grad():
            for lr, hr in pairs:
                scale = hr.shape[-1] // lr.shape[-1]
                h, w = hr.shape[-2:]
                _, _, rows, cols = grid_layout(h, w, scale, block)
                if rows and cols:
                    values.append(grid_residual(uint8(model(lr[None])[0]), uint8(hr), scale, block))
    finally:
        model.train(was_training)
    return float(np.mean(values)) if values else None
