"""``tinysr eval``: per-image PSNR / SSIM / LPIPS on a benchmark folder, paper conventions.

Y channel (BT.601 studio range), shave = scale, SR output clamped and rounded to 8 bits.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data.datasets import benchmark_dataset
from .imageio import quantize, save_image
from .metrics.psnr_ssim import psnr_y, ssim_y
from .upscale import upscale_array


@dataclass
class Row:
    image: str
    psnr: float
    ssim: float
    lpips: float | None = None


def _lpips_model(enabled: bool | None):
    """LPIPS when its weights can be found (``enabled=None``: quietly skip if absent)."""
    if enabled is False:
        return None
    from .metrics.lpips import LPIPS
    from .weights_store import MissingWeightsError

    try:
        return LPIPS()
    except MissingWeightsError as e:
        if enabled:
            raise
        warnings.warn(f"LPIPS skipped: {e}")
        return None


def comparison_png(path: Path, lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int, crop: int = 96):
    """Side by side: bicubic | model | ground truth, a crop around the image centre (HR pixels)."""
    from PIL import Image

    from .data.bicubic import imresize

    bic = imresize(lr, output_shape=hr.shape[:2])
    h, w = hr.shape[:2]
    c = min(crop * scale // 2, h, w)
    y, x = (h - c) // 2, (w - c) // 2
    panels = [a[y:y + c, x:x + c] for a in (bic, sr, hr)]
    size = max(c, 256)
    gap = np.full((size, 4, 3), 255, np.uint8)
    parts = []
    for i, p in enumerate(panels):
        parts.append(np.asarray(Image.fromarray(p).resize((size, size), Image.NEAREST)))
        if i < 2:
            parts.append(gap)
    save_image(path, np.concatenate(parts, axis=1).astype(np.float32) / 255.0)


def evaluate(runner, data_dir: str | Path, lpips: bool | None = None, save_dir: str | Path | None = None,
             compare: bool = False, tile: int = 512, progress: bool = True) -> list[Row]:
    from tqdm.auto import tqdm

    scale = runner.scale
    ds = benchmark_dataset(data_dir, scale)
    lp = _lpips_model(lpips)
    rows: list[Row] = []
    for i in tqdm(range(len(ds)), desc=f"eval {Path(data_dir).name}", disable=not progress, leave=False):
        lr_t, hr_t = ds[i]
        lr = lr_t.numpy().transpose(1, 2, 0)
        hr = quantize(hr_t.numpy().transpose(1, 2, 0))
        sr = quantize(upscale_array(runner, lr, tile=tile))
        name = Path(ds.names[i]).stem
        row = Row(name, psnr_y(sr, hr, scale), ssim_y(sr, hr, scale))
        if lp is not None:
            from .metrics.lpips import lpips_distance

            row.lpips = lpips_distance(lp, sr, hr)
        rows.append(row)
        if save_dir:
            save_image(Path(save_dir) / f"{name}.png", sr.astype(np.float32) / 255.0)
            if compare:
                comparison_png(Path(save_dir) / f"{name}_compare.png", quantize(lr), sr, hr, scale)
    return rows


def mean_row(rows: list[Row]) -> Row:
    lp = [r.lpips for r in rows if r.lpips is not None]
    return Row("mean", float(np.mean([r.psnr for r in rows])), float(np.mean([r.ssim for r in rows])),
               float(np.mean(lp)) if lp else None)


def format_table(rows: list[Row]) -> str:
    has_lp = any(r.lpips is not None for r in rows)
    head = f"{'image':<16}{'PSNR':>9}{'SSIM':>9}" + (f"{'LPIPS':>9}" if has_lp else "")
    lines = [head, "-" * len(head)]
    for r in rows + [mean_row(rows)]:
        if r.image == "mean":
            lines.append("-" * len(head))
        lines.append(f"{r.image:<16}{r.psnr:>9.3f}{r.ssim:>9.4f}" + (f"{r.lpips:>9.4f}" if has_lp else ""))
    return "\n".join(lines)


def as_json(rows: list[Row]) -> dict:
    return {"images": [asdict(r) for r in rows], "mean": asdict(mean_row(rows))}
