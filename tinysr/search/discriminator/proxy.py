"""The proxy task of a discriminator search: E_D(s) of TPSR (ECCV 2020, Sec. 3.3).

A candidate discriminator ``s`` is scored by what it does to a generator: the *fixed* pre-trained
generator (the same architecture and the same initial weights for every candidate) is fine-tuned
with ``s`` by the GAN stage (:class:`tinysr.train.gan.GanStage`: L_G = pixel + perceptual +
adversarial, L_D the recipe's loss) for ``task.steps`` steps on the proxy batches, and the
generator is scored by validation LPIPS (the VGG trunk by default, the paper's) every
``eval_every`` steps and at the end. GAN training is unstable, so the paper takes the *best of the
last three* evaluations: the reward is ``-min(last three LPIPS)`` (:func:`reward_of_history`;
fewer than three evaluations: all of them), and the PSNR reported is the one of that evaluation.

The discriminator's input is the HR patch, ``task.patch_size * task.scale`` pixels (a multiple of
32). Determinism is :func:`~tinysr.search.generator.proxy.evaluate_candidate`'s: fixed thread count and
``torch.manual_seed(task.seed)`` in a forked RNG, the same ``(seed, step)`` batches for every
candidate; the frozen networks (VGG16 of the perceptual loss, LPIPS) are loaded once per process.
A diverging GAN (non-finite loss) raises ``FloatingPointError``, which the backends turn into a
one-line error outcome for the candidate.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch

from tinysr.data.proxy import ProxyData, ProxyTask, validation_scores

#: Evaluations the reward looks back over (the paper's guard against GAN instability).
LAST_EVALUATIONS = 3

_FROZEN: dict = {}  # per process: the perceptual loss and LPIPS networks, by their settings


def reward_of_history(lpips: list[float], last: int = LAST_EVALUATIONS) -> tuple[float, int]:
    """``(reward, index)``: ``-min`` of the last ``last`` LPIPS values (all of them when fewer) and
    the index in ``lpips`` of that minimum (the earliest on ties)."""
    if not lpips:
        raise ValueError("no LPIPS evaluation to reward")
    start = max(0, len(lpips) - int(last))
    index = min(range(start, len(lpips)), key=lambda i: (lpips[i], i))
    return -float(lpips[index]), index


@dataclass
class GanProxyResult:
    reward: float  # -LPIPS of the chosen evaluation (the best of the last three)
    lpips: float  # that evaluation's validation LPIPS
    psnr: float  # and its validation Y-PSNR
    step: int  # its step
    history: list = field(default_factory=list)  # [{"step", "lpips", "psnr"}] of every evaluation
    state_dict: dict = field(default_factory=dict)  # the discriminator's weights after fine-tuning (CPU)
    train_s: float = 0.0
    val_s: float = 0.0
    final_losses: dict = field(default_factory=dict)  # the last step's G and D losses


def _frozen(key: tuple, build):
    if key not in _FROZEN:
        _FROZEN[key] = build()
    return _FROZEN[key]


def lpips_model(net: str = "vgg"):
    """The LPIPS network ``net`` (vgg | alex), loaded once per process (one-line error without weights)."""
    from tinysr.evaluate import _lpips_models

    return _frozen(("lpips", net), lambda: _lpips_models(True, net)[0])


def _perceptual(gan):
    from tinysr.train.losses import PerceptualLoss

    if gan.perceptual_weight <= 0:
        return None
    key = ("perceptual", gan.perceptual_layer, gan.perceptual_criterion, gan.vgg_weights)
    return _frozen(key, lambda: PerceptualLoss(gan.perceptual_layer, gan.perceptual_criterion, gan.vgg_weights))


def evaluate_discriminator(genotype, generator: torch.nn.Module, task: ProxyTask, data: ProxyData, gan,
                           eval_every: int, threads: int = 1, lpips_net: str = "vgg") -> GanProxyResult:
    """E_D(genotype): fine-tune a copy of ``generator`` (left untouched) against
    ``SearchedDiscriminator(genotype)`` with :class:`~tinysr.train.gan.GanStage` (``gan``: a
    :class:`~tinysr.train.config.GanConfig`; G's Adam rate ``task.lr``, cosine to ``task.lr_min``,
    betas from the recipe; D's rate ``gan.d_lr``) for ``task.steps`` steps, scoring validation
    LPIPS every ``eval_every`` steps and at the end (see the module doc)."""
    from tinysr.evaluate import LPIPS_FIELDS
    from tinysr.models.discriminators import SearchedDiscriminator
    from tinysr.train.config import RECIPES, TrainConfig
    from tinysr.train.gan import GanStage

    if eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, got {eval_every}")
    lpips = lpips_model(lpips_net)
    key = LPIPS_FIELDS[lpips_net]
    perceptual = _perceptual(gan)
    schedule = TrainConfig(lr=task.lr, lr_min=task.lr_min, steps=task.steps, scheduler="cosine",
                           betas=tuple(RECIPES[gan.recipe]["train"]["betas"]))
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    history: list[dict] = []
    train_s = val_s = 0.0
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task.seed)
            g = copy.deepcopy(generator)
            d = SearchedDiscriminator(genotype, input_size=task.patch_size * task.scale,
                                      spectral_norm=gan.spectral_norm)
            stage = GanStage(g, d, gan, schedule, perceptual=perceptual)
            losses: dict = {}
            t0 = time.perf_counter()
            for step, (lr_img, hr_img) in enumerate(data.batches(task.steps), start=1):
                losses = stage.step(lr_img, hr_img)
                if step % eval_every == 0 or step == task.steps:
                    t1 = time.perf_counter()
                    scores = validation_scores(stage.eval_model, data.val, [lpips])
                    val_s += time.perf_counter() - t1
                    history.append({"step": step, "lpips": scores[key], "psnr": scores["psnr"]})
            train_s = time.perf_counter() - t0 - val_s
    finally:
        torch.set_num_threads(before)
    reward, i = reward_of_history([h["lpips"] for h in history])
    state = {k: v.detach().to("cpu", copy=True) for k, v in d.state_dict().items()}
    return GanProxyResult(reward, history[i]["lpips"], history[i]["psnr"], history[i]["step"], history, state,
                          train_s, val_s, {k: losses[k] for k in ("g_loss", "d_loss") if k in losses})


@dataclass
class DiscriminatorJob:
    """What a backend runs for one discriminator candidate (picklable: a process pool or Ray ships it).

    ``generator``: ``(model record, state dict)`` of the fixed pre-trained generator; ``gan``: the
    :class:`~tinysr.train.config.GanConfig` fields."""

    genotype: str
    generator: tuple
    gan: dict
    eval_every: int
    lpips_net: str = "vgg"

    def evaluate(self, task: ProxyTask, data: ProxyData, threads: int) -> GanProxyResult:
        from tinysr.checkpoint import build
        from tinysr.train.config import GanConfig

        record, state = self.generator
        g = build(record["family"], record["config"])
        g.load_state_dict(state, strict=True)
        return evaluate_discriminator(self.genotype, g, task, data, GanConfig.from_dict(dict(self.gan)),
                                      self.eval_every, threads, self.lpips_net)
