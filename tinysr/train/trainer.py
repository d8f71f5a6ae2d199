"""Stage one of the paper: L1 distortion training, resumable and deterministic.

Every batch is a pure function of ``(seed, step)`` (which images, which crops, which
flips), so a run killed at any point and resumed from ``last.pt`` continues with exactly
the batches it would have seen. ``best.pt`` keeps the best validation PSNR.
"""
from __future__ import annotations

import csv
import json
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checkpoint import model_from_checkpoint, model_record, read_checkpoint, save_checkpoint
from ..data.batches import StepBatchSampler  # noqa: F401  (tinysr.train.trainer.StepBatchSampler)
from ..data.datasets import HRFolderDataset, benchmark_dataset
from ..models import create_model, get_entry
from .config import TrainConfig


def build_model(cfg: TrainConfig) -> nn.Module:
    kwargs = {"genotype": cfg.genotype} if cfg.genotype else {}
    family = get_entry(cfg.model).family
    if kwargs:
        from ..models.trilevel import TrilevelGenotype

        trilevel = TrilevelGenotype.looks_like(cfg.genotype)
        if trilevel and family != "trilevel":
            raise ValueError(f"{cfg.genotype!r} is a trilevel genotype: train it with --model trilevel_x4 "
                             f"(a network of the trilevel family), not {cfg.model}")
        if family not in ("tpsr", "trilevel") or (family == "trilevel" and not trilevel):
            raise ValueError(f"genotype {cfg.genotype!r} does not apply to {cfg.model} ({family} family): a TPSR "
                             "cell goes with a tpsr model, a trilevel genotype ('A ...' / 'B ...') with trilevel_x4")
    model = create_model(cfg.model, **kwargs)
    if cfg.icnr:
        from ..models.blocks import apply_icnr

        if not apply_icnr(model):
            raise ValueError(f"icnr: {cfg.model} has no convolution feeding a PixelShuffle")
    return model


def qat_model(cfg: TrainConfig, state: dict | None, path: Path) -> nn.Module:
    """The :class:`~tinysr.export.qat.QATModel` of a ``qat:`` run: the ``init_from`` network (a checkpoint or a
    model with bundled weights, deployed), or on resume the checkpoint's network with its ranges. The
    network must be the config's (``model`` / ``genotype``), compared in deployed form."""
    from ..checkpoint import load_model, model_from_checkpoint
    from ..export.qat import QATModel
    from ..models.mobile import deploy

    config_net = deploy(build_model(cfg))
    if state is not None:
        check_same_architecture(state, config_net, path, cfg.model)
        qat = QATModel(model_from_checkpoint(state, str(path)), averaging=cfg.qat.averaging)
        qat.load_record(state["qat"], str(path))
        return qat
    net = deploy(load_model(cfg.init_from))
    want, have = model_record(config_net), model_record(net)
    if have["family"] != want["family"] or have["config"] != want["config"]:
        raise ValueError(f"qat: init_from {cfg.init_from} is not the config's network ({cfg.model}"
                         f"{' ' + repr(cfg.genotype) if cfg.genotype else ''}): set model / genotype to its")
    return QATModel(net, averaging=cfg.qat.averaging)


def init_from_checkpoint(model: nn.Module, path: str) -> list[str]:
    """Copy every tensor whose name and shape match (e.g. x2 -> x4); return the names copied."""
    src = model_from_checkpoint(read_checkpoint(path), path).state_dict()
    own = model.state_dict()
    copied = [k for k, v in src.items() if k in own and own[k].shape == v.shape]
    if not copied:
        raise ValueError(f"{path}: no tensor matches {type(model).__name__} by name and shape")
    own.update({k: src[k] for k in copied})
    model.load_state_dict(own)
    return copied


