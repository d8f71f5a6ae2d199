"""The shared core of the generator and discriminator searches: the search spaces as decisions
(:mod:`~tinysr.search.core.space`), the strategies (:mod:`~tinysr.search.core.strategies`,
:mod:`~tinysr.search.core.optuna_strategy`, by name in :mod:`~tinysr.search.core.registry`), the run
store (one Optuna study per run: :mod:`~tinysr.search.core.run_store`) and what reads it
(:mod:`~tinysr.search.core.report`), where evaluations run (:mod:`~tinysr.search.core.backends`)
and the config fields every run shares (:mod:`~tinysr.search.core.config`). Nothing here knows a
search problem; Optuna and Ray are imported only by the modules (or functions) that use them."""
