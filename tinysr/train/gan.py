"""Stage two of the paper: GAN fine-tuning of an L1-trained generator (TPSR Algorithm 1, lines 27-33).

L_G = pixel_weight * L_pix + perceptual_weight * L_vgg + adversarial_weight * L_adv (TPSR Eq. 7),
L_D the standard (Eq. 8) or the relativistic average loss (:mod:`tinysr.train.losses`); the
weights, optimisers and schedules come from a recipe (:data:`tinysr.train.config.RECIPES`).

:class:`GanStage` holds the two networks, their Adam optimisers and schedules, the optional EMA of
G and the losses, and trains one step at a time: ``tinysr train`` with a ``gan:`` section runs it
(:func:`train_gan`), and the discriminator search fine-tunes with it on its proxy task.

**Data.** Training patches and the validation images come from the held-out proxy data
(:class:`tinysr.data.proxy.ProxyData`): ``gan.val_images`` files held out of ``train_data`` by a
fixed-seed split, never trained on, and batches that are a pure function of ``(seed, step)``. The
HR patch (``patch_size * scale``) is the discriminator's input size. ``best.pt`` is chosen by
validation LPIPS (``gan.val_lpips_net``) on those held-out training images, never on a test set;
``gan.max_psnr_drop`` and ``gan.max_grid_ratio`` refuse validations whose PSNR fell too far below,
or whose grid residual (:mod:`tinysr.metrics.grid`) rose too far above, the initial generator's.

**Resume.** ``last.pt`` holds G, D, both optimisers, both schedules, the EMA and the RNG state; a
run killed at any point continues from it with the batches it would have seen, to the same weights.
"""
from __future__ import annotations

import copy
import json
import math
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..imageio import atomic_write
from ..checkpoint import load_model, model_record, read_checkpoint, save_checkpoint
from ..models import create_model, get_entry
from .config import GanConfig, TrainConfig
from .losses import PerceptualLoss, discriminator_loss, generator_adversarial_loss

#: Columns of a GAN run's ``log.csv`` (losses are means over the rows' interval).
LOG_COLUMNS = ["step", "g_loss", "d_loss", "pixel", "perceptual", "adversarial", "d_real", "d_fake",
               "lr_g", "lr_d", "val_psnr", "val_lpips", "val_lpips_alex", "val_grid", "seconds"]
LOG_EVERY = 10


def build_discriminator(gan: GanConfig, input_size: int) -> nn.Module:
    """The discriminator ``gan.discriminator`` names (registry name or checkpoint) for ``input_size`` patches."""
    path = Path(gan.discriminator)
    if path.suffix in (".pt", ".pth") or path.is_file():
        model = load_model(str(path), kind="discriminator").train()
        if getattr(model, "input_size", input_size) != input_size:
            raise ValueError(f"{path}: a discriminator for {model.input_size}-px patches, but the HR patch is "
                             f"{input_size} px (patch_size x scale)")
        return model
    entry = get_entry(gan.discriminator, kind="discriminator")
    kwargs = {"input_size": input_size}
    if gan.spectral_norm:
        kwargs["spectral_norm"] = True
    if gan.d_genotype:
        if entry.family != "searched_discriminator":
            raise ValueError(f"d_genotype only applies to the searched discriminator template (tpsr_d), "
                             f"not {entry.name}")
        kwargs["genotype"] = gan.d_genotype
    return create_model(entry.name, **kwargs)


def init_generator(model: nn.Module, spec: str) -> None:
    """Load ``spec`` (an L1-stage checkpoint, or a registry name with bundled weights) into ``model``;
    every tensor must match (one-line ``ValueError`` otherwise)."""
    src = load_model(spec).state_dict()
    own = model.state_dict()
    bad = [k for k in own if k not in src or src[k].shape != own[k].shape]
    if bad or len(src) != len(own):
        raise ValueError(f"{spec} does not match the generator {type(model).__name__} "
                         f"({len(bad)} of {len(own)} tensors differ): the GAN stage starts from an L1 "
                         "checkpoint of the same architecture")
    model.load_state_dict(src)


