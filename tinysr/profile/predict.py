"""Latency of TPSR-family networks: predicted from a latency table, or measured for real.

:func:`predict_latency` adds up a table's entries (see :mod:`tinysr.profile.lut` and
``profiles/README.md``)::

    predicted = overhead + skeleton (head, cell PReLU, x2 blocks, inverse mean shift)
                + sum over nodes of entry[op + PReLU] + (leaves - 1) * entry[ADD]

It is pure Python over a precomputed ``{op: ms}`` dict (hundreds of thousands of predictions a
second), so a search can call it in its inner loop. :func:`measure_latency` converts and times a
network for real (host Interpreter, or ``benchmark_model`` over adb) for measured-in-the-loop
search and for :func:`validate`, which compares both on random genotypes of the search space.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import random
import tempfile
from pathlib import Path

import numpy as np

from tinysr.genotype import Genotype
from tinysr.profile.lut import SPACES, LatencyTable, Timer, _convert_network, convert_cached

VALIDATION_FORMAT = "tinysr.lut-validation/1"
_TABLES: dict = {}


def load_table(profile) -> LatencyTable:
    """A :class:`LatencyTable` from a table, a JSON-ready dict or a path (paths cached by mtime)."""
    if isinstance(profile, LatencyTable):
        return profile
    if isinstance(profile, dict):
        return LatencyTable(profile)
    key = os.fspath(profile)
    try:
        stamp = os.stat(key).st_mtime_ns
    except FileNotFoundError:
        raise FileNotFoundError(f"latency profile not found: {key}") from None
    path = Path(key)
    hit = _TABLES.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    table = LatencyTable.load(path)
    _TABLES[key] = (stamp, table)
    return table


@functools.lru_cache(maxsize=8192)
def _parse(text: str) -> Genotype:
    return Genotype.parse(text)


def predict_latency(genotype, profile, input_size=None, scale=None) -> float:
    """Predicted latency (ms) of the network of ``genotype`` (a :class:`Genotype` or its text).

    ``profile``: a :class:`LatencyTable`, its dict or a path. ``input_size`` / ``scale``: checked
    against the table's (a table is valid only for the size and scale it was measured at).
    """
    table = load_table(profile)
    if input_size is not None or scale is not None:
        table.check_size(input_size, scale)
    if isinstance(genotype, str):
        genotype = _parse(genotype)
    return table.predict(genotype)


# ------------------------------------------------------------------------------ measuring
def _as_artifact(model_or_genotype, input_size, scale: int, n_feats: int, runtime: str, workdir: Path):
    """``("tflite", bytes)`` or ``("onnx", path)`` for whatever the caller passed."""
    import torch
    from torch import nn

    from tinysr.models.tpsr import CellSR

    obj = model_or_genotype
    if isinstance(obj, (bytes, bytearray)):
        return "tflite", bytes(obj)
    if isinstance(obj, (str, Path)) and Path(obj).suffix.lower() in (".tflite", ".onnx") and Path(obj).is_file():
        path = Path(obj)
        return ("tflite", path.read_bytes()) if path.suffix.lower() == ".tflite" else ("onnx", path)
    if isinstance(obj, str):
        obj = Genotype.parse(obj)
    if isinstance(obj, Genotype):
        torch.manual_seed(0)
        obj = CellSR(obj, scale, n_feats)
    if not isinstance(obj, nn.Module):
        raise TypeError(f"cannot measure a {type(obj).__name__}: pass a Genotype, its text, a module, "
                        ".tflite bytes or a .tflite / .onnx path")
    if runtime == "litert":
        return "tflite", _convert_network(obj, input_size)
    from tinysr.export.onnx_export import export_onnx
    from tinysr.profile.lut import quiet_fds

    out = workdir / "model.onnx"
    with quiet_fds():
        export_onnx(obj.eval(), tuple(input_size), out)
    return "onnx", out


def measure_latency(model_or_genotype, device: str = "host", runtime: str = "litert", input_size=(180, 320),
                    threads: int = 1, runs: int = 20, warmup: int = 3, scale: int = 4, delegate: str | None = None,
                    n_feats: int = 16, benchmark_binary=None) -> float:
    """Measured latency (median ms of ``runs`` runs after ``warmup``) of a network.

    ``model_or_genotype``: a :class:`Genotype` (or its text; built as a TPSR network with random
    weights at ``scale``), an ``nn.Module`` (N x 3 x H x W input), .tflite bytes or a .tflite /
    .onnx path. ``device``: ``"host"`` (LiteRT Interpreter or ONNX Runtime in this process) or
    ``"adb[:SERIAL]"`` (converted, then ``benchmark_model`` via
    :func:`tinysr.profile.adb.profile_on_device`; LiteRT only).
    """
    from tinysr.profile.lut import parse_device

    kind, _ = parse_device(device)
    if runtime not in ("litert", "onnxruntime"):
        raise ValueError(f"runtime must be litert or onnxruntime, not {runtime!r}")
    if runtime == "onnxruntime" and kind != "host":
        raise ValueError("ONNX Runtime latency is measured on the host only")
    with tempfile.TemporaryDirectory(prefix="tinysr-measure-") as d:
        what, art = _as_artifact(model_or_genotype, input_size, scale, n_feats, runtime, Path(d))
        if what == "tflite":
            if runtime != "litert":
                raise ValueError("a .tflite model runs in LiteRT (runtime='litert')")
            return Timer(device, "litert", threads, delegate, warmup, runs, benchmark_binary)(art)[0]
        if runtime != "onnxruntime":
            raise ValueError("an .onnx model runs in ONNX Runtime (runtime='onnxruntime')")
        from tinysr.profile.host import time_onnxruntime

        return time_onnxruntime(art, threads, warmup, runs, input_size).median_ms


# ------------------------------------------------------------------------------ validation
def sample_genotypes(samples: int, seed: int = 0, space: str = "tpsr") -> list:
    """``samples`` distinct random genotypes of the search space (``Genotype.random``)."""
    spec = SPACES[space]
    rng = random.Random(seed)
    out, seen = [], set()
    tries = 0
    while len(out) < samples:
        g = Genotype.random(spec["num_nodes"], rng, spec["ops"])
        tries += 1
        if str(g) in seen and tries < 100 * samples:
            continue
        seen.add(str(g))
        out.append(g)
    return out


def error_stats(predicted, measured) -> dict:
    """Relative error of predictions, in percent of the measured value."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = (p - m) / m * 100.0
    a = np.abs(err)

    def ranks(v):
        return np.argsort(np.argsort(v)).astype(float)

    rho = float(np.corrcoef(ranks(p), ranks(m))[0, 1]) if len(p) > 2 else float("nan")
    return {"n": int(len(p)), "median_abs_pct": float(np.median(a)), "p90_abs_pct": float(np.percentile(a, 90)),
            "max_abs_pct": float(a.max()), "mean_signed_pct": float(err.mean()),
            "mean_abs_pct": float(a.mean()), "spearman": rho}


