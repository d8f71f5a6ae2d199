"""``tinysr eval``: per-image PSNR / SSIM / LPIPS (VGG and/or AlexNet) / grid residual on a benchmark
folder, paper conventions.

Y channel (BT.601 studio range), shave = scale, SR output clamped and rounded to 8 bits.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data.datasets import benchmark_dataset
from .imageio import quantize, save_image
from .metrics.grid import grid_residual_or_none
from .metrics.psnr_ssim import psnr_y, ssim_y
from .upscale import upscale_array


@dataclass
class Row:
    """Scores of one image. ``lpips`` is LPIPS-VGG (the paper's); ``lpips_alex`` LPIPS-Alex; ``grid`` the
    grid residual (:mod:`tinysr.metrics.grid`, period = scale; None for an image under one block)."""

    image: str
    psnr: float
    ssim: float | None = None
    lpips: float | None = None
    lpips_alex: float | None = None
    grid: float | None = None


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


DEFAULT_CROP_LR = 48  # default side of a comparison crop, in LR pixels (192 HR pixels at x4)


@dataclass(frozen=True)
class Crop:
    """The region shown by a comparison figure: a square of ``size`` HR pixels (default
    ``DEFAULT_CROP_LR * scale``) whose top-left HR pixel is ``at`` = (y, x) (default: centred),
    clipped to the image (the side shrinks to the image's shorter side, the position moves inside)."""

    size: int | None = None
    at: tuple[int, int] | None = None

    def __post_init__(self):
        if self.size is not None and self.size < 1:
            raise ValueError(f"crop size {self.size}: the crop must be at least 1 HR pixel")
        if self.at is not None and (len(self.at) != 2 or min(self.at) < 0):
            raise ValueError(f"crop position {self.at}: expected (y, x), two HR pixel coordinates >= 0")

    def box(self, h: int, w: int, scale: int) -> tuple[int, int, int]:
        """(y, x, side) of the crop inside an ``h`` x ``w`` HR image."""
        c = max(1, min(self.size or DEFAULT_CROP_LR * scale, h, w))
        if self.at is None:
            return (h - c) // 2, (w - c) // 2, c
        return min(self.at[0], h - c), min(self.at[1], w - c), c

    def cut(self, img: np.ndarray, scale: int) -> np.ndarray:
        """The crop of an HR-sized image, as its own (contiguous) array."""
        y, x, c = self.box(img.shape[0], img.shape[1], scale)
        return np.ascontiguousarray(img[y:y + c, x:x + c])


def _label_font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable default font
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _fit_lines(draw, label: str, font, width: int) -> list[str]:
    """``label`` on one line if it fits ``width``, else broken at its double spaces; a line still too
    wide is shortened with "..."."""
    if draw.textlength(label, font=font) <= width:
        return [label]
    lines = []
    for part in (p.strip() for p in label.split("  ")):
        if not part:
            continue
        if draw.textlength(part, font=font) > width:
            while len(part) > 1 and draw.textlength(part + "...", font=font) > width:
                part = part[:-1]
            part = part.rstrip() + "..."
        lines.append(part)
    return lines or [label]


def comparison_figure(path: str | Path, bicubic: np.ndarray, panels: list[tuple[str, np.ndarray]], hr: np.ndarray,
                      *, bicubic_label: str = "bicubic", hr_label: str = "ground truth", min_side: int = 256,
                      gap: int = 4) -> None:
    """Write (atomically) a side-by-side figure: bicubic | each ``(label, image)`` of ``panels`` | ground truth.

    The images are equal-sized 8-bit crops; each is enlarged by nearest neighbour (an integer
    factor, to at least ``min_side`` pixels) and labelled underneath on a white strip, in Pillow's
    default font. A label too wide for its panel is broken at its double spaces
    (``"GAN  27.81 dB / 0.121"`` -> ``GAN`` over ``27.81 dB / 0.121``).
    """
    from PIL import Image, ImageDraw

    from .imageio import atomic_write, write_png

    items = [(bicubic_label, bicubic), *panels, (hr_label, hr)]
    h, w = hr.shape[:2]
    for label, img in items:
        if img.shape[:2] != (h, w):
            raise ValueError(f"comparison panel {label!r} is {img.shape[1]}x{img.shape[0]}, the ground truth {w}x{h}")
    k = max(1, -(-min_side // min(h, w)))
    ph, pw = h * k, w * k
    font = _label_font(max(12, min(pw // 18, 32)))
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [_fit_lines(draw, label, font, pw - 8) for label, _ in items]
    asc_top, _, _, asc_bottom = draw.textbbox((0, 0), "Ag", font=font)
    line_h = int(round((asc_bottom - asc_top) * 1.35))
    pad = max(4, line_h // 3)
    strip = 2 * pad + line_h * max(len(ls) for ls in lines)
    canvas = np.full((ph + strip, len(items) * pw + (len(items) - 1) * gap, 3), 255, np.uint8)
    for i, (_, img) in enumerate(items):
        rgb = np.asarray(img, np.uint8)
        rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3]
        canvas[:ph, i * (pw + gap):i * (pw + gap) + pw] = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for i, ls in enumerate(lines):
        for j, line in enumerate(ls):
            x = i * (pw + gap) + (pw - draw.textlength(line, font=font)) / 2
            draw.text((x, ph + pad + j * line_h - asc_top), line, fill=(0, 0, 0), font=font)
    pixels = np.asarray(im)
    atomic_write(path, lambda tmp: write_png(tmp, pixels))


def score_label(label: str, row: Row) -> str:
    """A figure label with the scores of ``row``: ``"GAN  27.81 dB / 0.121"`` (LPIPS-VGG, else LPIPS-Alex,
    when computed)."""
    lp = row.lpips if row.lpips is not None else row.lpips_alex
    return f"{label}  {row.psnr:.2f} dB" + ("" if lp is None else f" / {lp:.3f}")


def score_dataset(runner, ds, *, ssim: bool = True, lpips_model=None, save_dir: str | Path | None = None,
                  outputs: dict | None = None, crop: Crop | None = None, tile: int = 512, progress: bool = False,
                  desc: str = "eval") -> list[Row]:
    """Per-image scores of ``runner`` on an SR dataset (``ds[i]`` -> (LR, HR) tensors, ``ds.names``).

    The one scoring loop of the package: ``tinysr eval``, training validation and the export's
    quality check all go through it. Paper conventions: the SR output is tiled as ``tinysr
    upscale`` does, clamped and rounded to 8 bits; Y-PSNR / SSIM with shave = scale; the grid residual
    (:func:`tinysr.metrics.grid.grid_residual`, period = scale) of every image.
    ``lpips_model``: an :class:`~tinysr.metrics.lpips.LPIPS` or a sequence of them; each fills the
    row field of its trunk (``lpips`` for VGG, ``lpips_alex`` for AlexNet).
    ``save_dir``: write each 8-bit SR output there as ``NAME.png``. ``outputs``: a dict that receives
    each 8-bit SR output under its image's name (only its ``crop`` when given: the comparison
    figures reuse the outputs scored here without keeping whole images).
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
        row = Row(name, psnr_y(sr, hr, scale), ssim_y(sr, hr, scale) if ssim else None,
                  grid=grid_residual_or_none(sr, hr, scale))
        if lpips_models:
            from .metrics.lpips import lpips_distance
        for m in lpips_models:
            setattr(row, LPIPS_FIELDS[m.net], lpips_distance(m, sr, hr))
        rows.append(row)
        if save_dir:
            save_image(Path(save_dir) / f"{name}.png", sr.astype(np.float32) / 255.0)
        if outputs is not None:
            outputs[name] = crop.cut(sr, scale) if crop is not None else sr
    return rows


def model_folders(labels: list[str]) -> dict[str, str]:
    """A file-safe subfolder name per model label (``--save`` with several models)."""
    import re

    folders = {}
    for label in labels:
        folder = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "model"
        clash = next((other for other, f in folders.items() if f == folder), None)
        if clash is not None:
            raise ValueError(f"models {clash!r} and {label!r} would share the folder {folder!r}; "
                             "give them other labels")
        folders[label] = folder
    return folders


def _comparison_figures(ds, scale: int, rows: dict[str, list[Row]], crops: dict[str, dict], save_dir: Path,
                        crop: Crop, lpips_models: list) -> None:
    """One figure per image of ``ds``: bicubic | each model's (already computed) crop | ground truth."""
    from .data.bicubic import imresize

    by_name = {label: {r.image: r for r in rs} for label, rs in rows.items()}
    for i in range(len(ds)):
        lr_t, hr_t = ds[i]
        name = Path(ds.names[i]).stem
        hr = quantize(hr_t.numpy().transpose(1, 2, 0))
        bic = quantize(imresize(quantize(lr_t.numpy().transpose(1, 2, 0)), output_shape=hr.shape[:2]))
        bic_row = Row("bicubic", psnr_y(bic, hr, scale))
        if lpips_models:
            from .metrics.lpips import lpips_distance
        for m in lpips_models:
            setattr(bic_row, LPIPS_FIELDS[m.net], lpips_distance(m, bic, hr))
        panels = [(score_label(label, by_name[label][name]), crops[label][name]) for label in rows]
        comparison_figure(save_dir / f"{name}_compare.png", crop.cut(bic, scale), panels, crop.cut(hr, scale),
                          bicubic_label=score_label("bicubic", bic_row))


def evaluate_models(runners: dict, data_dir: str | Path, *, lpips: bool | None = None, lpips_net: str = "vgg",
                    save_dir: str | Path | None = None, compare: bool = False, crop: Crop | None = None,
                    tile: int = 512, progress: bool = True) -> dict[str, list[Row]]:
    """Scores of several models (``{label: runner}``) on a benchmark folder: ``{label: rows}``.

    ``save_dir``: the SR images, there for one model, in a subfolder per model (:func:`model_folders`)
    for several. ``compare``: also one figure per image, ``save_dir/NAME_compare.png``, bicubic | each
    model | ground truth on the ``crop`` (default: :class:`Crop`), each panel labelled with its Y-PSNR /
    LPIPS; the models' outputs are the ones scored (each model runs once).
    """
    if not runners:
        raise ValueError("no model to evaluate")
    if compare and not save_dir:
        raise ValueError("comparison figures are written into the save folder; give one")
    scales = {label: r.scale for label, r in runners.items()}
    if compare and len(set(scales.values())) > 1:
        raise ValueError("a comparison figure needs models of one scale, not "
                         + ", ".join(f"{label} x{s}" for label, s in scales.items()))
    crop = crop or Crop()
    lpips_models = _lpips_models(lpips, lpips_net)
    folders = model_folders(list(runners)) if save_dir and len(runners) > 1 else {}
    rows, crops = {}, {}
    for label, runner in runners.items():
        ds = benchmark_dataset(data_dir, runner.scale)
        out = None if not save_dir else Path(save_dir) / folders[label] if folders else Path(save_dir)
        crops[label] = {} if compare else None
        desc = f"eval {Path(data_dir).name}" + (f" {label}" if len(runners) > 1 else "")
        rows[label] = score_dataset(runner, ds, lpips_model=lpips_models, save_dir=out, outputs=crops[label],
                                    crop=crop, tile=tile, progress=progress, desc=desc)
    if compare:
        scale = next(iter(scales.values()))
        _comparison_figures(benchmark_dataset(data_dir, scale), scale, rows, crops, Path(save_dir), crop, lpips_models)
    return rows


def evaluate(runner, data_dir: str | Path, lpips: bool | None = None, save_dir: str | Path | None = None,
             compare: bool = False, tile: int = 512, progress: bool = True, lpips_net: str = "vgg",
             crop: Crop | None = None, label: str = "model") -> list[Row]:
    """Scores on a benchmark folder (``HR/`` + ``LR_bicubic/X{s}/``, or HR images only).

    ``lpips``: True / False / None (when the weights are found); ``lpips_net``: vgg | alex | both.
    ``compare``: also bicubic | model | ground-truth figures (the model's panel labelled ``label``);
    see :func:`evaluate_models`.
    """
    return evaluate_models({label: runner}, data_dir, lpips=lpips, lpips_net=lpips_net, save_dir=save_dir,
                           compare=compare, crop=crop, tile=tile, progress=progress)[label]


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
               _mean(r.lpips for r in rows), _mean(r.lpips_alex for r in rows), _mean(r.grid for r in rows))


def format_table(rows: list[Row]) -> str:
    """Text table. One LPIPS column reads ``LPIPS`` (VGG) or ``LPIPS-Alex``; both: ``LPIPS-VGG``, ``LPIPS-Alex``;
    then ``Grid`` (the grid residual, grey levels) when computed."""
    has_vgg = any(r.lpips is not None for r in rows)
    has_alex = any(r.lpips_alex is not None for r in rows)
    cols = []  # (header, width, field)
    if has_vgg:
        cols.append(("LPIPS-VGG" if has_alex else "LPIPS", 11 if has_alex else 9, "lpips"))
    if has_alex:
        cols.append(("LPIPS-Alex", 12, "lpips_alex"))
    if any(r.grid is not None for r in rows):
        cols.append(("Grid", 8, "grid"))
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