class GanStage:
    """G and D with their optimisers, schedules, losses and the optional EMA of G; :meth:`step` is
    one iteration (G step, then D step, as BasicSR orders them). ``schedule``: the
    :class:`TrainConfig` whose scheduler fields (and ``lr``, ``betas`` for G) apply to both nets."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, gan: GanConfig, schedule: TrainConfig,
                 perceptual: PerceptualLoss | None = None):
        from .trainer import make_scheduler

        self.g, self.d, self.gan = generator.train(), discriminator.train(), gan
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=schedule.lr, betas=tuple(schedule.betas))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=gan.d_lr, betas=tuple(gan.d_betas))
        self.sched_g = make_scheduler(self.opt_g, schedule)
        d_schedule = copy.copy(schedule)
        d_schedule.lr = gan.d_lr  # the cosine floor is relative to each net's own rate
        self.sched_d = make_scheduler(self.opt_d, d_schedule)
        if perceptual is None and gan.perceptual_weight > 0:
            perceptual = PerceptualLoss(gan.perceptual_layer, gan.perceptual_criterion, gan.vgg_weights)
        self.perceptual = perceptual
        self.ema = copy.deepcopy(self.g).eval().requires_grad_(False) if gan.ema else None
        self.steps_done = 0

    @property
    def eval_model(self) -> nn.Module:
        """What validation scores and ``best.pt`` holds: the EMA of G when enabled, else G."""
        return self.ema if self.ema is not None else self.g

    def step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        gan = self.gan
        sr = self.g(lr)
        # generator
        self.d.requires_grad_(False)
        pixel = F.l1_loss(sr, hr) if gan.pixel_loss == "l1" else F.mse_loss(sr, hr)
        perceptual = self.perceptual(sr, hr) if self.perceptual is not None else sr.new_zeros(())
        fake_logits = self.d(sr)
        real_logits = self.d(hr).detach() if gan.adversarial_loss == "relativistic" else None
        adversarial = generator_adversarial_loss(real_logits, fake_logits, gan.adversarial_loss)
        g_loss = gan.pixel_weight * pixel + gan.perceptual_weight * perceptual + gan.adversarial_weight * adversarial
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        # discriminator
        self.d.requires_grad_(True)
        real = self.d(hr)
        fake = self.d(sr.detach())
        d_loss = discriminator_loss(real, fake, gan.adversarial_loss)
        values = {"g_loss": g_loss.item(), "d_loss": d_loss.item(), "pixel": pixel.item(),
                  "perceptual": perceptual.item(), "adversarial": adversarial.item(),
                  "d_real": torch.sigmoid(real).mean().item(), "d_fake": torch.sigmoid(fake).mean().item()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"GAN step {self.steps_done + 1}: {', '.join(bad)} became non-finite "
                                     f"({', '.join(f'{k}={values[k]}' for k in bad)}); lower the learning rates "
                                     "or the adversarial weight")
        self.opt_g.step()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        self.sched_g.step()
        self.sched_d.step()
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.g.parameters()):
                    e.lerp_(p, 1 - gan.ema)
                for e, b in zip(self.ema.buffers(), self.g.buffers()):
                    e.copy_(b)
        self.steps_done += 1
        return values

    def lrs(self) -> tuple[float, float]:
        return self.sched_g.get_last_lr()[0], self.sched_d.get_last_lr()[0]

    def state_dict(self) -> dict:
        return {"discriminator": model_record(self.d), "d_state": self.d.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(), "steps_done": self.steps_done}

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        ours = model_record(self.d)
        if state["discriminator"] != ours:
            raise ValueError(f"{source} was trained with another discriminator ({state['discriminator']['family']} "
                             f"{state['discriminator']['config']} vs {ours['family']} {ours['config']}): "
                             "use another --out-dir or --no-resume")
        self.d.load_state_dict(state["d_state"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        if self.ema is not None:  # the EMA never feeds back into G: it may be switched on or off on resume
            self.ema.load_state_dict(state["ema"] if state["ema"] is not None else self.g.state_dict())
        self.steps_done = state["steps_done"]


def best_refusal(scores: dict, initial: dict | None, gan: GanConfig) -> str | None:
    """Why a validation may not become ``best.pt`` (its guards against the ``initial`` generator's
    scores: ``gan.max_psnr_drop``, ``gan.max_grid_ratio``), or None when it may."""
    if initial is None:
        return None
    if gan.max_psnr_drop is not None and scores["psnr"] < initial["psnr"] - gan.max_psnr_drop:
        return (f"validation PSNR {scores['psnr']:.3f} dB is more than {gan.max_psnr_drop} dB below the initial "
                f"{initial['psnr']:.3f} dB")
    if gan.max_grid_ratio is not None and scores.get("grid") is not None \
            and scores["grid"] > gan.max_grid_ratio * initial["grid"]:
        return (f"grid residual {scores['grid']:.4f} exceeds {gan.max_grid_ratio} x the initial "
                f"{initial['grid']:.4f}")
    return None


def _widen_log(path: Path, columns: list[str]) -> None:
    """A ``log.csv`` of a run started before some of ``columns`` existed: the missing columns added,
    empty, so that the resumed rows line up."""
    import csv

    if not path.is_file():
        return
    rows = list(csv.reader(open(path)))
    if not rows or rows[0] == columns or not set(rows[0]) <= set(columns):
        return
    old = rows[0]
    widened = [columns] + [[dict(zip(old, r)).get(c, "") for c in columns] for r in rows[1:] if r]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(widened)


def proxy_task_of(cfg: TrainConfig, scale: int):
    """The held-out split and the step-keyed batches of a GAN run, as a search's proxy task."""
    from ..data.proxy import ProxyTask

    return ProxyTask(train_data=list(cfg.train_data), scale=scale, val_images=cfg.gan.val_images,
                     val_size=cfg.gan.val_size, patch_size=cfg.patch_size, batch_size=cfg.batch_size,
                     steps=cfg.steps, seed=cfg.seed)


