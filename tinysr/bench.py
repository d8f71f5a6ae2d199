"""``tinysr bench``: one model, several runtimes and thread counts, measured in one run.

Artifacts are made with the export pipeline (verified as usual) in a temporary folder; each
configuration is warmed up, then all are timed round-robin (``rounds`` passes over every
configuration) so that the machine's noise hits them alike. Reports medians, ratios to a
baseline and the fraction of this CPU's fp32 peak, measured as the best of a few large SGEMMs
(``torch.mm``) at the same thread count.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class Config:
    name: str
    threads: int
    make: object  # () -> callable(x)
    flops: float
    times_ms: list = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)


def sgemm_peak_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b)) for _ in range(reps))
        return 2 * n ** 3 / best / 1e9
    finally:
        torch.set_num_threads(old)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build_configs(spec: str, input_size, threads_list, runtimes, workdir: Path, calib: str | None,
                  progress: bool) -> list[Config]:
    from .checkpoint import load_model
    from .complexity import measure
    from .export.pipeline import ExportOptions, export_model
    from .runtimes import LiteRTRunner, OnnxRunner

    model = load_model(spec).eval()
    h, w = input_size
    flops = 2 * measure(model, input_size).mult_adds
    x_nchw = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    configs: list[Config] = []
    arts = {}
    plan = {
        "litert-plain-fp32": ("tflite", dict(precision="fp32", mode="plain", layout="nchw")),
        "litert-mobile-fp32": ("tflite", dict(precision="fp32", mode="mobile", layout="nhwc")),
        "litert-mobile-int8": ("tflite", dict(precision="int8", mode="mobile", layout="nhwc", calib=calib)),
        "onnxruntime-fp32": ("onnx", dict(precision="fp32")),
        "onnxruntime-int8": ("onnx", dict(precision="int8", calib=calib)),
    }
    for name, (target, kw) in plan.items():
        if name in runtimes:
            out = workdir / f"{name}.{target}"
            export_model(spec, out, ExportOptions(target=target, input_size=input_size, max_loss_db=99.0, **kw),
                         progress=progress)
            arts[name] = out
    for t in threads_list:
        if "torch" in runtimes:
            def make_torch(t=t):
                x = torch.from_numpy(x_nchw)

                def run():
                    torch.set_num_threads(t)
                    with torch.no_grad():
                        model(x)
                return run
            configs.append(Config("pytorch-eager-fp32", t, make_torch, flops))
        for name, path in arts.items():
            def make_art(path=path, t=t, name=name):
                r = (LiteRTRunner if name.startswith("litert") else OnnxRunner)(path, threads=t)
                return lambda: r(x_nchw)
            configs.append(Config(name, t, make_art, flops))
    return configs


def run_bench(spec: str = "tpsr_x4", input_size=(180, 320), threads_list=(1, 2), rounds: int = 10, warmup: int = 2,
              runtimes=("torch", "litert-plain-fp32", "litert-mobile-fp32", "litert-mobile-int8",
                        "onnxruntime-fp32", "onnxruntime-int8"), calib: str | None = None,
              progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="tinysr-bench-") as d:
        configs = build_configs(spec, input_size, threads_list, runtimes, Path(d), calib, progress)
        runners = []
        for c in configs:
            fn = c.make()
            for _ in range(warmup):
                fn()
            runners.append(fn)
        for _ in tqdm(range(rounds), desc="bench rounds", disable=not progress, leave=False):
            for c, fn in zip(configs, runners):
                c.times_ms.append(_timed(fn) * 1e3)
    peaks = {t: sgemm_peak_gflops(t) for t in threads_list}
    rows = []
    for c in configs:
        gflops = c.flops / (c.median / 1e3) / 1e9
        rows.append({"runtime": c.name, "threads": c.threads, "median_ms": c.median,
                     "p90_ms": float(np.percentile(c.times_ms, 90)), "runs": len(c.times_ms),
                     "gflops": gflops, "fraction_of_sgemm_peak": gflops / peaks[c.threads]})
    return {"model": spec, "input_size": list(input_size), "gflop_per_frame": configs[0].flops / 1e9,
            "sgemm_peak_gflops": peaks, "rows": rows}


def ratio(result: dict, a: str, b: str, threads: int) -> float | None:
    """median(a) / median(b) at ``threads`` (> 1: a is slower)."""
    m = {(r["runtime"], r["threads"]): r["median_ms"] for r in result["rows"]}
    if (a, threads) in m and (b, threads) in m:
        return m[(a, threads)] / m[(b, threads)]
    return None


def format_bench(result: dict) -> str:
    h, w = result["input_size"]
    lines = [f"{result['model']} at {h}x{w}: {result['gflop_per_frame']:.2f} GFLOP per frame; fp32 peak "
             "(best torch SGEMM) " + ", ".join(f"{t} thr {p:.0f} GFLOP/s" for t, p in result["sgemm_peak_gflops"].items()),
             f"{'runtime':<22}{'thr':>4}{'median ms':>11}{'p90 ms':>9}{'GFLOP/s':>9}{'% fp32 peak':>12}"]
    for r in sorted(result["rows"], key=lambda r: (r["threads"], r["median_ms"])):
        peak = "   int8" if "int8" in r["runtime"] else f"{100 * r['fraction_of_sgemm_peak']:>7.1f}%"
        lines.append(f"{r['runtime']:<22}{r['threads']:>4}{r['median_ms']:>11.1f}{r['p90_ms']:>9.1f}"
                     f"{r['gflops']:>9.1f}{peak}")
    for t in sorted({r["threads"] for r in result["rows"]}):
        pairs = [("litert-mobile-fp32", "litert-plain-fp32"), ("litert-mobile-int8", "litert-mobile-fp32"),
                 ("onnxruntime-fp32", "litert-mobile-fp32"), ("pytorch-eager-fp32", "litert-mobile-fp32")]
        parts = [f"{a} / {b} = {ratio(result, a, b, t):.2f}" for a, b in pairs if ratio(result, a, b, t)]
        if parts:
            lines.append(f"ratios at {t} thread(s): " + "; ".join(parts))
    return "\n".join(lines)
