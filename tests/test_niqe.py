"""NIQE against values published from the official LIVE NIQE MATLAB code, and MATLAB's NaN semantics.

Where the reference values come from (all are third-party runs of the official MATLAB release):

- BASICSR: PyPI basicsr 1.4.2, sdist ``basicsr-1.4.2.tar.gz`` (sha256
  b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87), file
  ``basicsr/metrics/niqe.py``, docstring of ``calculate_niqe``: "MATLAB R2021a result for
  tests/data/baboon.png: 5.72957338". Input: the Y channel, rounded (BasicSR's
  ``tests/test_niqe.py`` calls ``calculate_niqe(img, 0, convert_to='y')``, which rounds the Y).
  The image is Set14 baboon: ``data/bench/Set14/HR/img_001.png`` (500x480) of the shared kit.
- PYIQA_GRAY: PyPI pyiqa 0.1.3, sdist ``pyiqa-0.1.3.tar.gz`` (sha256
  873971e95c8027559fbd4ffd5b27ad52b97a40fdb6afce6dcab1910eb3ee4521), file
  ``ResultsCalibra/results_original.csv``, row ``niqe``; ``ResultsCalibra/ResultsCalibra.md``
  footnote 11: "We use rgb2gray function as input of original NIQE matlab script." Images:
  ``ResultsCalibra/dist_dir/I0{3,4,6,8}.bmp`` and ``I19.bmp`` (TID2013 distorted images, 512x384).
- PYIQA_Y: chaofengc/IQA-PyTorch, ``ResultsCalibra/results_compare/niqe_org_result.txt`` (commit
  76eae10c4f7eb4dc41bfc7cb4989b956845d9900). The same values, rounded to 4 digits, are in PyPI
  pyiqa 0.1.1, sdist sha256 c190a5b31c592896790801b7d5293a82a0099af29f933798189674433789dfb2,
  ``ResultsCalibra/results_original.csv``; its ``ResultsCalibra.md`` footnote 11 says "We use
  Y-channel of YCBCR images as input of original NIQE matlab script". Same images. The input is
  the unrounded (double) Y: with it I04 and I06, which have no flat areas, agree to 12 digits;
  with a rounded Y they are 0.3-0.4 % off.

The pyiqa images are not in the shared kit and are not redistributed here (pyiqa 0.1.x is
CC BY-NC-SA 4.0; the images are TID2013's): the README's test command fetches the pyiqa 0.1.3
sdist from the package index into ``tests/.data/`` (``pip download --no-deps --no-binary pyiqa
--no-build-isolation pyiqa==0.1.3 -d tests/.data``), where these tests find it. ``TINYSR_PYIQA_SDIST``
may name another pyiqa 0.1.0 - 0.1.3 sdist (they carry identical images) or a folder holding the
five BMP files.

Tolerance: 1 % everywhere (the target); 1e-6 where the image has (next to) no constant 7x7
neighbourhoods, because there the port reproduces MATLAB's arithmetic (to 1e-13 on I04 and on I06
with the Y input, 9e-8 on baboon) and a looser bound would miss real regressions (clamped instead
of mirrored ``imresize`` borders move baboon by 0.18 %). On I19 with the Y input the port is
1.18 % off: about 29 % of its pixels lie in constant neighbourhoods, where MATLAB's value depends
on floating-point noise (see the module docstring).
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import need
from tinysr.imageio import load_rgb_uint8
from tinysr.metrics.psnr_ssim import rgb_to_y

BASICSR_BABOON = 5.72957338
PYIQA_GRAY = {"I03": 15.7536293917814, "I04": 3.65492152353770, "I06": 3.23547743716998,
              "I08": 3.18403333858339, "I19": 8.63519663862637}
PYIQA_Y = {"I03": 15.797808864012882, "I04": 3.776407855120957, "I06": 3.179424950663961,
           "I08": 3.170371193193479, "I19": 8.757396864667149}
PYIQA_BMP_SHA256 = {
    "I03": "bb817e7fef614dcc12b3a99af33ce3d201bc4d56c4827254c0bcc4fa6ea11151",
    "I04": "f3d685983aacd76b2c131579ea60cee345205a1169a4bd2ff5f3039ecf81729e",
    "I06": "726e043e99d8e07235c2535107d4bb6fc85bad0cb3cc7d6ba3ecf3364ac97539",
    "I08": "8ad39042d7e17d6c96ecfd8c4b9f0e98c803b303a92d368ef57bc9c3c40f5330",
    "I19": "e0c6000652d270d1c39b7094761d01e14695fc5aa7cb76b945be6391327ee886",
}
EXACT, TARGET = 1e-6, 1e-2
# images without constant 7x7 neighbourhoods for that input
FLAT_FREE = {("gray", "I04"), ("y", "I04"), ("y", "I06")}


def rel_err(ours: float, official: float) -> float:
    return abs(ours / official - 1.0)


@pytest.fixture(scope="module")
def niqe():
    from conftest import WEIGHTS
    from tinysr.metrics.niqe import NIQE

    need(WEIGHTS / "niqe", "NIQE pristine parameters")
    return NIQE()


@pytest.fixture(scope="module")
def pyiqa_images():
    """The five pyiqa calibration images as uint8 RGB, read from $TINYSR_PYIQA_SDIST."""
    from PIL import Image

    default = Path(__file__).resolve().parent / ".data" / "pyiqa-0.1.3.tar.gz"
    src = os.environ.get("TINYSR_PYIQA_SDIST") or (str(default) if default.is_file() else None)
    if not src:
        pytest.skip(f"pyiqa calibration images not available: {default} is absent (the README's test command "
                    "fetches it: pip download --no-deps --no-binary pyiqa --no-build-isolation pyiqa==0.1.3 "
                    "-d tests/.data) and TINYSR_PYIQA_SDIST is unset")
    path = Path(src)
    raw = {}
    if path.is_dir():
        for key in PYIQA_BMP_SHA256:
            raw[key] = (path / f"{key}.bmp").read_bytes()
    else:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if name.parent.name == "dist_dir" and name.stem in PYIQA_BMP_SHA256 and name.suffix == ".bmp":
                    raw[name.stem] = tar.extractfile(member).read()
    assert set(raw) == set(PYIQA_BMP_SHA256), f"{src} lacks some of the ResultsCalibra/dist_dir images"
    for key, data in raw.items():
        assert hashlib.sha256(data).hexdigest() == PYIQA_BMP_SHA256[key], f"{key}.bmp is not pyiqa's image"
    return {key: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for key, data in raw.items()}


def test_baboon_matches_basicsr_matlab_r2021a_value(niqe, bench):
    rgb = load_rgb_uint8(bench / "Set14" / "HR" / "img_001.png")
    y = np.clip(np.floor(rgb_to_y(rgb) + 0.5), 0, 255).astype(np.uint8)
    ours = niqe(y)
    assert rel_err(ours, BASICSR_BABOON) < TARGET
    assert rel_err(ours, BASICSR_BABOON) < EXACT, f"{ours} vs MATLAB {BASICSR_BABOON}"


CASES = [pytest.param("gray", key, PYIQA_GRAY[key], id=f"gray-{key}") for key in PYIQA_GRAY] + [
    pytest.param("y", key, PYIQA_Y[key], id=f"y-{key}", marks=pytest.mark.xfail(
        strict=True, reason="-1.18 %: 29 % of I19's pixels lie in constant 7x7 neighbourhoods, "
                            "where MATLAB's value is floating-point noise")) if key == "I19"
    else pytest.param("y", key, PYIQA_Y[key], id=f"y-{key}") for key in PYIQA_Y]


@pytest.mark.parametrize("kind, key, official", CASES)
def test_pyiqa_images_match_official_matlab_values(niqe, pyiqa_images, kind, key, official):
    rgb = pyiqa_images[key]
    ours = niqe(rgb) if kind == "gray" else niqe(rgb_to_y(rgb))
    assert rel_err(ours, official) < TARGET, f"{kind} {key}: {ours} vs MATLAB {official}"
    if (kind, key) in FLAT_FREE:
        assert rel_err(ours, official) < EXACT, f"{kind} {key}: {ours} vs MATLAB {official}"


def _matlab_min_index(values: np.ndarray) -> int:
    """Index MATLAB's ``[~, i] = min(values)`` returns: NaNs skipped, all-NaN gives the first."""
    if np.isnan(values).all():
        return 0
    return int(np.nanargmin(values))


