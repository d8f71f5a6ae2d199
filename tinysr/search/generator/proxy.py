"""The proxy task of a generator search: train each candidate briefly, score it on held-out images.

TPSR (ECCV 2020) ranks thousands of candidate cells, so a candidate cannot get the full training
of the final network (hundreds of thousands of steps on 48 px LR patches). Each one is trained on a
*proxy task* instead: small LR patches (``patch_size``, 24 by default), a few hundred Adam steps
(``steps``) with a cosine schedule and a larger batch, then scored by the mean Y-PSNR of its
outputs on a small validation set. What matters is the *ranking* of candidates, not their final
quality; with weight sharing (:mod:`tinysr.search.generator.weight_store`) later candidates start from
trained weights, so short training ranks them sensibly.

**Validation images.** They are held out *by file* from the search's own training folders
(``train_data``): ``val_images`` files chosen by a fixed-seed permutation of the sorted file list,
never trained on. The benchmark sets (Set5, Set14, B100, ...) are never used during a search, so
they remain an unbiased test of the networks the search finds. The split does not depend on the
training ``seed`` (changing it never changes the validation set). Each validation pair is a centre
crop (``val_size`` LR pixels a side, clipped to the image; 0: the whole image) of the HR image,
cropped to a multiple of the scale, with its LR made by MATLAB-compatible bicubic
(:func:`tinysr.data.bicubic.downscale`), as the benchmarks' LR images are. The task, the data and
the validation measures live in :mod:`tinysr.data.proxy` (shared with GAN training) and are
re-exported here.

**Determinism.** Training batches (which images, which crops, which flips and rotations) are a
pure function of ``(seed, step)`` (:class:`tinysr.data.batches.StepBatchSampler` and
:class:`tinysr.data.datasets.HRFolderDataset`'s keyed crops), so every candidate sees the same batch
sequence (a fair comparison), and :func:`evaluate_candidate` fixes the thread count and the torch
seed: the same inputs give bit-identical weights and PSNR in any process, on any backend.

Unreadable images (and training images smaller than one HR patch) are skipped with a warning
naming them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from tinysr.data.proxy import (SPLIT_SEED, ProxyData, ProxyTask, bicubic_psnr, validation_psnr,  # noqa: F401
                               validation_scores)
from tinysr.train.config import TrainConfig
from tinysr.train.trainer import make_scheduler

__all__ = ["SPLIT_SEED", "GeneratorJob", "ProxyData", "ProxyTask", "ProxyResult", "bicubic_psnr", "evaluate_candidate", "train_steps",
           "validation_psnr", "validation_scores"]


def train_steps(model: nn.Module, batches: Iterable, steps: int, lr: float = 2e-3, lr_min: float = 1e-5,
                betas=(0.9, 0.999), progress: bool = False) -> list[float]:
    """L1 training of ``model`` for ``steps`` steps on ``(lr, hr)`` batches (any iterable, e.g. a list).

    Adam with the trainer's cosine schedule (``make_scheduler``) from ``lr`` to ``lr_min`` over
    ``steps``. Returns the per-step losses. One-line ``ValueError`` if the batches run out before
    ``steps`` or the loss becomes non-finite (naming the step).
    """
    from tqdm.auto import tqdm

    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
    sched = make_scheduler(opt, TrainConfig(lr=lr, lr_min=lr_min, steps=steps, scheduler="cosine"))
    l1 = nn.L1Loss()
    model.train()
    losses: list[float] = []
    it = iter(batches)
    with tqdm(total=steps, desc="proxy training", disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for step in range(1, steps + 1):
            try:
                lr_img, hr_img = next(it)
            except StopIteration:
                raise ValueError(f"the training batches ran out after {step - 1} of {steps} steps") from None
            loss = l1(model(lr_img), hr_img)
            value = loss.item()
            if not math.isfinite(value):
                raise ValueError(f"the training loss became {value} at step {step} of {steps} (lr {lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(value)
            bar.update(1)
    return losses


@dataclass
class GeneratorJob:
    """What a backend runs for one generator candidate (picklable: a process pool or Ray ships it):
    :func:`evaluate_candidate` of ``genotype`` (text) from ``init_state`` (None: fresh weights)."""

    genotype: str
    init_state: dict | None
    n_feats: int = 16
    precision: str = "fp32"

    def evaluate(self, task: ProxyTask, data: ProxyData, threads: int) -> "ProxyResult":
        return evaluate_candidate(self.genotype, self.init_state, task, data, n_feats=self.n_feats, threads=threads,
                                  precision=self.precision)


@dataclass
class ProxyResult:
    psnr: float  # mean validation Y-PSNR after the proxy training
    state_dict: dict  # the trained weights (CPU tensors)
    train_s: float  # seconds of training
    val_s: float  # seconds of validation
    final_loss: float  # L1 loss of the last training step
    psnr_fp32: float | None = None  # precision int8: the float network's PSNR (``psnr`` is the int8 one)


#: Training batches the int8 proxy observes activation ranges on (the batches after the proxy's own).
INT8_CALIBRATION_BATCHES = 4


def int8_psnr(model: nn.Module, task: ProxyTask, data: ProxyData) -> float:
    """The validation PSNR of ``model`` quantized as its int8 export (post-training: the exporter's int8 graph
    in fake quantization, :class:`tinysr.export.qat.QATModel`, its ranges observed on the
    :data:`INT8_CALIBRATION_BATCHES` training batches that follow the proxy's, never on validation images)."""
    from tinysr.export.qat import QATModel

    qat = QATModel(model, averaging=1.0 / INT8_CALIBRATION_BATCHES)
    qat.train()
    with torch.no_grad():
        for lr_img, _ in data.batches(task.steps + INT8_CALIBRATION_BATCHES, start=task.steps):
            qat(lr_img)
    qat.freeze()
    return validation_psnr(qat.eval(), data.val)


def evaluate_candidate(genotype, init_state: dict | None, task: ProxyTask, data: ProxyData, n_feats: int = 16,
                       threads: int = 1, precision: str = "fp32") -> ProxyResult:
    """Build ``CellSR.of(genotype, task.scale, n_feats)`` (a network genotype has its own width), load ``init_state`` (strict) if given, train it
    on the task's batches and score it on the validation pairs; ``precision`` ``int8``: score its int8
    form (:func:`int8_psnr`; the float PSNR is kept as ``psnr_fp32``, the float weights as the result).

    Deterministic: ``threads`` torch threads and ``torch.manual_seed(task.seed)`` before building
    (the caller's RNG state and thread count are restored afterwards); the same inputs give
    bit-identical weights and PSNR. Every candidate sees the same batch sequence.
    """
    from tinysr.models.tpsr import CellSR

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task.seed)
            model = CellSR.of(genotype, task.scale, n_feats)
            if init_state is not None:
                model.load_state_dict(init_state, strict=True)
            t0 = time.perf_counter()
            losses = train_steps(model, data.batches(task.steps), task.steps, task.lr, task.lr_min)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            psnr = validation_psnr(model, data.val)
            psnr_fp32 = None
            if precision == "int8":
                psnr_fp32, psnr = psnr, int8_psnr(model, task, data)
            val_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return ProxyResult(psnr, state, train_s, val_s, losses[-1], psnr_fp32)
