"""Reading and writing images in every form a user hands us, atomically.

Images travel through tinysr as float32 RGB arrays in [0, 1] (H x W x 3), with
the alpha channel (if any) and the source's mode kept beside them so that the
output can be written in the same form: grayscale stays grayscale, RGBA keeps
an (upscaled) alpha, 16-bit stays 16-bit. EXIF orientation is applied.
"""
from __future__ import annotations

import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Pillow refuses images above ~179 Mpx as "decompression bombs"; we allow larger ones
# explicitly (tiling keeps memory bounded) up to this many pixels.
MAX_PIXELS = 400_000_000
#: JPEG / WebP quality of outputs (Real-ESRGAN's, through OpenCV, is 95; Pillow's own default 75)
DEFAULT_QUALITY = 95


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
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
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


def pixel_array(rgb: np.ndarray, alpha: np.ndarray | None = None, grayscale: bool = False,
                bit_depth: int = 8) -> tuple[np.ndarray, str]:
    """(pixels, PIL mode) of the image as written: L, I;16, LA, RGB or RGBA."""
    if grayscale and alpha is None and bit_depth == 16:
        return _gray(rgb, 16), "I;16"
    if grayscale:
        gray = _gray(rgb, 8)
        if alpha is not None:
            return np.stack([gray, quantize(alpha, 8)], axis=2), "LA"
        return gray, "L"
    rgb8 = quantize(rgb, 8)
    if alpha is not None:
        return np.concatenate([rgb8, quantize(alpha, 8)[..., None]], axis=2), "RGBA"
    return rgb8, "RGB"


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None, grayscale: bool = False, bit_depth: int = 8) -> Image.Image:
    pixels, mode = pixel_array(rgb, alpha, grayscale, bit_depth)
    return Image.fromarray(pixels, None if mode == "I;16" else mode)


def output_format(path: str | os.PathLike) -> str:
    """The PIL format an output path's extension asks for (a one-line error for any other)."""
    ext = Path(path).suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"{path}: unsupported output extension {ext!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    return Image.registered_extensions()[ext]


def save_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
               grayscale: bool = False, bit_depth: int = 8, quality: int | None = None) -> None:
    """Write atomically; the format follows the extension (16-bit only where the format holds it).
    ``quality`` (1-100) for JPEG and WebP (default :data:`DEFAULT_QUALITY`)."""
    fmt = output_format(path)
    if fmt == "JPEG":
        alpha, bit_depth = None, 8  # JPEG holds neither
    if fmt not in ("PNG", "TIFF"):
        bit_depth = 8
    if fmt == "PNG":
        pixels = pixel_array(rgb, alpha, grayscale, bit_depth)[0]
        atomic_write(path, lambda tmp: write_png(tmp, pixels))
        return
    im = to_pil(rgb, alpha, grayscale, bit_depth)
    extra = {"quality": quality or DEFAULT_QUALITY} if fmt in ("JPEG", "WEBP") else {}
    atomic_write(path, lambda tmp: im.save(tmp, format=fmt, **extra))


# --- PNG ------------------------------------------------------------------------------------
# Pillow encodes a PNG in one thread, by default at zlib level 6: for a 4000x3000 upscale that took
# about 4x as long as the model. write_png cuts the image into segments of rows and encodes them
# in a pool of threads (numpy and zlib release the GIL): the Average filter (a few numpy passes;
# Paeth, which Pillow picks, costs ~15x its CPU for a ~7% smaller file) and zlib's run-length
# strategy (Z_RLE: a fraction of level 6's time, no larger on filtered photos). Segments are
# independent raw deflate streams joined by sync flushes, as pigz does; Z_RLE only matches the
# previous byte, so the split costs no compression. The result is a plain PNG that Pillow reads
# back bit-exactly. (Encoding rows while the model still runs was slower: the encoder threads
# preempt the model's, which all the cores already run.)

_PNG_COLOUR = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> colour type: grey, grey+alpha, RGB, RGBA
_SEGMENT_BYTES = 1 << 18  # image bytes per deflate job (its temporaries stay in cache)


