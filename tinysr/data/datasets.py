"""Training and evaluation datasets.

* :class:`HRFolderDataset` - a folder (or several) of HR images; the LR image is made on the fly
  with MATLAB-compatible bicubic (:mod:`tinysr.data.bicubic`) and cached with the decoded HR.
* :class:`PairedFolderDataset` - HR and LR folders with matching file names.

Both yield ``(lr, hr)`` float tensors in [0, 1], C x H x W. With ``patch_size`` (the LR patch
side) they take aligned random crops with flips and 90-degree rotations; without it, whole
images (evaluation). Unreadable files are skipped with a warning naming them, never mid-epoch
crashes.
"""
from __future__ import annotations

import abc
import logging
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..imageio import IMAGE_EXTENSIONS, ImageReadError, load_rgb_uint8
from .bicubic import downscale

log = logging.getLogger(__name__)


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def augment(lr: np.ndarray, hr: np.ndarray, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < 0.5:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    if rng.random() < 0.5:
        lr, hr = lr[::-1], hr[::-1]
    k = rng.randrange(4)
    if k:
        lr, hr = np.rot90(lr, k), np.rot90(hr, k)
    return lr, hr


def random_crop(lr: np.ndarray, hr: np.ndarray, scale: int, patch: int, rng: random.Random):
    h, w = lr.shape[:2]
    if h < patch or w < patch:
        raise ValueError(f"LR image {w}x{h} is smaller than the patch size {patch}")
    y, x = rng.randrange(h - patch + 1), rng.randrange(w - patch + 1)
    return lr[y:y + patch, x:x + patch], hr[y * scale:(y + patch) * scale, x * scale:(x + patch) * scale]


class _SRDataset(Dataset, abc.ABC):
    def __init__(self, scale: int, patch_size: int | None, augment: bool, repeat: int, cache: bool, seed: int):
        self.scale, self.patch_size, self.augment = scale, patch_size, augment
        self.repeat, self.cache_enabled, self.seed = max(1, repeat), cache, seed
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.bad: set[int] = set()
        self.names: list[str] = []
        self._epoch = 0

    def set_epoch(self, epoch: int):
        self._epoch = epoch

    @abc.abstractmethod
    def _load_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(lr, hr) uint8 arrays of image ``i``."""

    def preload(self, progress: bool = False):
        """Decode (and downscale) everything now, so DataLoader workers share the cache."""
        from tqdm.auto import tqdm

        skipped = []
        for i in tqdm(range(len(self.names)), desc="decoding", disable=not progress, leave=False):
            try:
                self._pair(i)
            except (ImageReadError, ValueError) as e:
                self.bad.add(i)
                skipped.append(f"{self.names[i]} ({e})")
        if skipped:
            warnings.warn(f"skipping {len(skipped)} of {len(self.names)} images: " + "; ".join(skipped[:3])
                          + (" ..." if len(skipped) > 3 else ""), stacklevel=2)
        if len(self.bad) == len(self.names):
            raise RuntimeError("no usable images in the dataset")

    def _pair(self, i: int):
        if i in self._cache:
            return self._cache[i]
        pair = self._load_pair(i)
        if self.cache_enabled:
            self._cache[i] = pair
        return pair

    def __len__(self):
        return len(self.names) * (self.repeat if self.patch_size else 1)

    def __getitem__(self, index):
        """``index``: an int, or ``(image_index, crop_key)`` to fix the crop and augmentation."""
        if isinstance(index, tuple):
            index, crop_key = index
        else:
            crop_key = (self.seed, self._epoch, index)
        n = len(self.names)
        i = index % n
        for attempt in range(n):
            j = (i + attempt) % n
            if j in self.bad:
                continue
            try:
                lr, hr = self._pair(j)
                break
            except (ImageReadError, ValueError) as e:
                self.bad.add(j)
                warnings.warn(f"skipping {self.names[j]}: {e}", stacklevel=2)
        else:
            raise RuntimeError("no readable image pairs left in the dataset")
        if self.patch_size:
            rng = random.Random(repr(crop_key))
            lr, hr = random_crop(lr, hr, self.scale, self.patch_size, rng)
            if self.augment:
                lr, hr = augment(lr, hr, rng)
        return to_tensor(lr), to_tensor(hr)


class HRFolderDataset(_SRDataset):
    """HR images from one or more folders; LR by MATLAB-compatible bicubic, cached once decoded."""

    def __init__(self, roots, scale: int, patch_size: int | None = None, augment: bool = True,
                 repeat: int = 1, cache: bool = True, seed: int = 0):
        super().__init__(scale, patch_size, augment, repeat, cache, seed)
        roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
        self.files = [f for r in roots for f in image_files(r)]
        if not self.files:
            raise FileNotFoundError(f"no images in {', '.join(map(str, roots))}")
        self.names = [str(f) for f in self.files]

    def _load_pair(self, i):
        hr = load_rgb_uint8(self.files[i])
        s = self.scale
        hr = hr[: hr.shape[0] - hr.shape[0] % s, : hr.shape[1] - hr.shape[1] % s]
        if self.patch_size and min(hr.shape[:2]) < self.patch_size * s:
            raise ValueError(f"image {hr.shape[1]}x{hr.shape[0]} is smaller than an HR patch of {self.patch_size * s}")
        return downscale(hr, s), hr


class PairedFolderDataset(_SRDataset):
    """HR and LR folders whose files share names (``HR/x.png`` with ``LR_bicubic/X4/x.png``)."""

    def __init__(self, hr_dir, lr_dir, scale: int, patch_size: int | None = None, augment: bool = True,
                 repeat: int = 1, cache: bool = True, seed: int = 0):
        super().__init__(scale, patch_size, augment, repeat, cache, seed)
        hr_files = {f.stem: f for f in image_files(hr_dir)}
        lr_files = {f.stem: f for f in image_files(lr_dir)}
        missing = sorted(set(hr_files) - set(lr_files))
        if missing:
            raise FileNotFoundError(f"{lr_dir}: no LR image for {', '.join(missing[:5])}")
        self.pairs = [(hr_files[k], lr_files[k]) for k in sorted(hr_files)]
        self.names = [str(h) for h, _ in self.pairs]

    def _load_pair(self, i):
        hr_path, lr_path = self.pairs[i]
        hr, lr = load_rgb_uint8(hr_path), load_rgb_uint8(lr_path)
        s = self.scale
        h, w = lr.shape[0] * s, lr.shape[1] * s
        if hr.shape[0] < h or hr.shape[1] < w:
            raise ValueError(f"{hr_path}: HR {hr.shape[1]}x{hr.shape[0]} is smaller than {s} x LR {lr.shape[1]}x{lr.shape[0]}")
        return lr, hr[:h, :w]


def benchmark_dataset(root: str | Path, scale: int) -> _SRDataset:
    """An evaluation folder: ``HR/`` (+ ``HR_X2/`` for x2 where present) with ``LR_bicubic/X{s}/``,
    or HR images only (LR then made by MATLAB-compatible bicubic)."""
    root = Path(root)
    lr_dir = root / "LR_bicubic" / f"X{scale}"
    hr_dir = root / f"HR_X{scale}" if (root / f"HR_X{scale}").is_dir() else root / "HR"
    if hr_dir.is_dir() and lr_dir.is_dir():
        return PairedFolderDataset(hr_dir, lr_dir, scale, cache=False)
    if hr_dir.is_dir():
        return HRFolderDataset(hr_dir, scale, cache=False)
    return HRFolderDataset(root, scale, cache=False)