def train_gan(cfg: TrainConfig, resume: bool = True, progress: bool = True, stop_after: int | None = None):
    """Run (or resume) the GAN stage of ``cfg`` (which has a ``gan:`` section)."""
    from tqdm.auto import tqdm

    from ..evaluate import _lpips_models
    from ..data.proxy import ProxyData, validation_scores
    from .trainer import TrainResult, build_model, check_same_architecture, open_log, prepare_run

    gan = cfg.gan
    out = prepare_run(cfg)

    g = build_model(cfg)
    scale = g.scale
    d = build_discriminator(gan, cfg.patch_size * scale)
    stage = GanStage(g, d, gan, cfg)
    step, best, best_scores = 0, None, None
    last_ckpt = out / "last.pt"
    if resume and last_ckpt.is_file():
        state = read_checkpoint(last_ckpt)
        if "gan_state" not in state:
            raise ValueError(f"{last_ckpt} is from an L1 run, not a GAN run: use another --out-dir or --no-resume")
        check_same_architecture(state, g, last_ckpt, cfg.model)
        g.load_state_dict(state["state_dict"])
        stage.load_state_dict(state["gan_state"], str(last_ckpt))
        if (state["gan_state"]["ema"] is None) != (stage.ema is None):
            tqdm.write(f"EMA of G {'on from' if stage.ema is not None else 'off after'} step {state['meta']['step']} "
                       "(as the config now says; G's training is unchanged, validation and best.pt follow "
                       f"{'the average' if stage.ema is not None else 'G itself'})")
        step, best, best_scores = state["meta"]["step"], state["meta"].get("best_lpips"), state["meta"].get("best")
        torch.set_rng_state(state["torch_rng"])
        tqdm.write(f"resuming {out} from step {step}")
    elif cfg.init_from:
        init_generator(g, cfg.init_from)
        if stage.ema is not None:
            stage.ema.load_state_dict(g.state_dict())
        tqdm.write(f"generator initialised from {cfg.init_from}")
    else:
        raise ValueError("the GAN stage fine-tunes an L1-trained generator: set init_from (a checkpoint of the "
                         "L1 stage, or a model name with bundled weights, e.g. tpsr_x4)")
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(cfg.to_dict(), indent=2)))

    data = ProxyData.load(proxy_task_of(cfg, scale), progress=progress)
    other = "vgg" if gan.val_lpips_net == "alex" else "alex"
    lpips_models = _lpips_models(True, gan.val_lpips_net) + _lpips_models(None, other)  # the chooser is required

    def validation_with_grid(model: nn.Module) -> dict:
        """The validation scores plus ``grid``: the mean grid residual of the 8-bit outputs (period =
        scale; None when no validation image holds one full block)."""
        from ..metrics.grid import model_grid_residual

        scores = validation_scores(model, data.val, lpips_models)
        scores["grid"] = model_grid_residual(model, data.val)
        return scores

    start_scores = None  # the initial generator's validation scores: the reference of the best.pt guards
    if gan.max_psnr_drop is not None or gan.max_grid_ratio is not None:
        if not cfg.init_from:
            raise ValueError("gan.max_psnr_drop / gan.max_grid_ratio are relative to the initial generator: "
                             "set init_from")
        initial = build_model(cfg)
        init_generator(initial, cfg.init_from)
        start_scores = validation_with_grid(initial)
        if gan.max_grid_ratio is not None and start_scores["grid"] is None:
            raise ValueError("gan.max_grid_ratio: no validation image holds a full 32x32 block after the shave; "
                             "raise gan.val_size (0: whole images)")
        guards = ([f"within {gan.max_psnr_drop} dB of it"] if gan.max_psnr_drop is not None else []) + \
                 ([f"with a grid residual at most {gan.max_grid_ratio} x its {start_scores['grid']:.4f}"]
                  if gan.max_grid_ratio is not None else [])
        tqdm.write(f"initial generator: validation PSNR {start_scores['psnr']:.3f} dB; best.pt only "
                   + " and ".join(guards))
    end = min(cfg.steps, stop_after) if stop_after is not None else cfg.steps
    _widen_log(out / "log.csv", LOG_COLUMNS)
    log_file, log = open_log(out / "log.csv", step, LOG_COLUMNS)
    t0 = time.time()
    sums: dict[str, float] = {}
    count = 0
    last_scores = None

    def save(path: Path, model: nn.Module, **extra):
        meta = {"step": step, "best_lpips": best, "best": best_scores, "val": last_scores, "initial": start_scores,
                "lpips_net": gan.val_lpips_net, "train_config": cfg.to_dict()}
        save_checkpoint(path, model, meta=meta, train_config=cfg.to_dict(), **extra)

    bar = tqdm(total=cfg.steps, initial=step, desc=f"GAN {cfg.model}", disable=not progress, dynamic_ncols=True)
    try:
        for lr_img, hr_img in data.batches(end, start=step):
            values = stage.step(lr_img, hr_img)
            step += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            bar.update(1)
            scores = None
            if step % cfg.val_every == 0 or step == cfg.steps:
                scores = last_scores = validation_with_grid(stage.eval_model)
                key = "lpips" if gan.val_lpips_net == "vgg" else "lpips_alex"
                refusal = best_refusal(scores, start_scores, gan)
                if refusal is not None and (best is None or scores[key] < best):
                    tqdm.write(f"step {step}: not a best.pt candidate: {refusal}")
                if refusal is None and (best is None or scores[key] < best):
                    best, best_scores = scores[key], dict(scores, step=step)
                    save(out / "best.pt", stage.eval_model)
            if step % LOG_EVERY == 0 or scores is not None or step == end:
                means = {k: v / count for k, v in sums.items()}
                lr_g, lr_d = stage.lrs()
                log.writerow([step] + [f"{means[k]:.6f}" for k in LOG_COLUMNS[1:8]] + [f"{lr_g:.3e}", f"{lr_d:.3e}"]
                             + ["" if scores is None else f"{scores[k]:.4f}" for k in ("psnr", "lpips", "lpips_alex")]
                             + ["" if scores is None or scores["grid"] is None else f"{scores['grid']:.4f}"]
                             + [f"{time.time() - t0:.1f}"])
                log_file.flush()
                bar.set_postfix(G=f"{means['g_loss']:.4f}", D=f"{means['d_loss']:.3f}",
                                psnr="-" if last_scores is None else f"{last_scores['psnr']:.2f}",
                                lpips="-" if last_scores is None else f"{last_scores['lpips_alex' if gan.val_lpips_net == 'alex' else 'lpips']:.4f}")
                sums, count = {}, 0
            if step % cfg.ckpt_every == 0 or step == end:
                save(last_ckpt, g, optimizer=stage.opt_g.state_dict(), scheduler=stage.sched_g.state_dict(),
                     torch_rng=torch.get_rng_state(), gan_state=stage.state_dict())
    finally:
        bar.close()
        log_file.close()
    if step == cfg.steps:
        try:
            plot_gan_curves(out / "log.csv", out / "curves.png")
        except Exception as e:  # a plot must never lose a finished run
            warnings.warn(f"could not draw training curves: {e}")
    return TrainResult(step, None if best_scores is None else best_scores.get("psnr"),
                       None if last_scores is None else last_scores["psnr"], out, best_lpips=best,
                       lpips_net=gan.val_lpips_net)


