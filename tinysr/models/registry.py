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
_FAMILIES: dict[str, type] = {}


def register_family(cls: type) -> type:
    """Register a generator class under its ``family`` attribute (decorator).

    A family is what a checkpoint names: ``family`` plus the class's ``config()`` rebuild the
    network (:func:`build_family`); registered models are instances of a family's class.
    """
    family = getattr(cls, "family", None)
    if not family:
        raise TypeError(f"{cls.__name__} has no 'family' attribute to register under")
    if _FAMILIES.get(family, cls) is not cls:
        warnings.warn(f"model family {family!r} registered twice; the later one wins")
    _FAMILIES[family] = cls
    return cls


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def build_family(family: str, config: dict) -> nn.Module:
    """The network a checkpoint's ``family`` and ``config`` describe (random weights)."""
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(list_families())}")
    return _FAMILIES[family](**config)


def register_model(name: str, *, family: str, scale: int, description: str, weights: str | None = None, **kwargs):
    """Register ``factory(**kwargs)`` under ``name``; used as a decorator on the factory."""

    def deco(factory):
        if family not in _FAMILIES:
            raise ValueError(f"model {name!r}: family {family!r} is not registered (use @register_family on its class)")
        if name in _REGISTRY:
            warnings.warn(f"model {name!r} registered twice; the later one wins")
        _REGISTRY[name] = ModelEntry(name, factory, family, scale, description, weights, dict(kwargs))
        return factory

    return deco


def list_models(pattern: str = "*") -> list[str]:
    import fnmatch

    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def name_hint(name: str) -> str:
    """``did you mean a, b or c?`` with the registered names nearest to ``name`` (difflib), else all names."""
    import difflib

    close = difflib.get_close_matches(_normalise(name), list(_REGISTRY), n=3, cutoff=0.5)
    if not close:
        return f"registered: {', '.join(list_models())}"
    return "did you mean " + " or ".join(filter(None, [", ".join(close[:-1]), close[-1]])) + "?"


def get_entry(name: str) -> ModelEntry:
    """The entry of ``name``, also as a user may spell it (``tpsr-x4``, ``TPSR_x4``)."""
    entry = _REGISTRY.get(name) or _REGISTRY.get(_normalise(name))
    if entry is None:
        raise ValueError(f"unknown model {name!r}; {name_hint(name)}")
    return entry


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered architecture (random weights; see :func:`tinysr.checkpoint.load_model`)."""
    entry = get_entry(name)
    return entry.factory(**{**entry.kwargs, **overrides})
