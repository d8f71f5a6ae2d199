"""`tinysr upscale`: inputs of every kind, tiling without seams, forms kept, bounded memory."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import rng_image
from tinysr.cli.main import main
from tinysr.models import create_model
from tinysr.runtimes import TorchRunner
from tinysr.upscale import upscale_array


def _random_tpsr(scale=4):
    import torch

    torch.manual_seed(0)
    m = create_model(f"tpsr_x{scale}")
    return m


@pytest.fixture
def ckpt(tmp_path):
    from tinysr.checkpoint import save_checkpoint

    p = tmp_path / "m.pt"
    save_checkpoint(p, _random_tpsr())
    return p


def test_tiled_equals_untiled_within_one_grey_level():
    runner = TorchRunner(_random_tpsr())
    img = rng_image(150, 190).astype(np.float32) / 255
    whole = upscale_array(runner, img, tile=4096)
    tiled = upscale_array(runner, img, tile=48, overlap=16)
    diff = np.abs(np.round(whole * 255) - np.round(tiled * 255))
    assert diff.max() <= 1


def test_files_folders_and_globs(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        Image.fromarray(rng_image(20, 24, seed=i)).save(d / f"p{i}.png")
    (d / "notes.txt").write_text("not an image")
    assert main(["upscale", str(d), "-o", str(tmp_path / "out"), "--model", str(ckpt), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert Image.open(tmp_path / "out" / "p0.png").size == (96, 80)
    assert main(["upscale", str(d / "p*.png"), "-o", str(tmp_path / "glob"), "--model", str(ckpt), "-q"]) == 0
    assert len(list((tmp_path / "glob").iterdir())) == 3
    assert main(["upscale", str(d / "p1.png"), "-o", str(tmp_path / "one.jpg"), "--model", str(ckpt), "-q"]) == 0
    assert Image.open(tmp_path / "one.jpg").format == "JPEG"
    out = capsys.readouterr().out
    assert "p1.png (24x20) ->" in out and "in " in out


def test_forms_are_kept(tmp_path, ckpt):
    rgb = rng_image(16, 16)
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "g.png")
    Image.fromarray(np.concatenate([rgb, np.full((16, 16, 1), 200, np.uint8)], 2), "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(tmp_path / "h.png")
    for name, mode in [("g", "L"), ("a", "RGBA"), ("h", "I")]:
        dst = tmp_path / f"{name}_x4.png"
        assert main(["upscale", str(tmp_path / f"{name}.png"), "-o", str(dst), "--model", str(ckpt), "-q"]) == 0
        im = Image.open(dst)
        assert im.mode.startswith(mode) and im.size == (64, 64), (name, im.mode)
    alpha = np.asarray(Image.open(tmp_path / "a_x4.png"))[..., 3]
    assert np.abs(alpha.astype(int) - 200).max() <= 1


def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, ckpt, capsys):
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(["upscale", str(tmp_path / "bad.png"), "-o", str(tmp_path / "o.png"), "--model", str(ckpt)]) == 2
    assert "bad.png" in capsys.readouterr().err and not (tmp_path / "o.png").exists()
    assert main(["upscale", str(tmp_path / "nothing*.png"), "--model", str(ckpt)]) == 2
    assert main(["upscale", str(tmp_path / "bad.png"), "--model", "no_such_model"]) == 2
    assert "neither a checkpoint file nor a model name" in capsys.readouterr().err


def test_a_batch_goes_on_past_unreadable_files(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a", "c"):
        Image.fromarray(rng_image(20, 24, seed=ord(name))).save(d / f"{name}.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (d / "empty.png").write_bytes(b"")
    files = [str(d / f"{n}.png") for n in ("a", "broken", "empty", "c")]
    assert main(["upscale", *files, "-o", str(tmp_path / "out"), "--model", str(ckpt), "-q"]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 3 and "Traceback" not in captured.err, captured.err
    assert err[0].startswith("tinysr: error: ") and "broken.png: cannot read image" in err[0]
    assert err[1] == f"tinysr: error: {d / 'empty.png'}: empty file (0 bytes)"
    assert err[2].startswith("tinysr: error: 2 of 4 files failed")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]  # no temporaries
    assert all(Image.open(tmp_path / "out" / n).size == (96, 80) for n in ("a.png", "c.png"))
    assert "a.png (24x20) ->" in captured.out and "c.png (24x20) ->" in captured.out


@pytest.mark.parametrize("form", ["RGB", "L", "RGBA", "LA", "I;16"])
def test_png_output_is_the_upscaled_image_bit_exactly(tmp_path, form):
    """The PNG encoded band by band during the upscale holds exactly the pixels of the whole-image path."""
    from tinysr.imageio import load_image, pixel_array
    from tinysr.upscale import upscale_files, upscale_image

    rgb = rng_image(70, 45)
    arrays = {"RGB": rgb, "L": rgb[..., 0], "RGBA": np.dstack([rgb, rgb[..., 2]]), "LA": np.dstack([rgb[..., :2]]),
              "I;16": rgb[..., 1].astype(np.uint16) * 257 + 7}
    Image.fromarray(arrays[form]).save(tmp_path / "src.png")
    runner = TorchRunner(_random_tpsr())
    img = load_image(tmp_path / "src.png")
    expected = pixel_array(*upscale_image(runner, img, tile=16, overlap=8), img.grayscale, img.bit_depth)[0]
    upscale_files(runner, [tmp_path / "src.png"], tmp_path / "out.png", tile=16, overlap=8, progress=False)
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (180, 280)
        got = np.asarray(im)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_default_run_upscales_the_bundled_sample(tmp_path, monkeypatch, capsys):
    from tinysr.checkpoint import has_bundled_weights

    if not has_bundled_weights("tpsr_x4"):
        pytest.fail("tpsr_x4 must ship bundled weights")
    monkeypatch.chdir(tmp_path)
    assert main(["upscale", "-q"]) == 0
    out = capsys.readouterr().out
    assert "bundled sample" in out and Image.open(tmp_path / "grace_hopper_160_x4.png").size == (640, 640)


LARGE = """
import resource, sys, numpy as np
from PIL import Image
from tinysr.cli.main import main
h, w = 3000, 4000
y, x = np.mgrid[0:h, 0:w]
img = ((np.sin(x / 37.0) + np.cos(y / 23.0)) * 60 + 128).astype(np.uint8)
Image.fromarray(np.stack([img, img[::-1], img[:, ::-1]], 2)).save(sys.argv[1] + '/big.png', compress_level=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rc = main(['upscale', sys.argv[1] + '/big.png', '-o', sys.argv[1] + '/big_x4.bmp', '--model', sys.argv[2], '-q'])
print(rc, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _upscale_4000x3000(tmp_path, ckpt) -> float:
    """Peak RSS (GB) of ``tinysr upscale`` of a 4000x3000 photo at x4 to a BMP."""
    out = subprocess.run([sys.executable, "-c", LARGE, str(tmp_path), str(ckpt)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    rc, _, peak_kb = (int(v) for v in out.stdout.strip().splitlines()[-1].split())
    assert rc == 0
    assert Image.open(tmp_path / "big_x4.bmp").size == (16000, 12000)
    peak_gb = peak_kb / 1024 ** 2
    print(f"peak RSS {peak_gb:.2f} GB")
    return peak_gb


def test_4000x3000_upscales_x4_with_bounded_memory(tmp_path):
    """Peak memory stays far below this 24 GB machine (output alone: 16000x12000x3). The pipeline's
    memory (the image, its output, one tile at a time) is the same for any x4 network: a one-node
    TPSR cell with 4 features keeps the model's compute small (TPSR x4 itself, 30x the compute, runs in
    the slow test below)."""
    from tinysr.checkpoint import save_checkpoint
    from tinysr.models.tpsr import CellSR

    save_checkpoint(tmp_path / "small.pt", CellSR("conv3@in", 4, 4))
    assert _upscale_4000x3000(tmp_path, tmp_path / "small.pt") < 4.0  # measured 2.0 GB


@pytest.mark.slow
def test_4000x3000_upscales_x4_with_bounded_memory_with_tpsr(tmp_path, ckpt):
    assert _upscale_4000x3000(tmp_path, ckpt) < 4.0  # measured 1.9 GB


# --- the conventions of Real-ESRGAN's CLI: --outscale, --ext, --suffix, --quality, --tile 0 ---------------
def test_outscale_gives_any_final_scale(tmp_path, ckpt):
    rgb = rng_image(20, 24)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA").save(tmp_path / "a.png")
    for f, size in (("2", (48, 40)), ("3", (72, 60)), ("1.5", (36, 30)), ("6", (144, 120))):
        dst = tmp_path / f"p_{f}.png"
        assert main(["upscale", str(tmp_path / "p.png"), "-o", str(dst), "--model", str(ckpt), "--outscale", f,
                     "-q"]) == 0
        assert Image.open(dst).size == size, f
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "a2.png"), "--model", str(ckpt),
                 "--outscale", "2", "-q"]) == 0
    with Image.open(tmp_path / "a2.png") as im:
        assert im.mode == "RGBA" and im.size == (48, 40)


def test_outscale_resize_is_lanczos_of_the_model_output():
    from tinysr.upscale import final_size, resize_output

    runner = TorchRunner(_random_tpsr())
    img = rng_image(16, 20).astype(np.float32) / 255
    x4 = upscale_array(runner, img, bit_depth=8)
    assert final_size(20, 16, 4, 2.0) == (40, 32) and final_size(20, 16, 4, None) == (80, 64)
    expected = np.asarray(Image.fromarray(x4).resize((40, 32), Image.LANCZOS))
    assert np.array_equal(resize_output(x4, (40, 32)), expected)
    deep = resize_output(x4.astype(np.uint16) * 257, (40, 32))
    assert deep.dtype == np.uint16 and np.abs(deep.astype(int) // 257 - expected).max() <= 1


def test_ext_suffix_format_alias_and_quality(tmp_path, ckpt):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(rng_image(20, 24, seed=1)).save(d / "a.png")
    Image.fromarray(rng_image(20, 24, seed=2)).save(d / "b.jpg", quality=90)

    def names(*argv):
        out = tmp_path / "o"
        assert main(["upscale", str(d), "-o", str(out), "--model", str(ckpt), "-q", *argv]) == 0
        found = sorted(p.name for p in out.iterdir())
        for p in out.iterdir():
            p.unlink()
        return found

    assert names() == ["a.png", "b.png"]  # the default: PNG, NAME.EXT
    assert names("--ext", "auto") == ["a.png", "b.jpg"]
    assert names("--ext", "webp", "--suffix", "out") == ["a_out.webp", "b_out.webp"]
    assert names("--format", "jpg") == ["a.jpg", "b.jpg"]  # the former flag still works
    sizes = {}
    for q in ("30", "95"):
        assert main(["upscale", str(d / "a.png"), "-o", str(tmp_path / f"q{q}.jpg"), "--model", str(ckpt),
                     "--quality", q, "-q"]) == 0
        sizes[q] = (tmp_path / f"q{q}.jpg").stat().st_size
    assert sizes["30"] < sizes["95"]


def test_an_output_that_would_overwrite_its_input_is_refused(tmp_path, ckpt, capsys):
    Image.fromarray(rng_image(20, 24)).save(tmp_path / "a.png")
    Image.fromarray(rng_image(20, 24, seed=3)).save(tmp_path / "b.png")
    before = (tmp_path / "a.png").read_bytes()
    assert main(["upscale", str(tmp_path), "-o", str(tmp_path), "--model", str(ckpt), "-q"]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert (tmp_path / "a.png").read_bytes() == before


def test_tile_zero_is_chosen_from_injected_memory_figures(tmp_path):
    from tinysr.upscale import FALLBACK_TILE, TILE_LIMITS, activation_bytes_per_pixel, auto_tile, choose_tile, \
        mem_available

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8388608 kB\n")
    assert mem_available(meminfo) == 8 * 2 ** 30
    assert mem_available(tmp_path / "absent") is None
    (tmp_path / "old").write_text("MemTotal: 1 kB\n")
    assert mem_available(tmp_path / "old") is None
    # 1 GiB available, 4 KiB per pixel, 25%: sqrt(2^28 / 2^12) = 256 -> 256 - 2 * 16 = 224
    assert choose_tile(4096, 16, 2 ** 30)[0] == 224
    assert choose_tile(4096, 16, 4 * 2 ** 30)[0] == 480  # 4x the memory: twice the side, less the context
    assert choose_tile(4096, 16, 2 ** 20)[0] == TILE_LIMITS[0]  # starved: the smallest tile
    assert choose_tile(16, 16, 2 ** 40)[0] == TILE_LIMITS[1]
    assert choose_tile(4096, 16, None) == (FALLBACK_TILE, f"MemAvailable unknown: default {FALLBACK_TILE}")
    assert choose_tile(None, 16, 2 ** 30)[0] == FALLBACK_TILE
    runner = TorchRunner(_random_tpsr())
    bpp = activation_bytes_per_pixel(runner)
    assert 500 < bpp < 20000  # TPSR: 16-channel features, a few dozen layers
    assert activation_bytes_per_pixel(object()) is None
    tile, why = auto_tile(runner, 16, meminfo)
    assert tile == choose_tile(bpp, 16, 8 * 2 ** 30)[0] and "MemAvailable 8.0 GiB" in why


def test_tile_zero_says_the_tile_with_verbose(tmp_path, ckpt, capsys):
    Image.fromarray(rng_image(20, 24)).save(tmp_path / "p.png")
    assert main(["-v", "upscale", str(tmp_path / "p.png"), "-o", str(tmp_path / "o.png"), "--model", str(ckpt),
                 "--tile", "0", "-q"]) == 0
    assert "--tile 0: tile " in capsys.readouterr().out and Image.open(tmp_path / "o.png").size == (96, 80)
