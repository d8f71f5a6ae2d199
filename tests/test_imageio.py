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