def plot_gan_curves(log_path: Path, png: Path) -> None:
    """Losses of both networks, the discriminator's outputs, validation LPIPS / PSNR and (when logged)
    the validation grid residual over steps."""
    import csv

    from ..plotting import pyplot, save_png

    plt = pyplot()
    rows = list(csv.DictReader(open(log_path)))
    steps = [int(r["step"]) for r in rows]
    col = lambda k: [float(r[k]) for r in rows]  # noqa: E731
    val = [r for r in rows if r["val_psnr"]]
    grid = [(int(r["step"]), float(r["val_grid"])) for r in val if r.get("val_grid")]
    fig, ax = plt.subplots(1, 4 if grid else 3, figsize=(20 if grid else 15, 3.8))
    ax[0].plot(steps, col("g_loss"), label="L_G (total)")
    ax[0].plot(steps, col("d_loss"), label="L_D")
    ax[0].set(xlabel="step", ylabel="loss", yscale="log", title="losses")
    ax[0].legend()
    ax[1].plot(steps, col("d_real"), label="D(HR)")
    ax[1].plot(steps, col("d_fake"), label="D(SR)")
    ax[1].set(xlabel="step", ylabel="mean sigmoid(D)", ylim=(0, 1), title="discriminator outputs")
    ax[1].legend()
    if val:
        vs = [int(r["step"]) for r in val]
        for key, label in (("val_lpips", "LPIPS-VGG"), ("val_lpips_alex", "LPIPS-Alex")):
            pts = [(s, float(r[key])) for s, r in zip(vs, val) if r[key]]
            if pts:
                ax[2].plot(*zip(*pts), marker="o", label=label)
        ax[2].set(xlabel="step", ylabel="LPIPS (held-out training images)", title="validation")
        ax[2].legend(loc="upper left")
        twin = ax[2].twinx()
        twin.plot(vs, [float(r["val_psnr"]) for r in val], color="grey", linestyle="--", marker=".")
        twin.set_ylabel("Y-PSNR (dB), dashed")
    if grid:
        ax[3].plot(*zip(*grid), marker="o", color="tab:red")
        ax[3].set(xlabel="step", ylabel="grid residual (grey levels)", title="validation grid residual")
    fig.tight_layout()
    save_png(fig, png)
