"""One registry of generator architectures (timm-style ``@register_model``)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    family: str
    scale: int
    description: str
    weights: str | None = None  # file name of bundled weights in tinysr/weights/, if any
    kwargs: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, family: str, scale: int, description: str, weights: str | None = None, **kwargs):
    """Register ``factory(**kwargs)`` under ``name``; used as a decorator on the factory."""

    def deco(factory):
        if name in _REGISTRY:
            warnings.warn(f"model {name!r} registered twice; the later one wins")
        _REGISTRY[name] = ModelEntry(name, factory, family, scale, description, weights, dict(kwargs))
        return factory

    return deco


def list_models(pattern: str = "*") -> list[str]:
    import fnmatch

    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered architecture (random weights; see :func:`tinysr.checkpoint.load_model`)."""
    entry = get_entry(name)
    return entry.factory(**{**entry.kwargs, **overrides})
