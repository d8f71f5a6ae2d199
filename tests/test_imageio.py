"""Images in every real form, corrupt files, atomic writes."""
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import rng_image
from tinysr.data.datasets import HRFolderDataset
from tinysr.imageio import ImageReadError, load_image, save_image


def test_grayscale_rgba_palette_and_16bit(tmp_path):
    rgb = rng_image(24, 20)
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "gray.png")
    rgba = np.concatenate([rgb, np.full((24, 20, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "pal.png")
    g16 = (rgb[..., 0].astype(np.uint16) * 257 + 3)
    Image.fromarray(g16).save(tmp_path / "g16.png")

    g = load_image(tmp_path / "gray.png")
    assert g.grayscale and g.rgb.shape == (24, 20, 3) and np.allclose(g.rgb[..., 0], g.rgb[..., 2])
    a = load_image(tmp_path / "rgba.png")
    assert a.alpha is not None and np.allclose(a.alpha, 128 / 255) and not a.grayscale
    p = load_image(tmp_path / "pal.png")
    assert p.rgb.shape == (24, 20, 3) and p.alpha is None
    h = load_image(tmp_path / "g16.png")
    assert h.bit_depth == 16 and np.allclose(h.rgb[..., 0], g16 / 65535.0, atol=1e-6)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(rng_image(16, 32))  # 32 wide, 16 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.rgb.shape[:2] == (32, 16)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage", b"hello"])
def test_corrupt_files_raise_an_error_naming_the_file(tmp_path, content):
    bad = tmp_path / "broken.png"
    bad.write_bytes(content)
    with pytest.raises(ImageReadError, match="broken.png"):
        load_image(bad)
    with pytest.raises(ImageReadError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")


def test_truncated_png_is_an_error(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(rng_image(64, 64)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_dataset_skips_corrupt_files_with_a_warning(tmp_path):
    for i in range(3):
        Image.fromarray(rng_image(64, 64, seed=i)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "zz_bad.png").write_bytes(b"not an image")
    ds = HRFolderDataset(tmp_path, scale=4, patch_size=8)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]  # a whole epoch, the bad file included
    assert any("zz_bad.png" in str(x.message) for x in w)
    assert all(lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32) for lr, hr in items)


def test_save_keeps_the_form_and_is_atomic(tmp_path):
    rgb = rng_image(10, 12).astype(np.float32) / 255
    save_image(tmp_path / "g.png", rgb, grayscale=True)
    assert Image.open(tmp_path / "g.png").mode == "L"
    save_image(tmp_path / "a.png", rgb, alpha=np.ones((10, 12), np.float32))
    assert Image.open(tmp_path / "a.png").mode == "RGBA"
    save_image(tmp_path / "h.png", rgb, grayscale=True, bit_depth=16)
    assert Image.open(tmp_path / "h.png").mode.startswith("I")
    # a failing write leaves the previous file intact and no temporary behind
    before = (tmp_path / "g.png").read_bytes()
    with pytest.raises(Exception):
        save_image(tmp_path / "g.png", np.zeros((10, 12, 5), np.float32))
    assert (tmp_path / "g.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "g.png", "h.png"]
    with pytest.raises(ValueError, match="unsupported output extension"):
        save_image(tmp_path / "x.xyz", rgb)


def test_an_empty_file_says_it_is_empty(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"zero.png: empty file \(0 bytes\)"):
        load_image(tmp_path / "zero.png")


def _written(tmp_path, monkeypatch, channels, dtype):
    """A 29x41 image, half noise, half gradient, written in many deflate segments by several threads."""
    import tinysr.imageio as imageio

    monkeypatch.setattr(imageio, "_SEGMENT_BYTES", 200)
    rng = np.random.default_rng(channels)
    top = 256 if dtype == np.uint8 else 65536
    noise = rng.integers(0, top, (41, 29, channels))
    smooth = np.linspace(0, top - 1, 41 * 29 * channels).reshape(41, 29, channels)
    arr = np.where(np.arange(41)[:, None, None] < 20, noise, smooth).astype(dtype)
    arr = arr[..., 0] if channels == 1 else arr
    imageio.write_png(tmp_path / "w.png", arr, threads=3)
    return tmp_path / "w.png", arr


@pytest.mark.parametrize("channels, dtype", [(1, np.uint8), (1, np.uint16), (2, np.uint8), (3, np.uint8),
                                             (4, np.uint8)])
def test_png_round_trips_bit_exactly_through_pillow(tmp_path, monkeypatch, channels, dtype):
    path, arr = _written(tmp_path, monkeypatch, channels, dtype)
    with Image.open(path) as im:
        im.verify()  # chunk CRCs
    with Image.open(path) as im:
        got = np.asarray(im)
    assert got.shape == arr.shape and np.array_equal(got, arr)


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """PNG scanlines (filter byte + data) -> image bytes, every filter type, straight from the spec."""
    out = np.zeros((rows.shape[0], rows.shape[1] - 1), np.int64)
    for y, (kind, *data) in enumerate(rows.tolist()):
        for x, v in enumerate(data):
            a = out[y, x - bpp] if x >= bpp else 0
            b = out[y - 1, x] if y else 0
            c = out[y - 1, x - bpp] if y and x >= bpp else 0
            p = a + b - c
            paeth = min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]
            out[y, x] = (v + [0, a, b, (a + b) // 2, paeth][kind]) % 256
    return out


def test_png_16_bit_rgb_decodes_by_the_spec(tmp_path, monkeypatch):
    """Pillow reads 16-bit RGB as 8-bit, so the IDAT stream is decoded here by hand."""
    import struct
    import zlib

    path, arr = _written(tmp_path, monkeypatch, 3, np.uint16)
    data, pos, raw = path.read_bytes(), 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        raw += data[pos + 8:pos + 8 + n] if kind == b"IDAT" else b""
        pos += 12 + n
    assert data[12:16] == b"IHDR" and data[24:26] == bytes([16, 2])  # bit depth 16, colour type RGB
    rows = np.frombuffer(zlib.decompress(raw), np.uint8).reshape(arr.shape[0], -1)
    expected = arr.astype(">u2").view(np.uint8).reshape(arr.shape[0], -1)
    assert np.array_equal(_unfilter(rows, bpp=6), expected)


@pytest.mark.parametrize("pixels", [np.zeros((4, 8, 3), np.float32), np.zeros((4, 8, 5), np.uint8),
                                    np.zeros((4, 8, 3), np.int16), np.zeros(8, np.uint8)])
def test_png_refuses_what_it_cannot_hold(tmp_path, pixels):
    from tinysr.imageio import write_png

    with pytest.raises(ValueError, match="PNG: cannot write"):
        write_png(tmp_path / "w.png", pixels)


def test_adler32_combine_matches_zlib():
    import zlib

    from tinysr.imageio import _adler32_combine

    rng = np.random.default_rng(1)
    a, b = rng.bytes(70_000), rng.bytes(12_345)
    assert _adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_png_of_a_photo_is_no_larger_than_pillows_default(tmp_path):
    """Average filter + run-length deflate: about Pillow's zlib-6 size on photos (bound: 1.5x)."""
    from tinysr.bundled import sample_photo

    photo = Image.open(sample_photo()).convert("RGB").resize((400, 468), Image.BICUBIC)
    photo.save(tmp_path / "pillow.png")
    save_image(tmp_path / "ours.png", np.asarray(photo))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ours.png")), np.asarray(photo))
    ratio = (tmp_path / "ours.png").stat().st_size / (tmp_path / "pillow.png").stat().st_size
    assert ratio < 1.5, ratio
