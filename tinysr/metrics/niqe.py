"""NIQE (Mittal et al., 2013) with the official pristine model, ported from the LIVE MATLAB release.

The port follows ``computequality.m``, ``computefeature.m`` and ``estimateaggdparam.m`` of the
LIVE NIQE software release, step by step:

- colour input goes through MATLAB ``rgb2gray`` (uint8 in, rounded uint8 out), then ``double``;
  a 2-D array is taken as the gray image as it is (e.g. a Y channel);
- the image is cropped top-left to whole 96 x 96 blocks;
- two scales; at each, MSCN coefficients ``(im - mu) ./ (sigma + 1)`` with the 7x7 Gaussian window
  (sigma 7/6) and replicate border, filtered separably as ``imfilter`` does for a double image;
  then 18 features per block, blocks in ``blkproc`` order (down each column first). The second
  scale is ``imresize(im, 0.5)`` of the double image: bicubic, antialiased, not rounded, with
  out-of-range source indices mirrored, as recent MATLAB releases do (R2021a among them: with
  clamped indices, as older releases and ``tinysr.data.bicubic`` have them, baboon is 0.18 % off);
- AGGD fit on the ``0.2:0.001:10`` grid with MATLAB's semantics for degenerate input: the mean of
  an empty set is NaN and ``min`` over an all-NaN vector returns the first index, so a block with
  no negative (or no positive) coefficients gets ``alpha = 0.2`` and NaN scale parameters;
- the distorted-image model is ``nanmean(feat)`` (column means over the non-NaN entries) and
  ``nancov(feat)`` (rows holding any NaN removed, normalised by n - 1, by n for a single row);
- the distance is ``sqrt(d * pinv((cov_pris + cov) / 2) * d')``, ``pinv`` with MATLAB's tolerance.

One deliberate difference: where a 7x7 neighbourhood is constant, the MSCN coefficient is exactly 0,
its value in exact arithmetic. In floating point, ``im - mu`` there is rounding noise whose sign
depends on the last bits of the window's SVD factors and on the summation order (MKL and IPP in
MATLAB); the AGGD fit counts that noise as coefficients. On images with large flat areas, MATLAB's
own result therefore moves by several per cent with changes of the last bits of the filter, which no
port can reproduce. Without flat areas the port matches MATLAB to 12 digits (I04, and I06 with
the Y input, below).

Reference values (published third-party runs of the official MATLAB code; tests/test_niqe.py):

- basicsr 1.4.2 (PyPI sdist), ``basicsr/metrics/niqe.py``, ``calculate_niqe`` docstring: MATLAB
  R2021a gives 5.72957338 for ``tests/data/baboon.png``, Y channel (uint8). Here, Set14 baboon
  (``data/bench/Set14/HR/img_001.png``) gives 5.72957388 (+9e-8; 13 of its pixels are in constant
  neighbourhoods).
- pyiqa 0.1.3 (PyPI sdist), ``ResultsCalibra/results_original.csv``, five TID2013 images in
  ``ResultsCalibra/dist_dir``, ``rgb2gray`` input: I03 15.75363 / 15.74533 here (-0.05 %),
  I04 3.654922 / 3.654922 (0.0000 %), I06 3.235477 / 3.234345 (-0.03 %), I08 3.184033 / 3.202014
  (+0.56 %), I19 8.635197 / 8.665078 (+0.35 %).
- The same images with an unrounded double Y channel as input: pyiqa 0.1.1 (PyPI sdist)
  ``ResultsCalibra/results_original.csv``; full precision in chaofengc/IQA-PyTorch
  ``ResultsCalibra/results_compare/niqe_org_result.txt``: I03 15.79781 / 15.80443 (+0.04 %),
  I04 3.776408 / 3.776408 (0.0000 %), I06 3.179425 / 3.179425 (0.0000 %), I08 3.170371 / 3.168165
  (-0.07 %), I19 8.757397 / 8.654016 (-1.18 %, the one value off by more than 1 %: 29 % of I19's
  pixels lie in constant 7x7 neighbourhoods, see above).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..data.bicubic import cubic
from ..weights_store import find_weights

BLOCK = 96


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``gam = 0.2:0.001:10`` grid, ``r_gam`` on it, and per grid point the two gamma-function
    factors used once alpha is chosen: sqrt(G(1/a)/G(3/a)) and G(2/a)/G(1/a)."""
    gam = 0.2 + 0.001 * np.arange(9801)
    g = np.vectorize(math.gamma, otypes=[np.float64])
    g1, g2, g3 = g(1 / gam), g(2 / gam), g(3 / gam)
    r_gam = g2 ** 2 / (g1 * g3)
    return gam, r_gam, np.sqrt(g1 / g3), g2 / g1


