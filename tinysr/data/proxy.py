"""Held-out validation and step-keyed batches of a folder of training images: the data of a search's
proxy task, and of a GAN training run's validation (below both :mod:`tinysr.train` and
:mod:`tinysr.search`, which import it; it imports neither).

**Validation images.** They are held out *by file* from the training folders (``train_data``):
``val_images`` files chosen by a fixed-seed permutation of the sorted file list, never trained
on. The benchmark sets (Set5, Set14, B100, ...) are never used, so they remain an unbiased test.
The split does not depend on the training ``seed`` (changing it never changes the validation
set). Each validation pair is a centre crop (``val_size`` LR pixels a side, clipped to the image;
0: the whole image) of the HR image, cropped to a multiple of the scale, with its LR made by
MATLAB-compatible bicubic (:func:`tinysr.data.bicubic.downscale`), as the benchmarks' LR images are.

**Determinism.** Training batches (which images, which crops, which flips and rotations) are a
pure function of ``(seed, step)`` (:class:`tinysr.data.batches.StepBatchSampler` and
:class:`tinysr.data.datasets.HRFolderDataset`'s keyed crops), so every consumer sees the same batch
sequence.

Unreadable images (and training images smaller than one HR patch) are skipped with a warning
naming them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from tinysr.data.batches import StepBatchSampler
from tinysr.data.bicubic import downscale, imresize
from tinysr.data.datasets import HRFolderDataset, to_tensor
from tinysr.imageio import ImageReadError, load_rgb_uint8, quantize
from tinysr.metrics.psnr_ssim import psnr_y

#: Seed of the permutation that picks the validation files (fixed: independent of ``ProxyTask.seed``).
SPLIT_SEED = 20200823


@dataclass
class ProxyTask:
    """The proxy task: every field comes from the search config's ``proxy:`` section."""

    train_data: list[str]  # folders of HR images (the search's training images)
    scale: int = 4
    val_images: int = 10  # images held out of train_data, by file, never trained on: the validation set
    val_size: int = 48  # LR side of the centre crop of each validation image (0: whole image)
    patch_size: int = 24  # LR training patch side
    batch_size: int = 32
    steps: int = 200
    lr: float = 2e-3  # Adam, cosine to lr_min over `steps`
    lr_min: float = 1e-5
    seed: int = 0  # batches (images, crops, flips) are a pure function of (seed, step)
    max_train_images: int = 0  # 0: all remaining images; else the first N (after the hold-out)

    @classmethod
    def from_dict(cls, data: dict, source: str = "proxy") -> "ProxyTask":
        from tinysr.train.config import from_mapping  # a leaf module (standard library only): no cycle

        if isinstance(data, dict) and "train_data" not in data:
            raise ValueError(f"{source}: train_data (a list of folders of HR images) is required")
        task = from_mapping(cls, data, source)
        task.validate(source)
        return task

    def validate(self, source: str = "proxy") -> None:
        """One-line ``ValueError`` for a field out of range (types are checked by :meth:`from_dict`)."""
        if isinstance(self.train_data, str):
            self.train_data = [self.train_data]
        if not self.train_data:
            raise ValueError(f"{source}: train_data must list at least one folder of HR images")
        from tinysr.models.blocks import num_x2_steps

        try:
            num_x2_steps(self.scale)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        for name in ("val_images", "patch_size", "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{source}: {name} must be a positive integer, got {getattr(self, name)}")
        for name in ("val_size", "seed", "max_train_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{source}: {name} must be >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"{source}: lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.lr_min) and 0 <= self.lr_min <= self.lr):
            raise ValueError(f"{source}: lr_min must be between 0 and lr ({self.lr}), got {self.lr_min}")
        for folder in self.train_data:  # last: the fields' own errors first
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{source}: train_data: {folder}: no such folder of HR images")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _centre_pair(hr: np.ndarray, scale: int, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(lr, hr) uint8: the HR centre crop (a multiple of ``scale``, ``val_size`` LR pixels a side at
    most) and its MATLAB-bicubic LR."""
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    ch, cw = (min(h, val_size * scale), min(w, val_size * scale)) if val_size else (h, w)
    if min(ch, cw) <= 2 * scale:
        raise ValueError(f"image {hr.shape[1]}x{hr.shape[0]} is too small for a x{scale} validation image")
    y, x = (h - ch) // 2, (w - cw) // 2
    crop = hr[y:y + ch, x:x + cw]
    return downscale(crop, scale), crop


class ProxyData:
    """Decoded training images and the held-out validation pairs, in memory (built once per worker).

    ``train_names`` / ``val_names``: the image files (paths as found under ``task.train_data``) of
    each side of the split, disjoint, unusable files left out. ``val``: the validation pairs
    ``(lr, hr)``, float [0, 1] C x H x W. Picklable (a process pool or Ray's object store ships it).
    """

    def __init__(self, task: ProxyTask, train: HRFolderDataset, usable: list[int], val_names: list[str],
                 val: list[tuple[torch.Tensor, torch.Tensor]], sizes: dict[str, int]):
        self.task = task
        self._train, self._usable = train, usable
        self.train_names = [train.names[i] for i in usable]
        self.val_names = val_names
        self.val = val
        self._sizes = sizes

    @classmethod
    def load(cls, task: ProxyTask, progress: bool = False) -> "ProxyData":
        task.validate()
        train = HRFolderDataset(task.train_data, task.scale, task.patch_size, augment=True, seed=task.seed)
        files = sorted(train.files, key=str)
        seen = {}
        for f in files:
            key = os.path.realpath(f)
            if key in seen:
                raise ValueError(f"train_data lists the same image twice ({seen[key]} and {f}): "
                                 "give each folder once")
            seen[key] = f
        if task.val_images >= len(files):
            raise ValueError(f"val_images={task.val_images} leaves no training image: train_data "
                             f"({', '.join(task.train_data)}) has {len(files)} images")
        order = [files[i] for i in np.random.default_rng(SPLIT_SEED).permutation(len(files))]

        skipped, val, val_names = [], [], []
        pos = 0
        while len(val) < task.val_images and pos < len(order):
            f = order[pos]
            pos += 1
            try:
                lr, hr = _centre_pair(load_rgb_uint8(f), task.scale, task.val_size)
            except (ImageReadError, ValueError) as e:
                skipped.append(f"{f} ({e})")
                continue
            val.append((to_tensor(lr), to_tensor(hr)))
            val_names.append(str(f))
        if skipped:
            warnings.warn(f"skipping {len(skipped)} unusable image(s) while choosing the validation set: "
                          + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""), stacklevel=2)
        if len(val) < task.val_images:
            raise ValueError(f"only {len(val)} readable images in train_data for val_images={task.val_images}")
        rest = order[pos:]
        if task.max_train_images:
            rest = rest[:task.max_train_images]
        if not rest:
            raise ValueError(f"no training image left after holding out {task.val_images} validation images "
                             f"(train_data has {len(files)} images, {len(skipped)} unreadable)")

        train.files = rest
        train.names = [str(f) for f in rest]
        train.preload(progress=progress)  # warns about (and marks) unusable files; raises if none is left
        usable = [i for i in range(len(rest)) if i not in train.bad]
        sizes = {str(f): os.path.getsize(f) for f in list(rest) + [order[i] for i in range(pos)]}
        return cls(task, train, usable, val_names, val, sizes)

    def batches(self, steps: int, seed: int | None = None, start: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(lr, hr)`` batches N x C x H x W for steps ``start .. steps - 1``; each a pure function of
        ``(seed, step)`` (default seed: the task's)."""
        seed = self.task.seed if seed is None else int(seed)
        sampler = StepBatchSampler(len(self._usable), self.task.batch_size, seed, start, steps)
        for keys in sampler:
            pairs = [self._train[(self._usable[i], crop_key)] for i, crop_key in keys]
            yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def fingerprint(self) -> str:
        """sha256 over the split (file names and byte sizes) and the task's fields."""
        record = {"task": self.task.to_dict(),
                  "train": [[n, self._sizes.get(n)] for n in self.train_names],
                  "val": [[n, self._sizes.get(n)] for n in self.val_names]}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def __repr__(self) -> str:
        return (f"ProxyData({len(self.train_names)} training images, {len(self.val_names)} validation images, "
                f"x{self.task.scale})")


def _uint8(chw: torch.Tensor) -> np.ndarray:
    return quantize(chw.detach().cpu().numpy().transpose(1, 2, 0))


def validation_psnr(model: nn.Module, pairs, shave: int | None = None) -> float:
    """Mean Y-PSNR of ``model`` on in-memory ``(lr, hr)`` pairs, the conventions of ``tinysr eval``:
    output clamped and rounded to 8 bits, BT.601 Y, ``shave`` = the scale by default.

    The model runs in eval mode under ``torch.no_grad`` and is put back in the mode it was in.
    """
    return validation_scores(model, pairs, shave=shave)["psnr"]


def validation_scores(model: nn.Module, pairs, lpips_models=(), shave: int | None = None) -> dict[str, float]:
    """``{"psnr": ..., "lpips": ..., "lpips_alex": ...}``: mean Y-PSNR (as :func:`validation_psnr`)
    and, for each given :class:`~tinysr.metrics.lpips.LPIPS`, its mean distance on the 8-bit
    outputs (the field of its trunk: ``lpips`` for VGG, ``lpips_alex`` for AlexNet)."""
    from tinysr.evaluate import LPIPS_FIELDS
    from tinysr.metrics.lpips import lpips_distance

    if not pairs:
        raise ValueError("no validation pairs")
    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {"psnr": []}
    try:
        with torch.no_grad():
            for lr, hr in pairs:
                scale = hr.shape[-1] // lr.shape[-1]
                sr8, hr8 = _uint8(model(lr[None])[0]), _uint8(hr)
                scores["psnr"].append(psnr_y(sr8, hr8, scale if shave is None else shave))
                for m in lpips_models:
                    scores.setdefault(LPIPS_FIELDS[m.net], []).append(lpips_distance(m, sr8, hr8))
    finally:
        model.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}


def bicubic_psnr(pairs, scale: int) -> float:
    """The same measure for MATLAB-bicubic up-scaling of the LR images: the reward's ``psnr_min``."""
    if not pairs:
        raise ValueError("no validation pairs")
    scores = []
    for lr, hr in pairs:
        hr8 = _uint8(hr)
        if hr8.shape[0] != lr.shape[-2] * scale or hr8.shape[1] != lr.shape[-1] * scale:
            raise ValueError(f"HR {hr8.shape[1]}x{hr8.shape[0]} is not x{scale} the LR "
                             f"{lr.shape[-1]}x{lr.shape[-2]}")
        up = imresize(_uint8(lr), output_shape=hr8.shape[:2])
        scores.append(psnr_y(up, hr8, scale))
    return float(np.mean(scores))
