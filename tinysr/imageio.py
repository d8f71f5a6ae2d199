"""Reading and writing images in every form a user hands us, atomically.

Images travel through tinysr as float32 RGB arrays in [0, 1] (H x W x 3), with
the alpha channel (if any) and the source's mode kept beside them so that the
output can be written in the same form: grayscale stays grayscale, RGBA keeps
an (upscaled) alpha, 16-bit stays 16-bit. EXIF orientation is applied.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Pillow refuses images above ~179 Mpx as "decompression bombs"; we allow larger ones
# explicitly (tiling keeps memory bounded) up to this many pixels.
MAX_PIXELS = 400_000_000


class ImageReadError(ValueError):
    """An image could not be read; the message names the file."""


@dataclass
class LoadedImage:
    rgb: np.ndarray  # float32, H x W x 3, [0, 1]
    alpha: np.ndarray | None  # float32, H x W, [0, 1]
    grayscale: bool
    bit_depth: int  # 8 or 16
    path: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def _to_float(arr: np.ndarray, depth: int) -> np.ndarray:
    return arr.astype(np.float32) / (65535.0 if depth == 16 else 255.0)


def load_image(path: str | os.PathLike) -> LoadedImage:
    path = str(path)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.float64)
        depth = 16 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 8
        gray = _to_float(np.clip(arr, 0, 65535 if depth == 16 else 255), depth)
        return LoadedImage(np.repeat(gray[..., None], 3, axis=2), None, True, depth, path)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        gray = np.clip(arr / max(1.0, float(arr.max(initial=0))), 0, 1)
        return LoadedImage(np.repeat(gray[..., None], 3, axis=2), None, True, 8, path)
    if mode in ("RGB;16", "RGBA;16", "RGBX;16"):  # not produced by current Pillow, kept for safety
        im = im.convert("RGB")
        mode = "RGB"
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "La", "PA"):
        im = im.convert("LA")
        arr = np.asarray(im)
        gray = _to_float(arr[..., 0], 8)
        return LoadedImage(np.repeat(gray[..., None], 3, axis=2), _to_float(arr[..., 1], 8), True, 8, path)
    if mode in ("L", "1"):
        gray = _to_float(np.asarray(im.convert("L")), 8)
        return LoadedImage(np.repeat(gray[..., None], 3, axis=2), None, True, 8, path)
    if mode in ("RGBA", "RGBa"):
        arr = np.asarray(im.convert("RGBA"))
        return LoadedImage(_to_float(arr[..., :3], 8), _to_float(arr[..., 3], 8), False, 8, path)
    rgb = np.asarray(im.convert("RGB"))
    return LoadedImage(_to_float(rgb, 8), None, False, 8, path)


def load_rgb_uint8(path: str | os.PathLike) -> np.ndarray:
    """H x W x 3 uint8 (grayscale replicated, alpha dropped): what training and evaluation read."""
    img = load_image(path)
    return np.clip(np.floor(img.rgb * 255.0 + 0.5), 0, 255).astype(np.uint8)


def quantize(arr: np.ndarray, depth: int = 8) -> np.ndarray:
    """[0, 1] floats -> uint8 / uint16 (round half up, clamped); integer images pass through (or widen)."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr if depth == 8 else arr.astype(np.uint16) * 257
    if arr.dtype == np.uint16:
        return arr if depth == 16 else ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    top = 65535.0 if depth == 16 else 255.0
    out = np.clip(np.floor(arr.astype(np.float32 if arr.dtype == np.float32 else np.float64) * top + 0.5), 0, top)
    return out.astype(np.uint16 if depth == 16 else np.uint8)


def _gray(rgb: np.ndarray, depth: int) -> np.ndarray:
    if rgb.dtype in (np.uint8, np.uint16):  # integer mean without a float copy of a huge image
        return quantize(((rgb.astype(np.uint32).sum(axis=2) + 1) // 3).astype(rgb.dtype), depth)
    return quantize(rgb.mean(axis=2), depth)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None, grayscale: bool = False, bit_depth: int = 8) -> Image.Image:
    if grayscale and alpha is None and bit_depth == 16:
        return Image.fromarray(_gray(rgb, 16))
    rgb8 = quantize(rgb, 8)
    if grayscale:
        gray = _gray(rgb, 8)
        if alpha is not None:
            return Image.fromarray(np.stack([gray, quantize(alpha, 8)], axis=2), "LA")
        return Image.fromarray(gray, "L")
    if alpha is not None:
        return Image.fromarray(np.concatenate([rgb8, quantize(alpha, 8)[..., None]], axis=2), "RGBA")
    return Image.fromarray(rgb8, "RGB")


def save_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
               grayscale: bool = False, bit_depth: int = 8) -> None:
    """Write atomically; the format follows the extension (16-bit only where the format holds it)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"{path}: unsupported output extension {ext!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    if ext in (".jpg", ".jpeg"):
        alpha, bit_depth = None, 8  # JPEG holds neither
    if ext != ".png" and ext not in (".tif", ".tiff"):
        bit_depth = 8
    im = to_pil(rgb, alpha, grayscale, bit_depth)
    fmt = Image.registered_extensions()[ext]
    atomic_write(path, lambda tmp: im.save(tmp, format=fmt))


def list_images(inputs, recursive: bool = False) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted list of image files."""
    import glob

    found: list[Path] = []
    for item in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found.extend(sorted(f for f in it if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS))
        elif p.is_file():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS]
            if not files:
                raise FileNotFoundError(f"{item}: no such file, folder, or matching images")
            found.extend(files)
    return found
