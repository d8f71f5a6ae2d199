"""``tinysr profile``: per-operator latency of exported models.

:mod:`tinysr.profile.record` holds the data model every backend returns (``Profile``,
``OpRecord``), :mod:`tinysr.profile.benchmark_output` reads TFLite ``benchmark_model`` output
(text log or ``--op_profiling_output_mode=proto`` file) and :mod:`tinysr.profile.adb` runs
``benchmark_model`` on Android devices over adb, :mod:`tinysr.profile.host` profiles .tflite /
.onnx models on this machine (ONNX Runtime's profiler; LiteRT single-op models),
:mod:`tinysr.profile.lut` measures latency tables of the search space and
:mod:`tinysr.profile.predict` predicts (and measures) the latency of genotypes.
"""
from tinysr.profile.record import OpRecord, Profile, plot_ops

__all__ = ["OpRecord", "Profile", "plot_ops"]
