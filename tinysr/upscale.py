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

from .imageio import IMAGE_EXTENSIONS, ImageReadError, LoadedImage, load_image, output_format, quantize, save_image


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


def upscale_alpha(alpha: np.ndarray, scale: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """The alpha channel is upscaled separately, by bicubic interpolation (to ``size`` (w, h) if given)."""
    im = Image.fromarray(alpha.astype(np.float32), mode="F")
    up = im.resize(size or (alpha.shape[1] * scale, alpha.shape[0] * scale), Image.BICUBIC)
    return np.clip(np.asarray(up), 0, 1)


# --- --outscale: any final scale ------------------------------------------------------------------
def final_size(w: int, h: int, scale: int, outscale: float | None) -> tuple[int, int]:
    """(width, height) of the output: the model's ``scale``, or ``outscale`` x the input (rounded)."""
    if outscale is None:
        return w * scale, h * scale
    return max(1, round(w * outscale)), max(1, round(h * outscale))


def check_outscale(outscale: float | None) -> None:
    if outscale is not None and not (0 < outscale <= 64):
        raise ValueError(f"--outscale {outscale:g}: the final scale must be above 0 and at most 64 "
                         "(e.g. 2 for x2 from a x4 model)")


def resize_output(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The model's H x W x 3 uint8 / uint16 output resized to ``size`` (width, height) by Lanczos, as
    Real-ESRGAN's --outscale does (Pillow's Lanczos is antialiased when shrinking: x2 and x3 from a
    x4 model do not alias). 16-bit images are resized per channel in float."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    if rgb.dtype == np.uint8:
        return np.asarray(Image.fromarray(rgb, "RGB").resize(size, Image.LANCZOS))
    top = float(np.iinfo(rgb.dtype).max)
    out = np.empty((size[1], size[0], 3), rgb.dtype)
    for c in range(3):
        ch = np.asarray(Image.fromarray(rgb[..., c].astype(np.float32), "F").resize(size, Image.LANCZOS))
        out[..., c] = np.clip(np.floor(ch + 0.5), 0, top)
    return out


# --- --tile 0: the tile from the memory available -----------------------------------------------------
#: without /proc/meminfo (not Linux) or an activation estimate (exported models): today's default tile
FALLBACK_TILE = 256
#: the share of the available memory the tile's activations may take (the image, its output and the
#: rest of the process need the remainder)
MEMORY_SHARE = 0.25
TILE_LIMITS = (32, 2048)


def mem_available(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """MemAvailable in bytes (None where it cannot be read: not Linux, an old kernel)."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                value, unit = line.split()[1:3]
                return int(value) * {"kB": 1024, "mB": 1 << 20, "gB": 1 << 30}.get(unit, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def activation_bytes_per_pixel(runner) -> float | None:
    """Bytes of memory a forward pass takes per LR pixel, for a PyTorch runner: every layer's output
    kept at once (an upper bound of what eager inference keeps alive), the input, and the largest
    convolution's im2col workspace; measured on a 16 x 16 probe. None for exported models."""
    import torch

    model = getattr(runner, "model", None)
    if not isinstance(model, torch.nn.Module):
        return None
    side = 16
    total = [0]
    workspace = [0]
    hooks = []

    def hook(module, inputs, output):
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for o in outs:
            if isinstance(o, torch.Tensor):
                total[0] += o.numel() * o.element_size()
        if isinstance(module, torch.nn.Conv2d) and isinstance(output, torch.Tensor):
            kh, kw = module.kernel_size
            cols = kh * kw * module.in_channels // module.groups
            workspace[0] = max(workspace[0], cols * output.shape[-2] * output.shape[-1] * 4)

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    try:
        param = next(model.parameters(), None)
        if param is not None and param.device.type == "meta":
            return None
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side))
    finally:
        for h in hooks:
            h.remove()
    return (total[0] + workspace[0] + 3 * 4 * side * side) / (side * side)


