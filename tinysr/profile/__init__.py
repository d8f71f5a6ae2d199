"""``tinysr profile``: per-operator latency of exported models.

:mod:`tinysr.profile.record` holds the data model every backend returns (``Profile``,
``OpRecord``), :mod:`tinysr.profile.benchmark_output` reads TFLite ``benchmark_model`` output
(text log or ``--op_profiling_output_mode=proto`` file) and :mod:`tinysr.profile.adb` runs
``benchmark_model`` on Android devices over adb.
"""
from tinysr.profile.record import OpRecord, Profile, plot_ops

__all__ = ["OpRecord", "Profile", "plot_ops"]