def _nearest_gamma(x: np.ndarray, r_gam: np.ndarray) -> np.ndarray:
    """For each x, the index MATLAB's ``[~, i] = min((r_gam - x).^2)`` returns (0-based).

    ``r_gam`` increases strictly, so the minimum lies next to x's insertion point; among equal
    squared differences the first index wins, and a NaN x (every difference NaN) or an infinite x
    (every difference infinite) gives index 0, as in MATLAB.
    """
    idx = np.zeros(x.shape, dtype=np.int64)
    ok = np.isfinite(x)
    xs = x[ok]
    j = np.searchsorted(r_gam, xs)
    cand = np.clip(j[:, None] + np.arange(-2, 2)[None, :], 0, len(r_gam) - 1)  # ascending indices
    d = (r_gam[cand] - xs[:, None]) ** 2
    idx[ok] = cand[np.arange(len(xs)), np.argmin(d, axis=1)]
    return idx


def _aggd(vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``estimateaggdparam`` on every row of ``vecs`` (n x m).

    Returns alpha, betal, betar and G(2/alpha)/G(1/alpha) (for the mean parameter), each of length n.
    """
    gam, r_gam, beta_factor, mean_factor = _gamma_table()
    sq = vecs * vecs
    neg, pos = vecs < 0, vecs > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        leftstd = np.sqrt(np.where(neg, sq, 0.0).sum(axis=1) / neg.sum(axis=1))  # mean([]) = NaN
        rightstd = np.sqrt(np.where(pos, sq, 0.0).sum(axis=1) / pos.sum(axis=1))
        gammahat = leftstd / rightstd
        rhat = np.mean(np.abs(vecs), axis=1) ** 2 / np.mean(sq, axis=1)
        rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    pos_idx = _nearest_gamma(rhatnorm, r_gam)
    f = beta_factor[pos_idx]
    return gam[pos_idx], leftstd * f, rightstd * f, mean_factor[pos_idx]


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """``computefeature`` on a stack of MSCN blocks (n x b x b): an n x 18 array."""
    n = blocks.shape[0]
    alpha, bl, br, _ = _aggd(blocks.reshape(n, -1))
    cols = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):  # circshift within each block
        pair = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, bl, br, mean_factor = _aggd(pair.reshape(n, -1))
        cols += [alpha, (br - bl) * mean_factor, bl, br]
    return np.stack(cols, axis=1)


def _separate(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``imfilter``'s factors of a rank-1 kernel: ``hcol = u(:,1)*sqrt(s(1))``, ``hrow = v(:,1)'*sqrt(s(1))``.

    (``imfilter`` filters a double image separably whenever the kernel has at least 49 elements and
    rank 1, as the NIQE window does.)
    """
    u, s, vt = np.linalg.svd(window)
    if np.sum(s > len(window) * s[0] * np.finfo(np.float64).eps) != 1:
        raise ValueError("the NIQE Gaussian window must be separable (rank 1)")
    return u[:, 0] * math.sqrt(s[0]), vt[0] * math.sqrt(s[0])


def _imfilter(img: np.ndarray, hcol: np.ndarray, hrow: np.ndarray) -> np.ndarray:
    """``imfilter(img, hcol * hrow, 'replicate')`` the way MATLAB runs a separable kernel on a double
    image: correlation with ``hrow`` along rows, then with ``hcol`` along columns."""
    r = len(hrow) // 2
    padded = np.pad(img, r, mode="edge")
    h, w = img.shape
    rows = hrow[0] * padded[:, :w]
    for j in range(1, len(hrow)):
        rows += hrow[j] * padded[:, j:j + w]
    out = hcol[0] * rows[:h]
    for i in range(1, len(hcol)):
        out += hcol[i] * rows[i:i + h]
    return out


def _constant_neighbourhood(img: np.ndarray, r: int) -> np.ndarray:
    """True where the (2r+1) x (2r+1) neighbourhood, replicate-padded, holds a single value."""
    padded = np.pad(img, r, mode="edge")
    h, w = img.shape
    hi, lo = padded[:, :w].copy(), padded[:, :w].copy()
    for j in range(1, 2 * r + 1):
        np.maximum(hi, padded[:, j:j + w], out=hi)
        np.minimum(lo, padded[:, j:j + w], out=lo)
    vhi, vlo = hi[:h].copy(), lo[:h].copy()
    for i in range(1, 2 * r + 1):
        np.maximum(vhi, hi[i:i + h], out=vhi)
        np.minimum(vlo, lo[i:i + h], out=vlo)
    return vhi == vlo


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """MSCN coefficients ``(im - mu) ./ (sigma + 1)`` with ``mu = imfilter(im, window, 'replicate')`` and
    ``sigma = sqrt(abs(imfilter(im.^2, window, 'replicate') - mu.^2))``.

    One deliberate difference: where the 7x7 neighbourhood is constant the coefficient is exactly 0
    (its value in exact arithmetic). In floating point ``im - mu`` is rounding noise there, whose sign
    depends on the last bits of the SVD factors of the window and on the summation order; the AGGD
    fit counts such values as negative or positive coefficients, which moves NIQE by several per cent
    on images with large flat areas.
    """
    hcol, hrow = _separate(window)
    mu = _imfilter(img, hcol, hrow)
    sigma = np.sqrt(np.abs(_imfilter(img * img, hcol, hrow) - mu * mu))
    mscn = (img - mu) / (sigma + 1)
    mscn[_constant_neighbourhood(img, window.shape[0] // 2)] = 0.0
    return mscn


@lru_cache(maxsize=32)
def _half_weights(n: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``imresize`` contributions for scale 0.5, bicubic, antialiased, mirrored indices."""
    scale, kernel_width = 0.5, 8.0
    x = np.arange(1, math.ceil(n * scale) + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    idx = left[:, None] + np.arange(int(math.ceil(kernel_width)) + 2)[None, :]
    w = scale * cubic(scale * (u[:, None] - idx))
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(n), np.arange(n)[::-1]])  # aux = [1:n, n:-1:1], 0-based
    idx = aux[np.mod(idx.astype(np.int64) - 1, 2 * n)]
    keep = np.any(w != 0, axis=0)
    return idx[:, keep], w[:, keep]


def _imresize_half(img: np.ndarray) -> np.ndarray:
    """``imresize(img, 0.5)`` of a double image (rows first, then columns; no rounding)."""
    idx, w = _half_weights(img.shape[0])
    out = np.einsum("ot,otw->ow", w, img[idx])
    idx, w = _half_weights(img.shape[1])
    return np.einsum("ot,hot->ho", w, out[:, idx])


def _blocks(img: np.ndarray, b: int) -> np.ndarray:
    """Non-overlapping b x b blocks in ``blkproc`` + ``reshape`` order (down each column first)."""
    h, w = img.shape
    rows, cols = h // b, w // b
    return img.reshape(rows, b, cols, b).transpose(2, 0, 1, 3).reshape(rows * cols, b, b)


def _features(gray: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Blocks x 36 feature matrix (18 features at full scale, then 18 at half scale)."""
    h, w = gray.shape
    rows, cols = h // BLOCK, w // BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs an image of at least {BLOCK}x{BLOCK} pixels, got {w}x{h}")
    im = gray[: rows * BLOCK, : cols * BLOCK].astype(np.float64)
    feats = []
    for scale in (1, 2):
        feats.append(_block_features(_blocks(_mscn(im, window), BLOCK // scale)))
        if scale == 1:
            im = _imresize_half(im)
    return np.concatenate(feats, axis=1)


def _nanmean(feat: np.ndarray) -> np.ndarray:
    """MATLAB ``nanmean`` of a matrix: column means over the non-NaN entries (NaN if none)."""
    ok = ~np.isnan(feat)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, feat, 0.0).sum(axis=0) / ok.sum(axis=0)


def _nancov(feat: np.ndarray) -> np.ndarray:
    """MATLAB ``nancov`` of a matrix: covariance of the rows without any NaN, normalised by n - 1
    (by n when a single row is left; all NaN when none is)."""
    rows = feat[~np.isnan(feat).any(axis=1)]
    n, p = rows.shape[0], feat.shape[1]
    if n == 0:
        return np.full((p, p), np.nan)
    d = rows - rows.mean(axis=0)
    return d.T @ d / (n - 1 if n > 1 else 1)


def _pinv(a: np.ndarray) -> np.ndarray:
    """MATLAB ``pinv``: singular values above ``max(size(a)) * eps(max(s))`` are inverted."""
    u, s, vt = np.linalg.svd(a)
    keep = s > max(a.shape) * np.spacing(s.max())
    return (vt[keep].T / s[keep]) @ u[:, keep].T


def rgb2gray_uint8(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of a uint8 image (2-D input is returned unchanged)."""
    if img.ndim == 2:
        return img
    g = 0.298936021293775 * img[..., 0] + 0.587043074451121 * img[..., 1] + 0.114020904255103 * img[..., 2]
    return np.clip(np.floor(g + 0.5), 0, 255).astype(np.uint8)


class NIQE:
    def __init__(self, params_path=None):
        p = np.load(find_weights("niqe", params_path))
        self.mu = p["mu_pris_param"].ravel()
        self.cov = p["cov_pris_param"]
        self.window = p["gaussian_window"]

    def features(self, img_uint8: np.ndarray, crop_border: int = 0) -> np.ndarray:
        """The blocks x 36 NIQE feature matrix of an image (may hold NaNs for flat blocks).

        ``img_uint8``: H x W x 3 uint8 RGB (converted with ``rgb2gray``), or an H x W array taken
        as the gray image as it is (uint8, or float such as an unrounded Y channel).
        """
        gray = rgb2gray_uint8(img_uint8)
        if crop_border:
            gray = gray[crop_border:-crop_border, crop_border:-crop_border]
        return _features(gray, self.window)

    def score_features(self, feat: np.ndarray) -> float:
        """Distance between the pristine model and the ``nanmean``/``nancov`` fit of ``feat``."""
        mu, cov = _nanmean(feat), _nancov(feat)
        if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
            # MATLAB stops here too: pinv (svd) refuses NaN input
            raise ValueError("NIQE is undefined for this image: no 96x96 block has a NaN-free feature "
                             "row (flat image?)")
        d = self.mu - mu
        return float(np.sqrt(d @ _pinv((self.cov + cov) / 2) @ d))

    def __call__(self, img_uint8: np.ndarray, crop_border: int = 0) -> float:
        return self.score_features(self.features(img_uint8, crop_border))