def _png_chunk(f, kind: bytes, data: bytes = b"") -> None:
    f.write(struct.pack(">I", len(data)) + kind)
    f.write(data)
    f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A + B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine)."""
    base = 65521
    a1, b1, a2, b2 = adler1 & 0xFFFF, adler1 >> 16, adler2 & 0xFFFF, adler2 >> 16
    return ((b1 + b2 + len2 * (a1 - 1)) % base) << 16 | (a1 + a2 - 1) % base


def average_filter(rows: np.ndarray, prev: np.ndarray | None, bpp: int) -> np.ndarray:
    """PNG scanlines of ``rows`` (n x L bytes) below the row ``prev`` (None: the image's top):
    n x (1 + L) bytes, each row its filter type (3, Average) and each byte minus the mean of the
    bytes left of it (``bpp`` back) and above it, modulo 256."""
    x = rows.astype(np.uint16)
    mean = np.empty_like(x)
    mean[0] = 0 if prev is None else prev
    mean[1:] = x[:-1]
    mean[:, bpp:] += x[:, :-bpp]
    mean >>= 1
    out = np.empty((x.shape[0], x.shape[1] + 1), np.uint8)
    out[:, 0] = 3
    np.subtract(rows, mean, out=out[:, 1:], casting="unsafe")  # modulo 256
    return out


def _png_bytes(rows: np.ndarray) -> np.ndarray:
    """n x L bytes of image rows (16-bit samples big-endian, as PNG stores them)."""
    if rows.dtype == np.uint16:
        rows = rows.astype(">u2")
    return np.ascontiguousarray(rows).view(np.uint8).reshape(rows.shape[0], -1)


def _deflate_segment(rows: np.ndarray, prev: np.ndarray | None, bpp: int) -> tuple[bytes, int, int]:
    data = average_filter(_png_bytes(rows), None if prev is None else _png_bytes(prev[None])[0], bpp)
    z = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH), zlib.adler32(data), data.size


def write_png(path: str | os.PathLike, pixels: np.ndarray, threads: int | None = None) -> None:
    """Write ``pixels`` (uint8 or uint16; H x W grey, H x W x 2 grey+alpha, x 3 RGB, x 4 RGBA) as a
    PNG, its segments of rows encoded in ``threads`` threads (default: one per CPU)."""
    from concurrent.futures import ThreadPoolExecutor

    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim not in (2, 3) or channels not in _PNG_COLOUR:
        raise ValueError(f"PNG: cannot write {pixels.dtype} pixels of shape {pixels.shape}")
    h, w = pixels.shape[:2]
    bpp = pixels.dtype.itemsize * channels
    step = max(1, _SEGMENT_BYTES // (bpp * w))

    def segment(y):
        return _deflate_segment(pixels[y:y + step], pixels[y - 1] if y else None, bpp)

    with open(path, "wb") as f, ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        f.write(b"\x89PNG\r\n\x1a\n")
        _png_chunk(f, b"IHDR", struct.pack(">IIBBBBB", w, h, 8 * pixels.dtype.itemsize, _PNG_COLOUR[channels], 0, 0, 0))
        _png_chunk(f, b"IDAT", b"\x78\x01")  # zlib header: deflate, 32 KiB window
        adler = 1
        for data, seg_adler, size in pool.map(segment, range(0, h, step)):
            adler = _adler32_combine(adler, seg_adler, size)
            _png_chunk(f, b"IDAT", data)
        end = zlib.compressobj(1, zlib.DEFLATED, -15).flush()  # an empty final block
        _png_chunk(f, b"IDAT", end + struct.pack(">I", adler))
        _png_chunk(f, b"IEND")


def list_images(inputs, recursive: bool = False, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted list of image files (of ``extensions``)."""
    import glob

    found: list[Path] = []
    for item in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found.extend(sorted(f for f in it if f.is_file() and f.suffix.lower() in extensions))
        elif p.is_file():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file() and m.suffix.lower() in extensions]
            if not files:
                raise FileNotFoundError(f"{item}: no such file, folder, or matching images")
            found.extend(files)
    return found
