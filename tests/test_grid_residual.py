"""Grid residual (tinysr.metrics.grid): its definition's properties, its column in ``tinysr eval``,
and ICNR initialisation of the sub-pixel convolutions (no grid at initialisation)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tinysr.cli.main import main
from tinysr.metrics.grid import grid_layout, grid_residual, model_grid_residual, phase_deviations

from conftest import rng_image

Y_GAIN = (65.481 + 128.553 + 24.966) / 255.0  # Y change per grey level added to R, G and B


def _pattern(period, size, seed):
    """A zero-mean, unit-RMS random pattern of ``period`` tiled over ``size`` x ``size``."""
    tile = np.random.default_rng(seed).standard_normal((period, period))
    tile -= tile.mean()
    tile /= np.sqrt(np.mean(tile ** 2))
    return np.tile(tile, (size // period + 1, size // period + 1))[:size, :size]


def _smooth(size=256):
    """A smooth float RGB image (8-bit values, far from the clipping range)."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = 120 + 40 * np.sin(3 * x + 1) * np.cos(2 * y)
    return np.stack([base, base * 0.9 + 10, base * 0.8 + 20], axis=2)


def test_zero_for_an_exact_copy_and_a_constant_offset():
    hr = rng_image(160, 192, seed=3) // 2 + 50  # 50..177: an offset of 7 stays unclipped
    assert grid_residual(hr, hr, 4) == 0.0
    assert grid_residual(hr + 7, hr, 4) == pytest.approx(0.0, abs=1e-12)
    assert grid_residual(hr, hr + 7, 3) == pytest.approx(0.0, abs=1e-12)
    hr2 = _smooth()
    for s in (2, 3, 4):
        assert grid_residual(hr2 + 5.5, hr2, s) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("period", [2, 3, 4])
def test_linear_in_the_amplitude_of_a_pattern_of_the_period(period):
    hr = _smooth()
    pat = _pattern(period, 256, seed=period)[..., None]
    values = [grid_residual(hr + a * pat, hr, period) for a in (0.5, 1.0, 2.0, 4.0)]
    # the pattern's phase deviations are the pattern itself: RMS = amplitude (in Y: times Y_GAIN)
    assert values == pytest.approx([a * Y_GAIN for a in (0.5, 1.0, 2.0, 4.0)], rel=1e-9)
    # on 8-bit images the rounding of SR adds a little
    hr8 = np.round(hr).astype(np.uint8)
    sr8 = np.clip(np.round(hr8 + 3.0 * pat), 0, 255).astype(np.uint8)
    assert grid_residual(sr8, hr8, period) == pytest.approx(3.0 * Y_GAIN, rel=0.03)


@pytest.mark.parametrize("period, other", [(2, 3), (2, 5), (3, 2), (3, 4), (4, 3), (4, 5)])
def test_blind_to_another_period_and_to_aperiodic_noise(period, other):
    """A period-``other`` pattern (coprime with the period, so it holds no period-``period`` part)
    and white noise of the same energy give a small fraction of the period's own pattern.

    Measured (256 px, seeds as here): other periods 0 (3 vs 2, 5: 30-px blocks hold whole periods)
    to 0.09 of the pattern's value; noise 0.058 (x2), 0.094 (x3), 0.119 (x4) of it, as expected:
    a phase mean averages (B/s)^2 samples, leaving sigma / (B/s) * sqrt(1 - 1/s^2) =
    0.054 / 0.094 / 0.121 (B = 32, 30, 32).
    """
    hr = _smooth()
    own = grid_residual(hr + _pattern(period, 256, seed=1)[..., None], hr, period)
    foreign = grid_residual(hr + _pattern(other, 256, seed=2)[..., None], hr, period)
    noise = np.random.default_rng(period).standard_normal((256, 256))[..., None]
    white = grid_residual(hr + noise, hr, period)
    side = grid_layout(256, 256, period)[1]
    expected = (period / side) * np.sqrt(1 - 1 / period ** 2)
    assert foreign < 0.15 * own
    assert 0.5 * expected < white / own < 1.5 * expected < 0.2


def test_layout_keeps_the_phases_of_the_output_grid():
    # shave 3 at period 4 is rounded up to 4: the first kept pixel is phase (0, 0)
    assert grid_layout(100, 70, 4, 32, shave=3) == (4, 32, 2, 1)
    assert grid_layout(100, 70, 3, 32) == (3, 30, 3, 2)  # blocks of 30 at x3
    # a dot on phase (1, 2) of every 4 x 4 cell shows there, not shifted by the shave
    r = np.zeros((72, 72))
    r[1::4, 2::4] = 16.0
    for shave in (0, 1, 4, 5):
        dev = phase_deviations(r, 4, 32, shave)
        assert np.unravel_index(np.argmax(dev[0, 0]), (4, 4)) == (1, 2), shave
    with pytest.raises(ValueError, match="no full 32x32 block"):
        grid_residual(np.zeros((36, 36, 3)), np.zeros((36, 36, 3)), 4)


