"""Upscaling images of any size with bounded memory: overlapping tiles, seamless.

The LR image is cut into ``tile`` x ``tile`` cores; each is run with ``overlap`` extra
pixels of real context on every side (so convolutions near a core's edge see the same
pixels as in an untiled run) and only the core's SR pixels are kept. With an overlap at
least the network's receptive-field radius the tiled output equals the untiled one.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .imageio import ImageReadError, LoadedImage, load_image, output_format, quantize, save_image


def tiles(h: int, w: int, tile: int):
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            yield y, x, min(tile, h - y), min(tile, w - x)


def tile_plan(runner, tile: int, overlap: int) -> tuple[int, int]:
    """(tile, overlap) to use: a fixed-shape artifact's input must hold a tile plus its context."""
    fixed = getattr(runner, "fixed_size", None)
    if fixed is None:
        return tile, overlap
    side = min(fixed)
    if side - 2 * overlap < 8:
        reduced = max(0, (side - 8) // 2)
        warnings.warn(f"the model's fixed input {fixed[1]}x{fixed[0]} leaves no room for an overlap of {overlap}; "
                      f"using {reduced} (seams may show: export at a larger --input-size)")
        overlap = reduced
    return side - 2 * overlap, overlap


def upscale_array(runner, rgb: np.ndarray, tile: int = 256, overlap: int = 16, progress=None,
                  bit_depth: int | None = None) -> np.ndarray:
    """``rgb``: H x W x 3 float32 in [0, 1] -> sH x sW x 3 float32 clamped to [0, 1], or, with
    ``bit_depth`` 8 / 16, the uint8 / uint16 image (each tile quantized as it is written, so a
    huge output never exists in float)."""
    h, w = rgb.shape[:2]
    s = runner.scale
    fixed = getattr(runner, "fixed_size", None)
    tile, overlap = tile_plan(runner, tile, overlap)
    dtype = {None: np.float32, 8: np.uint8, 16: np.uint16}[bit_depth]
    out = np.empty((h * s, w * s, 3), dtype=dtype)
    chw = rgb.transpose(2, 0, 1)
    for y, x, th, tw in tiles(h, w, tile):
        if fixed is None:
            y0, x0 = max(0, y - overlap), max(0, x - overlap)
            y1, x1 = min(h, y + th + overlap), min(w, x + tw + overlap)
        else:
            # slide the fixed window inside the image, so that its borders are the image's own
            # (the network then pads exactly as in an untiled run); pad only images smaller than it
            y0 = max(0, min(y - overlap, h - fixed[0]))
            x0 = max(0, min(x - overlap, w - fixed[1]))
            y1, x1 = min(h, y0 + fixed[0]), min(w, x0 + fixed[1])
        patch = chw[:, y0:y1, x0:x1]
        ph, pw = patch.shape[1:]
        if fixed is not None and (ph, pw) != fixed:
            patch = np.pad(patch, ((0, 0), (0, fixed[0] - ph), (0, fixed[1] - pw)), mode="edge")
        sr = runner(np.ascontiguousarray(patch[None], dtype=np.float32))[0]
        oy, ox = (y - y0) * s, (x - x0) * s
        core = sr[:, oy:oy + th * s, ox:ox + tw * s].transpose(1, 2, 0)
        out[y * s:(y + th) * s, x * s:(x + tw) * s] = quantize(core, bit_depth) if bit_depth else core
        if progress is not None:
            progress.update(1)
    return out if bit_depth else np.clip(out, 0.0, 1.0, out=out)


def count_tiles(h: int, w: int, tile: int, runner, overlap: int) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tile, _ = tile_plan(runner, tile, overlap)
    return len(range(0, h, tile)) * len(range(0, w, tile))


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """The alpha channel is upscaled separately, by bicubic interpolation."""
    im = Image.fromarray(alpha.astype(np.float32), mode="F")
    up = im.resize((alpha.shape[1] * scale, alpha.shape[0] * scale), Image.BICUBIC)
    return np.clip(np.asarray(up), 0, 1)


@dataclass
class UpscaleReport:
    src: Path
    dst: Path
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    seconds: float


def upscale_image(runner, img: LoadedImage, tile: int = 256, overlap: int = 16, progress=None):
    """(rgb, alpha): rgb as uint8 / uint16 (the source's bit depth), alpha as float in [0, 1] or None."""
    rgb = upscale_array(runner, img.rgb, tile, overlap, progress, bit_depth=img.bit_depth)
    alpha = upscale_alpha(img.alpha, runner.scale) if img.alpha is not None else None
    return rgb, alpha


def output_path(src: Path, out: Path, n_inputs: int, suffix: str | None) -> Path:
    """``-o`` is a file for one input, else a folder (created) that receives ``NAME.png``."""
    if n_inputs == 1 and out.suffix:
        return out
    return out / (src.stem + (suffix or ".png"))


def upscale_files(runner, files: list[Path], out: Path, tile: int = 256, overlap: int = 16,
                  progress: bool = True, fmt: str | None = None, on_error=None) -> list[UpscaleReport]:
    """Upscale each file; with ``on_error(src, exc)`` a file that cannot be read or written is
    reported there and the batch goes on (without it, the first such error is raised)."""
    from tqdm.auto import tqdm

    if len(files) == 1 and out.suffix:
        output_format(out)  # an unsupported extension fails before any work
    reports = []
    for src in tqdm(files, desc="images", disable=not progress or len(files) == 1, unit="img"):
        t0 = time.perf_counter()
        try:
            img = load_image(src)
            h, w = img.rgb.shape[:2]
            with tqdm(total=count_tiles(h, w, tile, runner, overlap), desc=src.name, unit="tile",
                      disable=not progress, leave=False) as bar:
                rgb, alpha = upscale_image(runner, img, tile, overlap, bar)
            dst = output_path(src, out, len(files), fmt)
            save_image(dst, rgb, alpha, img.grayscale, img.bit_depth)
        except (ImageReadError, OSError) as e:
            if on_error is None:
                raise
            on_error(src, e)
            continue
        reports.append(UpscaleReport(src, dst, (w, h), (rgb.shape[1], rgb.shape[0]), time.perf_counter() - t0))
    return reports
