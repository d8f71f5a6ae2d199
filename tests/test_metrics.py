import sys
import types

import numpy as np
import pytest
import torch

from conftest import SHARED, need, rng_image
from tinysr.imageio import load_rgb_uint8
from tinysr.metrics.psnr_ssim import psnr_y, rgb_to_y, ssim_y

EX = SHARED / "data" / "lpips_examples"
REFERENCE = {"ex_p0.png": 0.56861281, "ex_p1.png": 0.42166427}  # official lpips 0.1.4, README there
# LPIPS-Alex v0.1: the official lpips 0.1.4 code with the shared AlexNet / alex.pth weights
# (shared/weights/MANIFEST.md, "Verification"), and the values printed in the lpips package's README
REFERENCE_ALEX = {"ex_p0.png": 0.72188067, "ex_p1.png": 0.13756561}
README_ALEX = {"ex_p0.png": 0.7222, "ex_p1.png": 0.1384}


def test_psnr_and_ssim_conventions():
    a = rng_image(40, 40)
    assert psnr_y(a, a) == float("inf") and ssim_y(a, a, shave=4) == pytest.approx(1.0)
    b = a.copy()
    b[10, 10] = 0
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    mse = np.mean((ya - yb) ** 2)
    assert psnr_y(a, b) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    assert psnr_y(a, b, shave=12) == float("inf")  # the change is in the shaved border
    assert rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert ssim_y(a, b) < 1.0


def test_lpips_vgg_reproduces_the_official_values(weights_dir):
    from tinysr.metrics.lpips import LPIPS, lpips_distance

    need(EX, "LPIPS example images")
    m = LPIPS()
    ref = load_rgb_uint8(EX / "ex_ref.png")
    for name, expected in REFERENCE.items():
        assert lpips_distance(m, ref, load_rgb_uint8(EX / name)) == pytest.approx(expected, abs=1e-5)


def test_lpips_alex_reproduces_the_official_values(weights_dir):
    from tinysr.metrics.lpips import LPIPS, lpips_distance

    need(EX, "LPIPS example images")
    m = LPIPS(net="alex")
    assert m.net == "alex" and len(m.slices) == len(m.lins) == 5
    ref = load_rgb_uint8(EX / "ex_ref.png")
    for name, expected in REFERENCE_ALEX.items():
        got = lpips_distance(m, ref, load_rgb_uint8(EX / name))
        # the same code and weights as the reference computation: float32 rounding only
        assert got == pytest.approx(expected, abs=1e-5)
        # the lpips README's 4-digit values: the package's own code gives them to within 1e-3 (0.3e-3, 0.8e-3)
        assert got == pytest.approx(README_ALEX[name], abs=1e-3)


def test_alexnet_trunk_layout():
    from torch import nn

    from tinysr.metrics.alexnet import alexnet_features
    from tinysr.metrics.lpips import TRUNKS

    f = alexnet_features()
    assert len(f) == 13
    assert [i for i, m in enumerate(f) if isinstance(m, nn.Conv2d)] == [0, 3, 6, 8, 10]
    assert [i for i, m in enumerate(f) if isinstance(m, nn.ReLU)] == list(TRUNKS["alex"].taps)
    assert [f[i].out_channels for i in (0, 3, 6, 8, 10)] == list(TRUNKS["alex"].channels)
    with torch.no_grad():
        assert tuple(f(torch.zeros(1, 3, 224, 224)).shape) == (1, 256, 6, 6)  # torchvision's AlexNet


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_package_code_path_agrees_with_ours(weights_dir, monkeypatch, net):
    """Run the official ``lpips`` code with a stand-in ``torchvision`` whose vgg16() / alexnet() is ours."""
    import importlib.util

    if importlib.util.find_spec("lpips") is None:
        pytest.skip("the lpips package is not installed (pip install --no-deps lpips==0.1.4)")
    need(EX, "LPIPS example images")
    from tinysr.metrics.alexnet import AlexNet, load_alexnet_features
    from tinysr.metrics.lpips import LPIPS, lpips_distance
    from tinysr.metrics.vgg import VGG16, load_vgg16_features
    from tinysr.weights_store import find_weights

    tv = types.ModuleType("torchvision")
    if net == "vgg":
        feats = load_vgg16_features(find_weights("vgg16"))
        tv.models = types.SimpleNamespace(vgg16=lambda pretrained=True, **kw: VGG16(feats))
    else:
        feats = load_alexnet_features(find_weights("alexnet"))
        tv.models = types.SimpleNamespace(alexnet=lambda pretrained=True, **kw: AlexNet(feats))
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tv.models)
    for mod in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, mod)
    import lpips

    official = lpips.LPIPS(net=net, verbose=False).eval()
    ours = LPIPS(net=net)
    ref = load_rgb_uint8(EX / "ex_ref.png")
    to_t = lambda im: torch.from_numpy(im.transpose(2, 0, 1).copy()).float()[None] / 127.5 - 1  # noqa: E731
    for name in REFERENCE:
        other = load_rgb_uint8(EX / name)
        with torch.no_grad():
            theirs = float(official(to_t(ref), to_t(other)))
        assert lpips_distance(ours, ref, other) == pytest.approx(theirs, abs=1e-6)


def test_missing_lpips_weights_error_names_the_file(monkeypatch, tmp_path):
    from tinysr.metrics.lpips import LPIPS
    from tinysr.weights_store import MissingWeightsError

    monkeypatch.setenv("TINYSR_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("tinysr.weights_store.importlib.util.find_spec", lambda name: None)
    with pytest.raises(MissingWeightsError, match="vgg16_features_imagenet_torchvision.pth"):
        LPIPS()


def _no_weights_anywhere(monkeypatch, folder):
    monkeypatch.setenv("TINYSR_WEIGHTS", str(folder))
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.setenv("TORCH_HOME", str(folder))
    monkeypatch.setattr("tinysr.weights_store.importlib.util.find_spec", lambda name: None)


def test_missing_lpips_alex_weights_error_names_the_file(weights_dir, monkeypatch, tmp_path):
    from tinysr.metrics.lpips import LPIPS
    from tinysr.weights_store import MissingWeightsError

    _no_weights_anywhere(monkeypatch, tmp_path)
    with pytest.raises(MissingWeightsError, match="alexnet_features_imagenet_torchvision.pth") as e:
        LPIPS(net="alex")
    assert "\n" not in str(e.value)
    (tmp_path / "alexnet_features_imagenet_torchvision.pth").symlink_to(
        weights_dir / "alexnet_features_imagenet_torchvision.pth")
    with pytest.raises(MissingWeightsError, match="lpips_v0.1/alex.pth"):  # trunk found, linear layers not
        LPIPS(net="alex")


def test_lpips_rejects_unknown_trunks():
    from tinysr.metrics.lpips import LPIPS

    with pytest.raises(ValueError, match="vgg, alex"):
        LPIPS(net="squeeze")