def check_same_architecture(state: dict, model: nn.Module, path, model_name: str) -> None:
    """Refuse to resume ``model`` from a checkpoint of another architecture (one-line ``ValueError``).

    Compares the model name, the family and every constructor field (genotype text, scale, width,
    ...), so two cells that differ only in their wiring are told apart before any weight is loaded.
    """
    theirs_name = state.get("train_config", {}).get("model")
    if theirs_name not in (None, model_name):
        raise ValueError(f"{path} belongs to a run of {theirs_name}, not {model_name}: "
                         "use another --out-dir or --no-resume")
    ours = model_record(model)
    theirs = {"family": state.get("family"), "config": state.get("config") or {}}
    diffs = [f"family {theirs['family']!r} vs {ours['family']!r}"] if theirs["family"] != ours["family"] else []
    for key in sorted(set(ours["config"]) | set(theirs["config"])):
        a, b = theirs["config"].get(key), ours["config"].get(key)
        if a != b:
            diffs.append(f"{key} {a!r} vs {b!r}")
    if diffs:
        raise ValueError(f"{path} was trained with another architecture ({'; '.join(diffs)}; checkpoint vs this run): "
                         "use another --out-dir or --no-resume")


def make_scheduler(opt, cfg: TrainConfig):
    if cfg.scheduler == "cosine":
        floor = cfg.lr_min / cfg.lr

        def f(step):
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    elif cfg.scheduler == "multistep":
        import bisect

        def f(step):
            return cfg.lr_gamma ** bisect.bisect_right(cfg.lr_milestones, step)
    else:
        def f(step):
            return cfg.lr_gamma ** (step // cfg.lr_step)
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def validate(model: nn.Module, dataset) -> float:
    """Mean validation Y-PSNR (the scoring loop of ``tinysr eval``); the model stays in train mode."""
    from ..evaluate import mean_psnr

    return mean_psnr(model, dataset)


@dataclass
class TrainResult:
    step: int
    best_psnr: float | None  # GAN stage: the validation PSNR of best.pt (chosen by LPIPS)
    last_psnr: float | None
    out_dir: Path
    best_lpips: float | None = None  # GAN stage: the validation LPIPS that chose best.pt
    lpips_net: str | None = None


def prepare_run(cfg: TrainConfig) -> Path:
    """The run's folder (created), torch's thread count and the seeds of torch and ``random``."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    return out


def open_log(path: Path, step: int, header: list[str]):
    """``(file, csv.writer)`` for a run's ``log.csv``: a new log at step 0 (or when absent), else the
    existing one with the rows logged after ``step`` (the checkpoint resumed from) dropped."""
    new_log = not path.is_file() or step == 0
    if not new_log:
        rows = list(csv.reader(open(path)))
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(kept)
    log_file = open(path, "w" if new_log else "a", newline="")
    log = csv.writer(log_file)
    if new_log:
        log.writerow(header)
    return log_file, log


def _collate(batch):
    lrs, hrs = zip(*batch)
    return torch.stack(lrs), torch.stack(hrs)


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Run (or resume) L1 training, or the GAN stage when ``cfg.gan`` is set
    (:func:`tinysr.train.gan.train_gan`). ``stop_after``: stop once this step is reached (for tests/interrupts)."""
    from tqdm.auto import tqdm

    cfg.validate()
    if not cfg.train_data:
        raise ValueError("no train_data folders given")
    if cfg.gan is not None:
        from .gan import train_gan

        return train_gan(cfg, resume=resume, progress=progress, stop_after=stop_after)
    out = prepare_run(cfg)
    last_ckpt = out / "last.pt"
    state = read_checkpoint(last_ckpt) if resume and last_ckpt.is_file() else None
    if state is not None and "gan_state" in state:
        raise ValueError(f"{last_ckpt} is from a GAN run, not an L1 run: use another --out-dir or --no-resume")
    if state is not None and bool(state.get("qat")) != (cfg.qat is not None):
        kind = "a quantization-aware" if state.get("qat") else "an fp32"
        raise ValueError(f"{last_ckpt} is from {kind} run, this config is not: use another --out-dir or --no-resume")
    model = build_model(cfg) if cfg.qat is None else qat_model(cfg, state, last_ckpt)
    scale = model.scale
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    sched = make_scheduler(opt, cfg)
    step, best = 0, None
    if state is not None:
        if cfg.qat is None:
            check_same_architecture(state, model, last_ckpt, cfg.model)
            model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best = state["meta"]["step"], state["meta"].get("best_psnr")
        torch.set_rng_state(state["torch_rng"])
        tqdm.write(f"resuming {out} from step {step}")
    elif cfg.qat is not None:
        tqdm.write(f"quantization-aware training of {cfg.init_from}: {len(model.points)} fake-quantized activations "
                   "(the int8 TFLite's), weights per output channel")
    elif cfg.init_from:
        copied = init_from_checkpoint(model, cfg.init_from)
        tqdm.write(f"initialised {len(copied)}/{len(model.state_dict())} tensors from {cfg.init_from}")
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    data = HRFolderDataset(cfg.train_data, scale, cfg.patch_size, augment=True, seed=cfg.seed)
    data.preload(progress=progress)
    val = benchmark_dataset(cfg.val_data, scale) if cfg.val_data else None
    end = min(cfg.steps, stop_after) if stop_after is not None else cfg.steps
    loader = DataLoader(data, batch_sampler=StepBatchSampler(len(data.names), cfg.batch_size, cfg.seed, step, end),
                        num_workers=cfg.workers, collate_fn=_collate, persistent_workers=False)
    log_path = out / "log.csv"
    log_file, log = open_log(log_path, step, ["step", "loss", "lr", "val_psnr", "seconds"])
    l1 = nn.L1Loss()
    model.train()
    last_psnr = None
    t0 = time.time()

    def save(name: str, psnr=None):
        meta = {"step": step, "best_psnr": best, "val_psnr": psnr, "train_config": cfg.to_dict()}
        extra = {} if cfg.qat is None else {"qat": model.record()}  # the network saved in its deployed form
        save_checkpoint(out / name, model if cfg.qat is None else model.net, meta=meta, train_config=cfg.to_dict(),
                        optimizer=opt.state_dict(), scheduler=sched.state_dict(), torch_rng=torch.get_rng_state(),
                        **extra)

    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.model}", disable=not progress, dynamic_ncols=True)
    running = None
    try:
        for lr_img, hr_img in loader:
            loss = l1(model(lr_img), hr_img)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if cfg.qat is not None and step == cfg.qat.freeze_after:
                model.freeze()
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            bar.update(1)
            val_psnr = None
            if val is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                val_psnr = last_psnr = validate(model, val)
                if best is None or val_psnr > best:
                    best = val_psnr
                    save("best.pt", val_psnr)
            if step % 50 == 0 or val_psnr is not None:
                log.writerow([step, f"{running:.6f}", f"{sched.get_last_lr()[0]:.3e}",
                              "" if val_psnr is None else f"{val_psnr:.4f}", f"{time.time() - t0:.1f}"])
                log_file.flush()
            bar.set_postfix(loss=f"{running:.4f}", psnr="-" if last_psnr is None else f"{last_psnr:.2f}",
                            best="-" if best is None else f"{best:.2f}")
            if step % cfg.ckpt_every == 0 or step == end:
                save("last.pt", val_psnr)
    finally:
        bar.close()
        log_file.close()
    if step == cfg.steps:
        try:
            plot_curves(log_path, out / "curves.png")
        except Exception as e:  # a plot must never lose a finished run
            warnings.warn(f"could not draw training curves: {e}")
    return TrainResult(step, best, last_psnr, out)


def plot_curves(log_path: Path, png: Path):
    from ..plotting import pyplot, save_png

    plt = pyplot()
    rows = list(csv.DictReader(open(log_path)))
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(steps, [float(r["loss"]) for r in rows])
    ax[0].set(xlabel="step", ylabel="L1 loss (EMA)", yscale="log", title="training loss")
    v = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r["val_psnr"]]
    if v:
        ax[1].plot(*zip(*v), marker="o")
    ax[1].set(xlabel="step", ylabel="Y-PSNR (dB)", title="validation PSNR")
    fig.tight_layout()
    save_png(fig, png)
