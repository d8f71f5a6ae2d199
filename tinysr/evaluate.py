"""``tinysr eval``: per-image PSNR / SSIM / LPIPS (VGG and/or AlexNet) on a benchmark folder,
paper conventions.

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
    """Scores of one image. ``lpips`` is LPIPS-VGG (the paper's); ``lpips_alex`` LPIPS-Alex."""

    image: str
    psnr: float
    ssim: float | None = None
    lpips: float | None = None
    lpips_alex: float | None = None


LPIPS_FIELDS = {"vgg": "lpips", "alex": "lpips_alex"}  # LPIPS trunk -> Row field
LPIPS_NETS = {"vgg": ("vgg",), "alex": ("alex",), "both": ("vgg", "alex")}  # ``--lpips-net`` choices


def _lpips_models(enabled: bool | None, net: str = "vgg") -> list:
    """LPIPS models for ``net`` (vgg | alex | both) when their weights can be found
    (``enabled=None``: quietly skip a trunk whose weights are absent)."""
    if net not in LPIPS_NETS:
        raise ValueError(f"lpips_net must be one of {', '.join(LPIPS_NETS)}, not {net!r}")
    if enabled is False:
        return []
    from .metrics.lpips import LPIPS
    from .weights_store import MissingWeightsError

    models = []
    for n in LPIPS_NETS[net]:
        try:
            models.append(LPIPS(net=n))
        except MissingWeightsError as e:
            if enabled:
                raise
            warnings.warn(f"LPIPS-{n} skipped: {e}")
    return models


def _lpips_model(enabled: bool | None):
    """LPIPS-VGG when its weights can be found (``enabled=None``: quietly skip if absent)."""
    models = _lpips_models(enabled, "vgg")
    return models[0] if models else None


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
    ``lpips_model``: an :class:`~tinysr.metrics.lpips.LPIPS` or a sequence of them; each fills the
    row field of its trunk (``lpips`` for VGG, ``lpips_alex`` for AlexNet).
    """
    from tqdm.auto import tqdm

    scale = runner.scale
    if lpips_model is None:
        lpips_models = []
    elif isinstance(lpips_model, (list, tuple)):
        lpips_models = list(lpips_model)
    else:
        lpips_models = [lpips_model]
    rows: list[Row] = []
    for i in tqdm(range(len(ds)), desc=desc, disable=not progress, leave=False):
        lr_t, hr_t = ds[i]
        lr = lr_t.numpy().transpose(1, 2, 0)
        hr = quantize(hr_t.numpy().transpose(1, 2, 0))
        sr = quantize(upscale_array(runner, lr, tile=tile))
        name = Path(ds.names[i]).stem
        row = Row(name, psnr_y(sr, hr, scale), ssim_y(sr, hr, scale) if ssim else None)
        if lpips_models:
            from .metrics.lpips import lpips_distance
        for m in lpips_models:
            setattr(row, LPIPS_FIELDS[m.net], lpips_distance(m, sr, hr))
        rows.append(row)
        if save_dir:
            save_image(Path(save_dir) / f"{name}.png", sr.astype(np.float32) / 255.0)
            if compare:
                comparison_png(Path(save_dir) / f"{name}_compare.png", quantize(lr), sr, hr, scale)
    return rows


def evaluate(runner, data_dir: str | Path, lpips: bool | None = None, save_dir: str | Path | None = None,
             compare: bool = False, tile: int = 512, progress: bool = True, lpips_net: str = "vgg") -> list[Row]:
    """Scores on a benchmark folder (``HR/`` + ``LR_bicubic/X{s}/``, or HR images only).

    ``lpips``: True / False / None (when the weights are found); ``lpips_net``: vgg | alex | both.
    """
    ds = benchmark_dataset(data_dir, runner.scale)
    return score_dataset(runner, ds, lpips_model=_lpips_models(lpips, lpips_net), save_dir=save_dir,
                         compare=compare, tile=tile, progress=progress, desc=f"eval {Path(data_dir).name}")


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


def _mean(values) -> float | None:
    vs = [v for v in values if v is not None]
    return float(np.mean(vs)) if vs else None


def mean_row(rows: list[Row]) -> Row:
    return Row("mean", float(np.mean([r.psnr for r in rows])), _mean(r.ssim for r in rows),
               _mean(r.lpips for r in rows), _mean(r.lpips_alex for r in rows))


def format_table(rows: list[Row]) -> str:
    """Text table. One LPIPS column reads ``LPIPS`` (VGG) or ``LPIPS-Alex``; both: ``LPIPS-VGG``, ``LPIPS-Alex``."""
    has_vgg = any(r.lpips is not None for r in rows)
    has_alex = any(r.lpips_alex is not None for r in rows)
    cols = []  # (header, width, field)
    if has_vgg:
        cols.append(("LPIPS-VGG" if has_alex else "LPIPS", 11 if has_alex else 9, "lpips"))
    if has_alex:
        cols.append(("LPIPS-Alex", 12, "lpips_alex"))
    head = f"{'image':<16}{'PSNR':>9}{'SSIM':>9}" + "".join(f"{h:>{w}}" for h, w, _ in cols)

    def num(v, w, digits):
        return f"{'-':>{w}}" if v is None else f"{v:>{w}.{digits}f}"

    lines = [head, "-" * len(head)]
    for r in rows + [mean_row(rows)]:
        if r.image == "mean":
            lines.append("-" * len(head))
        lines.append(f"{r.image:<16}{r.psnr:>9.3f}{num(r.ssim, 9, 4)}"
                     + "".join(num(getattr(r, f), w, 4) for _, w, f in cols))
    return "\n".join(lines)


def as_json(rows: list[Row]) -> dict:
    return {"images": [asdict(r) for r in rows], "mean": asdict(mean_row(rows))}
