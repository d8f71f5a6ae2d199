"""NIQE (Mittal et al., 2013) with the official pristine model, ported from the LIVE MATLAB release.

Gray conversion as MATLAB ``rgb2gray`` (rounded to uint8), 96 x 96 blocks without overlap,
two scales (the second by MATLAB-compatible bicubic ``imresize(im, 0.5)``), MSCN with a 7x7
Gaussian (sigma 7/6, replicate border), 18 AGGD features per block and scale, and the
Mahalanobis-like distance to the pristine multivariate Gaussian.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..data.bicubic import imresize
from ..weights_store import find_weights

BLOCK = 96


@lru_cache(maxsize=1)
def _gamma_table():
    gam = np.arange(0.2, 10.0005, 0.001)
    g = np.vectorize(math.gamma)
    r_gam = g(2 / gam) ** 2 / (g(1 / gam) * g(3 / gam))
    return gam, r_gam


def _aggd(vec: np.ndarray) -> tuple[float, float, float]:
    gam, r_gam = _gamma_table()
    left = vec[vec < 0]
    right = vec[vec > 0]
    leftstd = math.sqrt(np.mean(left ** 2)) if left.size else 0.0
    rightstd = math.sqrt(np.mean(right ** 2)) if right.size else 0.0
    if leftstd == 0 or rightstd == 0:
        return float("nan"), float("nan"), float("nan")
    gammahat = leftstd / rightstd
    rhat = np.mean(np.abs(vec)) ** 2 / np.mean(vec ** 2)
    rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    alpha = float(gam[np.argmin((r_gam - rhatnorm) ** 2)])
    f = math.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, leftstd * f, rightstd * f


def _block_features(block: np.ndarray) -> list[float]:
    alpha, bl, br = _aggd(block.ravel())
    feat = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        pair = block.ravel() * np.roll(block, shift, axis=(0, 1)).ravel()
        alpha, bl, br = _aggd(pair)
        mean = (br - bl) * math.gamma(2 / alpha) / math.gamma(1 / alpha) if alpha == alpha else float("nan")
        feat += [alpha, mean, bl, br]
    return feat


def _gauss_filter(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    r = window.shape[0] // 2
    padded = np.pad(img, r, mode="edge")
    out = np.zeros_like(img)
    h, w = img.shape
    for dy in range(window.shape[0]):
        for dx in range(window.shape[1]):
            out += window[dy, dx] * padded[dy:dy + h, dx:dx + w]
    return out


def _features(gray: np.ndarray, window: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    rows, cols = h // BLOCK, w // BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs an image of at least {BLOCK}x{BLOCK} pixels, got {w}x{h}")
    im = gray[: rows * BLOCK, : cols * BLOCK].astype(np.float64)
    feats = []
    for scale in (1, 2):
        mu = _gauss_filter(im, window)
        sigma = np.sqrt(np.abs(_gauss_filter(im * im, window) - mu * mu))
        struct = (im - mu) / (sigma + 1)
        b = BLOCK // scale
        feats.append([_block_features(struct[r * b:(r + 1) * b, c * b:(c + 1) * b])
                      for c in range(cols) for r in range(rows)])
        if scale == 1:
            im = imresize(im, 0.5)
    return np.concatenate([np.asarray(f) for f in feats], axis=1)


def rgb2gray_uint8(img: np.ndarray) -> np.ndarray:
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

    def __call__(self, img_uint8: np.ndarray, crop_border: int = 0) -> float:
        gray = rgb2gray_uint8(img_uint8)
        if crop_border:
            gray = gray[crop_border:-crop_border, crop_border:-crop_border]
        feat = _features(gray, self.window)
        feat = feat[~np.isnan(feat).any(axis=1)]
        mu = feat.mean(axis=0)
        cov = np.cov(feat, rowvar=False)
        d = self.mu - mu
        return float(np.sqrt(d @ np.linalg.pinv((self.cov + cov) / 2) @ d))