def test_nanmean_and_nancov_follow_matlab(tmp_path):
    from tinysr.metrics.niqe import NIQE, _nancov, _nanmean

    rng = np.random.default_rng(3)
    feat = rng.normal(size=(14, 36)) + np.arange(36)
    feat[2, 5] = np.nan          # one NaN: the row leaves nancov, its other entries stay in nanmean
    feat[7, [0, 9, 30]] = np.nan
    feat[11, :] = np.nan          # an all-NaN row counts nowhere
    masked = np.ma.masked_invalid(feat)
    mean_expected = masked.mean(axis=0).filled(np.nan)
    cov_expected = np.ma.cov(np.ma.mask_rows(masked), rowvar=False).filled(np.nan)
    complete = feat[~np.isnan(feat).any(axis=1)]
    assert len(complete) == 11
    np.testing.assert_allclose(_nanmean(feat), mean_expected, rtol=1e-13)
    np.testing.assert_allclose(_nancov(feat), cov_expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(_nancov(feat), np.cov(complete, rowvar=False), rtol=1e-12, atol=1e-13)
    # nanmean is not the mean of the complete rows (what dropping rows would give)
    assert np.abs(_nanmean(feat) - complete.mean(axis=0))[[0, 5, 9, 30]].min() > 1e-3

    # the score uses exactly these two: check against an independent computation
    pris_cov = np.cov(rng.normal(size=(100, 36)), rowvar=False)
    pris_mu = rng.normal(size=(1, 36)) + np.arange(36)
    params = tmp_path / "niqe.npz"
    np.savez(params, mu_pris_param=pris_mu, cov_pris_param=pris_cov, gaussian_window=np.full((7, 7), 1 / 49))
    niqe = NIQE(params)
    d = pris_mu.ravel() - mean_expected
    expected = np.sqrt(d @ np.linalg.pinv((pris_cov + cov_expected) / 2) @ d)
    assert niqe.score_features(feat) == pytest.approx(expected, rel=1e-10)
    d_rows = pris_mu.ravel() - complete.mean(axis=0)
    assert niqe.score_features(feat) != pytest.approx(
        np.sqrt(d_rows @ np.linalg.pinv((pris_cov + cov_expected) / 2) @ d_rows), rel=1e-6)

    # nancov of a single complete row normalises by n = 1 (zeros); of none, all NaN
    one = feat[[0, 2, 7, 11]]
    assert np.array_equal(_nancov(one), np.zeros((36, 36)))
    none = feat[[2, 7, 11]]
    assert np.isnan(_nancov(none)).all()
    assert np.isnan(_nanmean(feat[[11]])).all()
    with pytest.raises(ValueError, match="undefined"):
        niqe.score_features(none)


def test_aggd_degenerate_blocks_follow_matlab():
    from tinysr.metrics.niqe import _aggd, _block_features, _gamma_table, _nearest_gamma

    gam, r_gam, _, _ = _gamma_table()
    assert len(gam) == 9801 and gam[0] == 0.2 and gam[-1] == pytest.approx(10.0, abs=1e-12)
    # min((r_gam - x).^2) with MATLAB's index, dense, against the search next to the insertion point
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.uniform(0.0, 0.8, 400), r_gam[::97], (r_gam[:-1:89] + r_gam[1::89]) / 2,
                         [np.nan, np.inf, -np.inf, 0.0, 1.0, -5.0]])
    with np.errstate(invalid="ignore"):
        dense = [_matlab_min_index((r_gam - x) ** 2) for x in xs]
    assert np.array_equal(_nearest_gamma(xs, r_gam), dense)

    # a flat block: no negative, no positive coefficient -> alpha = gam(1) = 0.2, scales NaN
    feat = _block_features(np.zeros((1, 96, 96)))[0]
    assert np.array_equal(feat[[0, 2, 6, 10, 14]], [0.2] * 5)
    assert np.isnan(np.delete(feat, [0, 2, 6, 10, 14])).all()
    # a one-signed vector: leftstd = NaN, rightstd finite, alpha = 0.2
    vec = np.abs(rng.normal(size=(1, 500))) + 0.1
    alpha, bl, br, _ = _aggd(vec)
    assert alpha[0] == 0.2 and np.isnan(bl[0])
    from math import gamma, sqrt

    assert br[0] == pytest.approx(sqrt(np.mean(vec ** 2)) * sqrt(gamma(5.0) / gamma(15.0)), rel=1e-12)


