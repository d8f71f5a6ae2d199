"""The search strategies by name: :data:`STRATEGIES` and :func:`make_strategy`.

Above both strategy modules (:mod:`tinysr.search.core.strategies`: the interface, ``random``,
``reinforce``; :mod:`tinysr.search.core.optuna_strategy`: ``nsga2``, ``tpe``, which subclass it), so
imports run one way. Optuna is imported only when ``nsga2`` or ``tpe`` is built.
"""
from __future__ import annotations

from tinysr.search.core.optuna_strategy import NSGA2Strategy, TPEStrategy
from tinysr.search.core.space import TPSR_SPACE, GeneratorSpace
from tinysr.search.core.strategies import EvolutionStrategy, RandomStrategy, ReinforceStrategy, Strategy

STRATEGIES = {cls.name: cls for cls in (RandomStrategy, ReinforceStrategy, EvolutionStrategy, NSGA2Strategy, TPEStrategy)}


def make_strategy(name: str, space: GeneratorSpace = TPSR_SPACE, seed: int | None = 0, **options) -> Strategy:
    """A strategy by name (:data:`STRATEGIES`); ``options`` go to its constructor."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown search strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
    return cls(space, seed, **options)