def choose_tile(bytes_per_pixel: float | None, overlap: int, available: int | None) -> tuple[int, str]:
    """(tile side, reason): the largest square tile (multiple of 8, within :data:`TILE_LIMITS`) whose
    activations, context included, fit :data:`MEMORY_SHARE` of ``available`` bytes; the fallback
    tile where either figure is unknown."""
    if available is None:
        return FALLBACK_TILE, f"MemAvailable unknown: default {FALLBACK_TILE}"
    if not bytes_per_pixel:
        return FALLBACK_TILE, f"no activation estimate for this model: default {FALLBACK_TILE}"
    budget = available * MEMORY_SHARE
    side = int((budget / bytes_per_pixel) ** 0.5) - 2 * overlap
    side = max(TILE_LIMITS[0], min(TILE_LIMITS[1], side // 8 * 8))
    return side, (f"MemAvailable {available / 2 ** 30:.1f} GiB, ~{bytes_per_pixel / 1024:.1f} KiB per LR pixel, "
                  f"{MEMORY_SHARE:.0%} of it for activations")


def auto_tile(runner, overlap: int, meminfo: str | Path = "/proc/meminfo") -> tuple[int, str]:
    return choose_tile(activation_bytes_per_pixel(runner), overlap, mem_available(meminfo))


@dataclass
class UpscaleReport:
    src: Path
    dst: Path
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    seconds: float
    detail: str = ""


def upscale_image(runner, img: LoadedImage, tile: int = 256, overlap: int = 16, progress=None,
                  outscale: float | None = None):
    """(rgb, alpha): rgb as uint8 / uint16 (the source's bit depth), alpha as float in [0, 1] or None;
    with ``outscale``, resized to that scale of the input."""
    rgb = upscale_array(runner, img.rgb, tile, overlap, progress, bit_depth=img.bit_depth)
    h, w = img.rgb.shape[:2]
    size = final_size(w, h, runner.scale, outscale)
    rgb = resize_output(rgb, size)
    alpha = upscale_alpha(img.alpha, runner.scale, size) if img.alpha is not None else None
    return rgb, alpha


OUTPUT_EXTS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tif": ".tif", "tiff": ".tif"}


def output_path(src: Path, out: Path, n_inputs: int, ext: str | None = None, suffix: str | None = None) -> Path:
    """``-o`` is a file for one input, else a folder (created) that receives ``NAME[_SUFFIX].EXT``:
    ``ext`` png / jpg / webp / tif, or ``auto`` (the input's format); a video keeps its container.
    (An ``ext`` starting with a dot, as the former ``fmt``, is taken as it is.)"""
    if n_inputs == 1 and out.suffix:
        return out
    from .video import is_video

    if is_video(src) or ext == "auto":
        new_ext = src.suffix.lower()
    elif ext is None:
        new_ext = ".png"
    else:
        new_ext = ext if ext.startswith(".") else OUTPUT_EXTS[ext]
    return out / (src.stem + (f"_{suffix}" if suffix else "") + new_ext)


def upscale_files(runner, files: list[Path], out: Path, tile: int = 256, overlap: int = 16,
                  progress: bool = True, fmt: str | None = None, on_error=None, *, suffix: str | None = None,
                  outscale: float | None = None, quality: int | None = None, video: dict | None = None
                  ) -> list[UpscaleReport]:
    """Upscale each file (images and videos); with ``on_error(src, exc)`` a file that cannot be read
    or written is reported there and the batch goes on (without it, the first such error is raised).
    ``fmt``: the output extension of folder outputs (png, jpg, webp, tif, auto); ``suffix`` appended
    to the names (``NAME_SUFFIX.EXT``); ``outscale`` the final scale; ``quality`` JPEG / WebP quality;
    ``video`` keyword arguments of :func:`tinysr.video.upscale_video` (codec, crf, preset)."""
    from tqdm.auto import tqdm

    from .video import VideoReadError, is_video, upscale_video

    check_outscale(outscale)
    if len(files) == 1 and out.suffix:
        if is_video(files[0]):
            from .video import _container_format
            _container_format(out.suffix)  # an unsupported container fails before any work
        else:
            output_format(out)  # an unsupported extension fails before any work
    reports = []
    written: dict[Path, Path] = {}
    for src in tqdm(files, desc="files", disable=not progress or len(files) == 1, unit="file"):
        t0 = time.perf_counter()
        try:
            dst = output_path(src, out, len(files), fmt, suffix)
            if dst.resolve() == src.resolve():
                raise OSError(f"{src}: the output would overwrite the input; give another -o or a --suffix")
            if dst.resolve() in written:
                raise OSError(f"{src}: its output {dst} is also {written[dst.resolve()]}'s; give a --suffix "
                              "or another --ext")
            written[dst.resolve()] = src
            if is_video(src):
                if dst.suffix.lower() in IMAGE_EXTENSIONS:
                    raise OSError(f"{src}: a video's output must be a video file, not {dst.suffix}")
                r = upscale_video(runner, src, dst, tile, overlap, outscale=outscale, progress=progress,
                                  **(video or {}))
                reports.append(UpscaleReport(src, dst, r.in_size, r.out_size, r.seconds, r.detail))
                continue
            img = load_image(src)
            h, w = img.rgb.shape[:2]
            with tqdm(total=count_tiles(h, w, tile, runner, overlap), desc=src.name, unit="tile",
                      disable=not progress, leave=False) as bar:
                rgb, alpha = upscale_image(runner, img, tile, overlap, bar, outscale)
            save_image(dst, rgb, alpha, img.grayscale, img.bit_depth, quality=quality)
        except (ImageReadError, VideoReadError, OSError) as e:
            if on_error is None:
                raise
            on_error(src, e)
            continue
        reports.append(UpscaleReport(src, dst, (w, h), (rgb.shape[1], rgb.shape[0]), time.perf_counter() - t0))
    return reports