def validate(profile, samples: int = 30, seed: int = 0, runs: int = 20, warmup: int = 3, cache_dir=None,
             benchmark_binary=None, progress=None, rounds: int = 4) -> dict:
    """Predicted vs measured latency of ``samples`` random genotypes, on the table's device / runtime /
    threads / size. All networks are converted first, then timed in ``rounds`` interleaved rounds
    (:meth:`tinysr.profile.lut.Timer.measure`): the median of ``runs`` runs of each.

    ``cache_dir``: keep (and reuse) the converted networks there.
    """
    from tinysr.models.tpsr import CellSR

    table = load_table(profile)
    rt = table.data.get("runtime", {})
    timer = Timer(table.device, rt.get("name", "litert"), table.threads, rt.get("delegate"), warmup, runs,
                  benchmark_binary)
    say = progress or (lambda msg: None)
    genos = sample_genotypes(samples, seed, table.space)
    size = (table.h, table.w)
    flats = []
    for i, g in enumerate(genos):
        digest = hashlib.sha1(str(g).encode()).hexdigest()[:12]

        def make(g=g):
            import torch

            torch.manual_seed(0)
            return _convert_network(CellSR(g, table.scale, table.n), size)

        flats.append(convert_cached(make, cache_dir, f"val_{digest}_x{table.scale}_{table.h}x{table.w}.tflite"))
        say(f"converted {i + 1}/{len(genos)}")
    rounds = max(min(int(rounds), int(runs)), 1)
    say(f"timing {len(flats)} networks in {rounds} interleaved round(s)")
    results = timer.measure(flats, rounds)
    rows = []
    for i, (g, (measured, p90, n_runs)) in enumerate(zip(genos, results)):
        predicted = table.predict(g)
        rows.append({"genotype": str(g), "predicted_ms": predicted, "measured_ms": measured, "measured_p90_ms": p90,
                     "runs": n_runs, "error_pct": (predicted - measured) / measured * 100.0})
        say(f"{i + 1:>3}/{len(genos)}  predicted {predicted:8.2f} ms  measured {measured:8.2f} ms  "
            f"{rows[-1]['error_pct']:+6.1f}%  {g}")
    dev, rtd = timer.describe()
    return {"format": VALIDATION_FORMAT, "profile": table.source, "device": dev, "runtime": rtd,
            "input_size": [table.h, table.w], "scale": table.scale, "samples": len(rows), "seed": int(seed),
            "warmup": int(warmup), "runs": int(results[0][2]) if results else 0, "rounds": rounds,
            "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "stats": error_stats([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]),
            "rows": rows}


def format_validation(result: dict) -> str:
    s = result["stats"]
    rt = result.get("runtime", {})
    h, w = result["input_size"]
    return (f"{s['n']} random genotypes, {rt.get('name')} ({rt.get('delegate')}), {rt.get('threads')} thread(s), "
            f"{h}x{w} x{result['scale']}\n"
            f"abs. error: median {s['median_abs_pct']:.1f}%, p90 {s['p90_abs_pct']:.1f}%, max {s['max_abs_pct']:.1f}%; "
            f"mean signed {s['mean_signed_pct']:+.1f}%; Spearman rank correlation {s['spearman']:.3f}")


def plot_validation(result: dict, png_path) -> Path:
    """Scatter of predicted vs measured latency with the y = x line (and +-10 % band); atomic PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from tinysr.profile.record import save_figure

    m = [r["measured_ms"] for r in result["rows"]]
    p = [r["predicted_ms"] for r in result["rows"]]
    lo, hi = min(m + p) * 0.9, max(m + p) * 1.1
    fig = Figure(figsize=(5.5, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15, label="+-10 %")
    ax.scatter(m, p, s=18, color="#c44e52", zorder=3, label="random genotypes")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms, median)")
    ax.set_ylabel("predicted latency (ms, table sum)")
    s = result["stats"]
    rt = result.get("runtime", {})
    h, w = result["input_size"]
    ax.set_title(f"{result.get('device', {}).get('cpu') or result.get('device', {}).get('model') or ''} "
                 f"{rt.get('name')} {rt.get('threads')}t {h}x{w} x{result['scale']}\n"
                 f"median |err| {s['median_abs_pct']:.1f}%, p90 {s['p90_abs_pct']:.1f}%, n={s['n']}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, png_path)