def test_table_and_json_carry_the_grid_column():
    from tinysr.evaluate import Row, as_json, format_table

    rows = [Row("a", 30.0, 0.9, grid=1.0), Row("b", 32.0, 0.8, grid=2.0)]
    table = format_table(rows).splitlines()
    assert table[0].split() == ["image", "PSNR", "SSIM", "Grid"]
    assert table[-1].split() == ["mean", "31.000", "0.8500", "1.5000"]
    assert as_json(rows)["mean"]["grid"] == pytest.approx(1.5)
    assert format_table([Row("a", 30.0, 0.9)]).splitlines()[0].split() == ["image", "PSNR", "SSIM"]


@pytest.mark.parametrize("model, scale", [("tpsr_x4", 4), ("tpsr_x2", 2)])
def test_eval_json_carries_the_grid_residual_at_any_scale(tmp_path, capsys, model, scale):
    hr_dir = tmp_path / "tiny"
    hr_dir.mkdir()
    Image.fromarray(rng_image(96, 128, seed=1)).save(hr_dir / "a.png")
    Image.fromarray(rng_image(112, 96, seed=2)).save(hr_dir / "b.png")
    capsys.readouterr()
    assert main(["eval", "--model", model, "--data", str(hr_dir), "--save", str(tmp_path / "sr"), "--lpips", "off",
                 "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)["datasets"]["tiny"]
    grids = {r["image"]: r["grid"] for r in res["images"]}
    for name, value in grids.items():
        sr = np.asarray(Image.open(tmp_path / "sr" / "tiny" / f"{name}.png").convert("RGB"))
        hr = np.asarray(Image.open(hr_dir / f"{name}.png").convert("RGB"))
        hr = hr[:hr.shape[0] // scale * scale, :hr.shape[1] // scale * scale]  # the benchmark's mod-crop
        assert value == pytest.approx(grid_residual(sr, hr, scale), abs=1e-9) and value > 0
    assert res["mean"]["grid"] == pytest.approx(np.mean(list(grids.values())))
    assert main(["eval", "--model", model, "--data", str(hr_dir), "--lpips", "off", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[-1] == "Grid"


def test_model_grid_residual_of_training_validation_pairs():
    from tinysr.models import create_model

    torch.manual_seed(0)
    model = create_model("tpsr_x2").train()
    lr = torch.rand(3, 24, 24)
    pairs = [(lr, torch.rand(3, 48, 48)), (lr[:, :8, :8], torch.rand(3, 16, 16))]  # the second: under one block
    value = model_grid_residual(model, pairs)
    assert value is not None and value > 0 and model.training
    assert model_grid_residual(model, pairs[1:]) is None


# --------------------------------------------------------------------------------- ICNR
def _subpixel_phase_spread(out, scale):
    """Max over s x s output blocks of (max - min) over its sub-pixels, per channel."""
    n, c, h, w = out.shape
    blocks = out.reshape(n, c, h // scale, scale, w // scale, scale)
    return float((blocks.amax(dim=(3, 5)) - blocks.amin(dim=(3, 5))).max())


def test_icnr_subpixel_block_is_nearest_neighbour_at_init():
    from tinysr.models.blocks import SubPixelUp, icnr_

    torch.manual_seed(0)
    up = SubPixelUp(16, 3)
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        assert _subpixel_phase_spread(up(x), 2) > 1e-2  # default init: four filters per output pixel
        icnr_(up.conv, 2)
        assert _subpixel_phase_spread(up(x), 2) == 0.0  # every sub-pixel of a 2 x 2 block identical
    with pytest.raises(ValueError, match="multiple of 9"):
        icnr_(torch.nn.Conv2d(4, 12, 3), 3)


def test_icnr_model_has_no_grid_on_a_smooth_input_the_default_init_has():
    from tinysr.models import create_model
    from tinysr.models.blocks import apply_icnr

    torch.manual_seed(0)
    default = create_model("tpsr_x4").eval()
    torch.manual_seed(0)
    icnr = create_model("tpsr_x4").eval()
    names = apply_icnr(icnr)
    assert names == ["up.0.conv", "up.1.conv"]
    x = torch.full((1, 3, 32, 32), 0.4)  # smooth: constant (zero padding only disturbs the borders)
    hr = np.full((128, 128, 3), 100.0)
    with torch.no_grad():
        outs = {k: m(x)[0].permute(1, 2, 0).numpy() * 255 for k, m in (("default", default), ("icnr", icnr))}
    g = {k: grid_residual(v, hr, 4, shave=24) for k, v in outs.items()}  # 24 px: past the border effects
    assert g["icnr"] == pytest.approx(0.0, abs=1e-4) and g["default"] > 100 * max(g["icnr"], 1e-6)


def test_icnr_train_config_field(tmp_path):
    from tinysr.train.config import TrainConfig
    from tinysr.train.trainer import build_model

    torch.manual_seed(0)
    model = build_model(TrainConfig.from_dict({"model": "tpsr_x2", "icnr": True}))
    w = model.up[0].conv.weight
    assert torch.equal(w[0::4], w[1::4]) and torch.equal(w[0::4], w[3::4])
    assert not TrainConfig.from_dict({"model": "tpsr_x2"}).icnr
    with pytest.raises(ValueError, match="icnr"):
        TrainConfig.from_dict({"model": "tpsr_x2", "icnr": True, "gan": {}})
