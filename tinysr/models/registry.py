"""One registry of architectures (timm-style ``@register_model``): generators and discriminators.

Every family has a *kind*, its class's ``kind`` attribute (``"generator"`` when absent; see
:data:`KINDS`), and every registered name inherits its family's kind. Checkpoints may hold any
kind (:func:`build_family`); :func:`list_models` lists generators unless asked for another kind,
so the commands that upscale, train or measure LR->HR networks never see a discriminator.
"""
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
    scale: int | None  # None for discriminators
    description: str
    weights: str | None = None  # file name of bundled weights in tinysr/weights/, if any
    kwargs: dict = field(default_factory=dict)
    kind: str = "generator"


KINDS = ("generator", "discriminator")


_REGISTRY: dict[str, ModelEntry] = {}
_FAMILIES: dict[str, type] = {}


def kind_of(model_or_class) -> str:
    """``"generator"`` or ``"discriminator"``: the ``kind`` of a network (or its class)."""
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    return getattr(cls, "kind", "generator")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")


def register_family(cls: type) -> type:
    """Register a network class under its ``family`` attribute (decorator).

    A family is what a checkpoint names: ``family`` plus the class's ``config()`` rebuild the
    network (:func:`build_family`); registered models are instances of a family's class.
    """
    family = getattr(cls, "family", None)
    if not family:
        raise TypeError(f"{cls.__name__} has no 'family' attribute to register under")
    _check_kind(kind_of(cls))
    if _FAMILIES.get(family, cls) is not cls:
        warnings.warn(f"model family {family!r} registered twice; the later one wins")
    _FAMILIES[family] = cls
    return cls


def list_families(kind: str | None = None) -> list[str]:
    """Registered families, of every kind (``kind=None``) or of one."""
    if kind is not None:
        _check_kind(kind)
    return sorted(f for f, cls in _FAMILIES.items() if kind is None or kind_of(cls) == kind)


def build_family(family: str, config: dict) -> nn.Module:
    """The network a checkpoint's ``family`` and ``config`` describe (random weights)."""
    if family not in _FAMILIES:
        others = "; ".join(f"{', '.join(list_families(k))} ({k}s)" for k in KINDS[1:] if list_families(k))
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(list_families(KINDS[0]))}"
                         + (f"; {others}" if others else ""))
    return _FAMILIES[family](**config)


def register_model(name: str, *, family: str, description: str, scale: int | None = None, weights: str | None = None,
                   **kwargs):
    """Register ``factory(**kwargs)`` under ``name``; used as a decorator on the factory.

    The entry takes its family's kind; a generator needs its ``scale``, a discriminator has none.
    """

    def deco(factory):
        if family not in _FAMILIES:
            raise ValueError(f"model {name!r}: family {family!r} is not registered (use @register_family on its class)")
        kind = kind_of(_FAMILIES[family])
        if (scale is None) != (kind != "generator"):
            raise ValueError(f"model {name!r}: a {kind} " + ("needs a scale" if scale is None else "has no scale"))
        if name in _REGISTRY:
            warnings.warn(f"model {name!r} registered twice; the later one wins")
        _REGISTRY[name] = ModelEntry(name, factory, family, scale, description, weights, dict(kwargs), kind)
        return factory

    return deco


def list_models(pattern: str = "*", kind: str | None = "generator") -> list[str]:
    """Registered names matching ``pattern``: generators by default, ``kind=None`` for every kind."""
    import fnmatch

    if kind is not None:
        _check_kind(kind)
    return sorted(n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (kind is None or e.kind == kind))


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def name_hint(name: str) -> str:
    """``did you mean a, b or c?`` with the registered names nearest to ``name`` (difflib), else all names."""
    import difflib

    close = difflib.get_close_matches(_normalise(name), list(_REGISTRY), n=3, cutoff=0.5)
    if not close:
        return f"registered: {', '.join(list_models(kind=None))}"
    return "did you mean " + " or ".join(filter(None, [", ".join(close[:-1]), close[-1]])) + "?"


def get_entry(name: str, kind: str | None = None) -> ModelEntry:
    """The entry of ``name``, also as a user may spell it (``tpsr-x4``, ``TPSR_x4``).

    With ``kind``, a registered name of another kind is a one-line ``ValueError``.
    """
    entry = _REGISTRY.get(name) or _REGISTRY.get(_normalise(name))
    if entry is None:
        raise ValueError(f"unknown model {name!r}; {name_hint(name)}")
    if kind is not None:
        _check_kind(kind)
        if entry.kind != kind:
            raise ValueError(f"{entry.name!r} is a {entry.kind}, not a {kind} ({', '.join(list_models(kind=kind))})")
    return entry


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered architecture (random weights; see :func:`tinysr.checkpoint.load_model`)."""
    entry = get_entry(name)
    return entry.factory(**{**entry.kwargs, **overrides})
