"""The differentiable trilevel search (TrilevelNAS): sparsestmax (:mod:`~tinysr.search.trilevel.sparsestmax`),
the three-level supernet with its expected cost (:mod:`~tinysr.search.trilevel.supernet`) and the
run: config, training, resume, derivation, plots (:mod:`~tinysr.search.trilevel.search`, whose
public names are re-exported here)."""
from tinysr.search.trilevel.search import (RUN_FORMAT, TrilevelConfig, TrilevelSearch, arch_weight_series, format_run,
                                           is_trilevel_run, plot_arch_weights, plot_derived, run_trilevel)

__all__ = ["RUN_FORMAT", "TrilevelConfig", "TrilevelSearch", "arch_weight_series", "format_run", "is_trilevel_run",
           "plot_arch_weights", "plot_derived", "run_trilevel"]