def test_mscn_and_half_scale_resize(niqe):
    from tinysr.data.bicubic import imresize
    from tinysr.metrics.niqe import _imresize_half, _mscn

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (96, 120)).astype(np.float64)
    img[10:40, 20:60] = 77.0  # constant 7x7 neighbourhoods inside [13:37, 23:57]
    window = niqe.window
    padded = np.pad(img, 3, mode="edge")
    mu = sum(window[i, j] * padded[i:i + 96, j:j + 120] for i in range(7) for j in range(7))
    ex2 = sum(window[i, j] * padded[i:i + 96, j:j + 120] ** 2 for i in range(7) for j in range(7))
    direct = (img - mu) / (np.sqrt(np.abs(ex2 - mu * mu)) + 1)
    got = _mscn(img, window)
    assert np.all(got[13:37, 23:57] == 0.0)
    assert np.abs(direct[13:37, 23:57]).max() < 1e-9  # direct arithmetic leaves noise there
    np.testing.assert_allclose(got, direct, atol=1e-9)
    # imresize(im, 0.5) mirrors out-of-range indices: same as resizing a symmetric-padded copy
    img = rng.normal(size=(50, 38)) * 40 + 100
    via_pad = imresize(np.pad(img, 8, mode="symmetric"), 0.5)[4:-4, 4:-4]
    np.testing.assert_allclose(_imresize_half(img), via_pad, rtol=0, atol=1e-10)
    clamped = imresize(img, 0.5)
    assert np.abs(_imresize_half(img) - clamped)[0].max() > 1e-3  # not the clamped border


def test_niqe_prefers_pristine_over_blurred(weights_dir, bench):
    from tinysr.data.bicubic import downscale, imresize
    from tinysr.metrics.niqe import NIQE

    niqe = NIQE()
    hr = load_rgb_uint8(bench / "Set14" / "HR" / "img_013.png")
    blurred = imresize(downscale(hr, 4), output_shape=hr.shape[:2])
    a, b = niqe(hr), niqe(blurred)
    assert np.isfinite(a) and np.isfinite(b)
    assert a < b - 1.0
    assert niqe(hr, crop_border=4) == niqe(hr[4:-4, 4:-4])
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe(hr[:50, :50])
    with pytest.raises(ValueError, match="undefined"):
        niqe(np.full((200, 200, 3), 128, np.uint8))
