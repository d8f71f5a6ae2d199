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
    ssim: float | None = None
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


def score_dataset(runner, ds, *, ssim: bool = True, lpips_model=None, save_dir: str | Path | None = None,
                  compare: bool = False, tile: int = 512, progress: bool = False, desc: str = "eval") -> list[Row]:
    """Per-image scores of ``runner`` on an SR dataset (``ds[i]`` -> (LR, HR) tensors, ``ds.names``).

    The one scoring loop of the package: ``tinysr eval``, training validation and the export's
    quality check all go through it. Paper conventions: the SR output is tiled as ``tinysr
    upscale`` does, clamped and rounded to 8 bits; Y-PSNR / SSIM with shave = scale.
    """
    from tqdm.auto import tqdm

    scale = runner.scale
    rows: list[Row] = []
    for i in tqdm(range(len(ds)), desc=desc, disable=not progress, leave=False):
        lr_t, hr_t = ds[i]
        lr = lr_t.numpy().transpose(1, 2, 0)
        hr = quantize(hr_t.numpy().transpose(1, 2, 0))
        sr = quantize(upscale_array(runner, lr, tile=tile))
        name = Path(ds.names[i]).stem
        row = Row(name, psnr_y(sr, hr, scale), ssim_y(sr, hr, scale) if ssim else None)
        if lpips_model is not None:
            from .metrics.lpips import lpips_distance

            row.lpips = lpips_distance(lpips_model, sr, hr)
        rows.append(row)
        if save_dir:
            save_image(Path(save_dir) / f"{name}.png", sr.astype(np.float32) / 255.0)
            if compare:
                comparison_png(Path(save_dir) / f"{name}_compare.png", quantize(lr), sr, hr, scale)
    return rows


def evaluate(runner, data_dir: str | Path, lpips: bool | None = None, save_dir: str | Path | None = None,
             compare: bool = False, tile: int = 512, progress: bool = True) -> list[Row]:
    """Scores on a benchmark folder (``HR/`` + ``LR_bicubic/X{s}/``, or HR images only)."""
    ds = benchmark_dataset(data_dir, runner.scale)
    return score_dataset(runner, ds, lpips_model=_lpips_model(lpips), save_dir=save_dir, compare=compare,
                         tile=tile, progress=progress, desc=f"eval {Path(data_dir).name}")


def mean_psnr(model, ds, tile: int = 512) -> float:
    """Mean Y-PSNR of a PyTorch model on an SR dataset (training validation, a search's proxy score).

    The model is put in eval mode for the pass and back in the mode it was in.
    """
    from .runtimes import TorchRunner

    was_training = model.training
    try:
        rows = score_dataset(TorchRunner(model), ds, ssim=False, tile=tile)
    finally:
        model.train(was_training)
    return float(np.mean([r.psnr for r in rows]))


def mean_row(rows: list[Row]) -> Row:
    ss = [r.ssim for r in rows if r.ssim is not None]
    lp = [r.lpips for r in rows if r.lpips is not None]
    return Row("mean", float(np.mean([r.psnr for r in rows])), float(np.mean(ss)) if ss else None,
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
