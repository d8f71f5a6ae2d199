"""tinysr checkpoints and the one place that turns a model spec into a module.

A checkpoint is a ``torch.save`` dict: ``format``, ``family``, ``config`` (the
constructor arguments; for TPSR-family networks the genotype text), ``state_dict``
and free-form ``meta`` (training step, metrics, recipe). Training checkpoints add
the optimizer, scheduler and RNG states.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from .foreign import WeightImportError, import_state_dict, load_strict
from .imageio import atomic_write
from .models import build_family, get_entry, list_models

FORMAT = "tinysr-checkpoint-v1"


class ModelLoadError(ValueError):
    pass


def build(family: str, config: dict) -> nn.Module:
    try:
        return build_family(family, config)
    except ValueError as e:
        raise ModelLoadError(str(e)) from None


def model_record(model: nn.Module) -> dict:
    return {"family": model.family, "config": model.config()}


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict | None = None, **extra) -> None:
    payload = {"format": FORMAT, **model_record(model), "state_dict": model.state_dict(), "meta": meta or {}, **extra}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None


def model_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> nn.Module:
    if ckpt.get("format") == FORMAT:
        model = build(ckpt["family"], ckpt["config"])
        load_strict(model, ckpt["state_dict"], source)
        return model
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelLoadError(f"{source}: neither a tinysr checkpoint nor a state dict")
    try:
        return import_state_dict(sd).model
    except WeightImportError as e:
        raise ModelLoadError(f"{source}: {e}") from None


def bundled_weights_path(filename: str) -> Path:
    return Path(str(resources.files("tinysr") / "weights" / filename))


def qat_record(spec: str) -> dict | None:
    """The quantization-aware training record (learnt int8 ranges, :mod:`tinysr.export.qat`) of a checkpoint
    path or a model's bundled weights; None when it has none."""
    path = Path(spec)
    if not (path.suffix in (".pt", ".pth", ".ckpt") or path.is_file()):
        if spec not in list_models(kind=None) or not get_entry(spec).weights:
            return None
        path = bundled_weights_path(get_entry(spec).weights)
        if not path.is_file():
            return None
    ckpt = read_checkpoint(path)
    return ckpt.get("qat") if isinstance(ckpt, dict) else None


def load_model(spec: str, allow_random: bool = False, kind: str | None = "generator") -> nn.Module:
    """A registry name (with its bundled weights) or a checkpoint path -> model in eval mode.

    ``kind`` (default ``"generator"``: what upscale / eval / export / bench take): a network of
    another kind (a discriminator) is a one-line :class:`ModelLoadError`; ``None`` takes any.
    """
    from .models.registry import kind_of

    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".ckpt") or path.is_file():
        model = model_from_checkpoint(read_checkpoint(path), str(path))
    elif spec in list_models(kind=kind):
        entry = get_entry(spec)
        weights = bundled_weights_path(entry.weights) if entry.weights else None
        if weights is not None and weights.is_file():
            model = model_from_checkpoint(read_checkpoint(weights), str(weights))
        elif allow_random:
            from .models import create_model

            model = create_model(spec)
        else:
            raise ModelLoadError(f"model {spec!r} has no bundled weights; pass a checkpoint path "
                                 f"(models with weights: {', '.join(n for n in list_models() if has_bundled_weights(n))})")
    elif spec in list_models(kind=None):
        raise ModelLoadError(f"{spec!r} is a {get_entry(spec).kind}, not a {kind}")
    else:
        raise ModelLoadError(f"{spec!r} is neither a checkpoint file nor a model name ({', '.join(list_models())})")
    if kind is not None and kind_of(model) != kind:
        raise ModelLoadError(f"{spec}: a {kind_of(model)} ({model.family}), not a {kind}")
    return model.eval()


def has_bundled_weights(name: str) -> bool:
    entry = get_entry(name)
    return bool(entry.weights) and bundled_weights_path(entry.weights).is_file()


