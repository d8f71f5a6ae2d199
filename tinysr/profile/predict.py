"""Latency of TPSR-family networks: predicted from a latency table, or measured for real.

:func:`predict_latency` adds up a table's entries (see :mod:`tinysr.profile.lut` and
``profiles/README.md``)::

    predicted = overhead + skeleton (head, cell PReLU, x2 blocks, inverse mean shift)
                + op_scale * (sum over nodes of entry[op + PReLU] + (leaves - 1) * entry[ADD])
                + network_ms

(``op_scale`` = 1 and ``network_ms`` = 0 until the table is calibrated; a table with relative entries
adds up relative costs and multiplies by its reference network's time, the recorded one or one
measured now: :func:`rescale_table`). It is pure Python over a
precomputed ``{op: ms}`` dict (hundreds of thousands of predictions a second), so a search can
call it in its inner loop. :func:`measure_latency` converts and times a network for real (host
Interpreter, or ``benchmark_model`` over adb) for measured-in-the-loop search, for
:func:`calibrate`, which fits the two calibration terms to a few measured networks, and for
:func:`validate`, which compares prediction and measurement on random genotypes of the search
space (never the calibration networks), timed against the table's reference network in the same
rounds so that the comparison of relative costs is free of the machine's drift.
"""
from __future__ import annotations

import functools
import os
import random
import tempfile
from pathlib import Path

from tinysr.genotype import Genotype, NetworkGenotype, parse_genotype
from tinysr.profile.lut import (FORMAT, OVERHEAD_REFERENCE, SPACES, LatencyTable, Timer, calibration_genotypes, open_table,
                                random_genotype,
                                calibration_lines, calibration_record, convert_genotype, convert_network, error_stats,
                                now_utc)

VALIDATION_FORMAT = "tinysr.lut-validation/1"
_TABLES: dict = {}


def load_table(profile) -> LatencyTable:
    """A :class:`LatencyTable` from a table, a JSON-ready dict or a path (paths cached by mtime)."""
    if isinstance(profile, LatencyTable):
        return profile
    if isinstance(profile, dict):
        return open_table(profile)
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


def rescale_table(profile, runs: int = 20, warmup: int = 3, rounds: int = 2, cache_dir=None,
                  benchmark_binary=None) -> LatencyTable:
    """Load a table with relative entries (cached, as :func:`load_table`) and re-measure its reference
    network now (:meth:`LatencyTable.rescale`): every later prediction from it, including
    ``predict_latency(genotype, <the same path>)``, follows the machine's current speed. A search calls
    it once at its start. ``ValueError`` for a table without relative entries."""
    table = load_table(profile)
    table.rescale(runs, warmup, rounds, cache_dir, benchmark_binary)
    return table


@functools.lru_cache(maxsize=8192)
def _parse(text: str) -> Genotype | NetworkGenotype:
    return parse_genotype(text)


def predict_latency(genotype, profile, input_size=None, scale=None, n_feats=None) -> float:
    """Predicted latency (ms) of the network of ``genotype`` (a :class:`Genotype`, a :class:`NetworkGenotype`
    with its own skeleton, or either's text; a network needs a table holding its width and skeleton).

    ``profile``: a :class:`LatencyTable`, its dict or a path. ``input_size`` / ``scale`` /
    ``n_feats``: the network's, checked against the table's (a table is valid only for the size,
    scale and cell width it was measured at); ``ValueError`` on a mismatch.
    """
    table = load_table(profile)
    if input_size is not None or scale is not None or n_feats is not None:
        table.check(input_size, scale, n_feats)
    if isinstance(genotype, str):
        genotype = _parse(genotype)
    return table.predict(genotype)


# ------------------------------------------------------------------------------ measuring
def _as_artifact(model_or_genotype, input_size, scale: int, n_feats: int, runtime: str, workdir: Path,
                 precision: str = "fp32"):
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
        obj = parse_genotype(obj)
    if isinstance(obj, (Genotype, NetworkGenotype)):
        torch.manual_seed(0)
        obj = CellSR.of(obj, scale, n_feats)
    if not isinstance(obj, nn.Module):
        raise TypeError(f"cannot measure a {type(obj).__name__}: pass a Genotype, its text, a module, "
                        ".tflite bytes or a .tflite / .onnx path")
    if runtime == "litert":
        return "tflite", convert_network(obj, input_size, precision=precision)
    if precision != "fp32":
        raise ValueError("an int8 network is measured in LiteRT (runtime='litert')")
    from tinysr.export.onnx_export import export_onnx
    from tinysr.profile.lut import quiet_fds

    out = workdir / "model.onnx"
    with quiet_fds():
        export_onnx(obj.eval(), tuple(input_size), out)
    return "onnx", out


def measure_latency(model_or_genotype, device: str = "host", runtime: str = "litert", input_size=(180, 320),
                    threads: int = 1, runs: int = 20, warmup: int = 3, scale: int = 4, delegate: str | None = None,
                    n_feats: int = 16, benchmark_binary=None, precision: str = "fp32") -> float:
    """Measured latency (median ms of ``runs`` runs after ``warmup``) of a network.

    ``model_or_genotype``: a :class:`Genotype` (or its text; built as a TPSR network with random
    weights at ``scale``), an ``nn.Module`` (N x 3 x H x W input), .tflite bytes or a .tflite /
    .onnx path. ``device``: ``"host"`` (LiteRT Interpreter or ONNX Runtime in this process) or
    ``"adb[:SERIAL]"`` (converted, then ``benchmark_model`` via
    :func:`tinysr.profile.adb.profile_on_device`; LiteRT only). ``precision``: ``int8`` times a module or
    genotype quantized as ``tinysr export --precision int8`` quantizes it (LiteRT only).
    """
    from tinysr.profile.lut import parse_device

    kind, _ = parse_device(device)
    if runtime not in ("litert", "onnxruntime"):
        raise ValueError(f"runtime must be litert or onnxruntime, not {runtime!r}")
    if runtime == "onnxruntime" and kind != "host":
        raise ValueError("ONNX Runtime latency is measured on the host only")
    with tempfile.TemporaryDirectory(prefix="tinysr-measure-") as d:
        what, art = _as_artifact(model_or_genotype, input_size, scale, n_feats, runtime, Path(d), precision)
        if what == "tflite":
            if runtime != "litert":
                raise ValueError("a .tflite model runs in LiteRT (runtime='litert')")
            return Timer(device, "litert", threads, delegate, warmup, runs, benchmark_binary)(art)[0]
        if runtime != "onnxruntime":
            raise ValueError("an .onnx model runs in ONNX Runtime (runtime='onnxruntime')")
        from tinysr.profile.host import time_onnxruntime

        return time_onnxruntime(art, threads, warmup, runs, input_size).median_ms


# ------------------------------------------------------------------------------ sampling
def sample_genotypes(samples: int, seed: int = 0, space: str = "tpsr", exclude=(), scale: int = 4) -> list:
    """``samples`` distinct random genotypes of the search space (``Genotype.random``, ``random.Random(seed)``;
    the trilevel space: :meth:`~tinysr.models.trilevel.TrilevelGenotype.random` at ``scale``).

    ``exclude``: genotypes (or their text) never returned, e.g. a table's calibration networks.
    """
    if "num_nodes" not in SPACES.get(space, {}) and space != "trilevel":
        raise ValueError(f"cannot sample genotypes of the {space!r} space here")
    rng = random.Random(seed)
    excluded = {str(g) for g in exclude}
    out, seen = [], set(excluded)
    tries = 0
    while len(out) < samples:
        g = random_genotype(space, rng, scale)
        tries += 1
        if str(g) in seen and (tries < 100 * samples or str(g) in excluded):
            continue
        seen.add(str(g))
        out.append(g)
    return out


def _measure_networks(table: LatencyTable, genos: list, runs: int, warmup: int, rounds: int, cache_dir,
                      benchmark_binary, say, reference=None) -> tuple:
    """Convert ``genos`` as networks of the table's size / scale / width and time them interleaved.

    Returns ``([(median_ms, p90_ms, runs)], timer, rounds)``. With ``reference`` (a genotype of the
    space, or ``True``: the table's reference network), every round opens and closes with it
    (:meth:`~tinysr.profile.lut.Timer.measure_relative`) and the results are
    ``(results, reference result, timer, rounds)``, one dict per network (``median_ms``, ``p90_ms``,
    ``runs``, ``rounds``, ``rel``, ``spread_pct``).
    """
    timer = table.timer(runs, warmup, benchmark_binary)
    flats = []
    for i, g in enumerate(genos):
        flats.append(convert_genotype(g, table.scale, table.n, (table.h, table.w), cache_dir, table.precision))
        say(f"converted {i + 1}/{len(genos)}")
    rounds = max(min(int(rounds), int(runs)), 1)
    if reference is None:
        say(f"timing {len(flats)} networks in {rounds} interleaved round(s)")
        return timer.measure(flats, rounds), timer, rounds
    flats.append(table.reference_flat(cache_dir) if reference is True
                 else convert_genotype(reference, table.scale, table.n, (table.h, table.w), cache_dir, table.precision))
    say(f"timing {len(genos)} networks in {rounds} interleaved round(s) with the reference network")
    results = timer.measure_relative(flats, len(flats) - 1, rounds)
    return results[:-1], results[-1], timer, rounds


# ------------------------------------------------------------------------------ calibration
def calibrate(profile, networks: int = 8, seed: int = 0, runs: int = 30, warmup: int = 5, rounds: int = 5,
              cache_dir=None, benchmark_binary=None, progress=None) -> dict:
    """(Re)calibrate an existing table: time :func:`~tinysr.profile.lut.calibration_genotypes` on the
    table's device and fit its calibration terms to the stored entries.

    Returns the table's dict with a new ``calibration`` record (an older table keeps its format:
    ``tinysr.lut/1`` tables become ``/2``). A table with relative entries times the networks against
    its reference network in the same rounds and fits their relative costs, so that a change of the
    machine's speed since the build cancels; an older table's networks are timed now against entries
    timed at build time: on a machine whose load changes, prefer ``build_lut``.
    """
    import copy

    table = _tpsr_table(profile, "calibrate")
    say = progress or (lambda msg: None)
    genos = calibration_genotypes(networks, seed, table.space, table.widths if table.space != "tpsr" else None)
    relative = None
    if table.relative:  # timed against the reference network: their relative costs fit the stored relative entries
        res, _, _, rounds = _measure_networks(table, genos, runs, warmup, rounds, cache_dir, benchmark_binary, say,
                                              reference=True)
        results = [(r["median_ms"], r["p90_ms"], r["runs"]) for r in res]
        relative = [r["rel"] for r in res]
        how = f"timed after the entries, on {now_utc()}, relative to the reference network in the same rounds"
    else:
        results, _, rounds = _measure_networks(table, genos, runs, warmup, rounds, cache_dir, benchmark_binary, say)
        how = f"timed after the entries, on {now_utc()}"
    data = copy.deepcopy(table.data)
    data["format"] = FORMAT if table.relative else "tinysr.lut/2"  # an absolute table stays readable as before
    data.pop("calibration", None)
    data["calibration"] = calibration_record(LatencyTable(data), genos, results, seed, warmup, rounds, how,
                                             relative=relative)
    for line in calibration_lines(data["calibration"]):
        say(line)
    return data


def _tpsr_table(profile, what: str) -> LatencyTable:
    table = load_table(profile)
    if table.space not in ("tpsr", "tpsr_plus"):
        raise ValueError(f"{getattr(table, 'source', '') or 'profile'}: a table of the {table.space} space; {what} "
                         "works on tables of the TPSR cell space (a trilevel table is the plain sum of its entries: "
                         "compare it with tinysr profile of an exported network)")
    return table


# ------------------------------------------------------------------------------ validation
def validate(profile, samples: int = 30, seed: int = 0, runs: int = 20, warmup: int = 3, cache_dir=None,
             benchmark_binary=None, progress=None, rounds: int = 4, space: str | None = None,
             compare: str | None = None) -> dict:
    """Predicted vs measured latency of ``samples`` random genotypes, on the table's device / runtime /
    threads / size. All networks are converted first, then timed in ``rounds`` interleaved rounds
    that open and close with a reference network (:meth:`tinysr.profile.lut.Timer.measure_relative`,
    with the table's clock): the median of ``runs`` runs of each, and its cost relative to the
    reference (median over rounds of network / reference of the round). The table's calibration
    networks are never sampled.

    Two comparisons, from the same measurements: ``stats_relative`` (a table with relative entries:
    predicted relative cost vs measured relative cost; a drift of the machine's speed since the
    build, or during the validation, cancels) and ``stats_absolute`` (predicted ms vs measured ms,
    as tables without relative entries are validated). ``compare``: which one is ``stats`` (and the
    plot's): ``relative`` (default for a table with relative entries) or ``absolute`` (default, and
    the only one, for an older table). A calibrated table's result also holds the uncalibrated
    predictions' statistics of that comparison (``stats_uncalibrated``). ``reference`` compares the
    reference network's time now with its time when the table was built (a ratio far from 1 says
    the machine runs faster or slower than then); it is the table's reference network, or for an
    older table its overhead reference network.

    ``cache_dir``: keep (and reuse) the converted networks there. ``space``: the space to sample
    (default the table's; ``tpsr_plus`` samples width, depth and skeleton too, and needs a table that
    holds them; a trilevel table samples trilevel networks, :meth:`TrilevelGenotype.random`).
    """
    table = load_table(profile)
    space = space or table.space
    if space not in ("tpsr", "tpsr_plus", "trilevel"):
        raise ValueError(f"validate samples the tpsr, tpsr_plus or trilevel space, not {space!r}")
    if (space == "trilevel") != (table.space == "trilevel"):
        raise ValueError(f"{table.source or 'profile'} is a table of the {table.space} space: it cannot validate "
                         f"networks of the {space} space")
    compare = compare or ("relative" if table.relative else "absolute")
    if compare not in ("relative", "absolute"):
        raise ValueError(f"compare must be relative or absolute, not {compare!r}")
    if compare == "relative" and not table.relative:
        raise ValueError(f"{table.source or 'profile'} has no relative entries (format {table.data.get('format')}): "
                         "validate it absolutely, or rebuild it with tinysr lut build")
    say = progress or (lambda msg: None)
    cal = table.data.get("calibration") or {}
    excluded = [n["genotype"] for n in cal.get("networks", [])]
    genos = sample_genotypes(samples, seed, space, exclude=excluded, scale=table.scale)
    if space == "tpsr_plus":  # a table built for some widths only: sample those
        genos = [g for g in genos if g.n_feats in table.widths]
        for g in genos[:1]:
            table.predict(g)  # a table without the space's skeleton parts fails here, before any conversion
    if table.relative:
        ref, ref_then, reference = table.reference, table.table_reference_ms, True
    elif table.space == "trilevel":
        raise ValueError(f"{table.source or 'profile'} has no relative entries: rebuild it with tinysr lut build "
                         "--space trilevel to validate it")
    else:
        ref = table.data.get("overhead", {}).get("reference_genotype", OVERHEAD_REFERENCE)
        ref_then, reference = table.data.get("overhead", {}).get("reference_ms"), Genotype.parse(ref)
    results, refm, timer, rounds = _measure_networks(table, genos, runs, warmup, rounds, cache_dir,
                                                     benchmark_binary, say, reference=reference)
    ref_now = refm["median_ms"]
    rows = []
    for i, (g, r) in enumerate(zip(genos, results)):
        predicted, plain, measured = table.predict(g), table.predict_uncalibrated(g), r["median_ms"]
        row = {"genotype": str(g), "predicted_ms": predicted, "uncalibrated_ms": plain, "measured_ms": measured,
               "measured_p90_ms": r["p90_ms"], "runs": r["runs"], "error_pct": (predicted - measured) / measured * 100.0,
               "uncalibrated_error_pct": (plain - measured) / measured * 100.0,
               "measured_rel": r["rel"], "measured_spread_pct": r["spread_pct"]}
        if table.relative:
            p_rel, u_rel = predicted / table.reference_ms, plain / table.reference_ms
            row.update({"predicted_rel": p_rel, "uncalibrated_rel": u_rel,
                        "rel_error_pct": (p_rel - r["rel"]) / r["rel"] * 100.0,
                        "uncalibrated_rel_error_pct": (u_rel - r["rel"]) / r["rel"] * 100.0})
        rows.append(row)
        err = row["rel_error_pct"] if compare == "relative" else row["error_pct"]
        say(f"{i + 1:>3}/{len(genos)}  predicted {predicted:8.2f} ms  measured {measured:8.2f} ms  "
            f"x{r['rel']:.3f} of the reference  {err:+6.1f}% ({compare})  {g}")
    dev, rtd = timer.describe()
    measured = [r["measured_ms"] for r in rows]
    stats_abs = error_stats([r["predicted_ms"] for r in rows], measured)
    stats_rel = (error_stats([r["predicted_rel"] for r in rows], [r["measured_rel"] for r in rows])
                 if table.relative else None)
    out = {"format": VALIDATION_FORMAT, "profile": table.source, "device": dev, "runtime": rtd,
           "input_size": [table.h, table.w], "scale": table.scale, "n_feats": table.n, "samples": len(rows),
           "precision": table.precision,
           **({} if space == "tpsr" else {"space": space}),
           "seed": int(seed), "warmup": int(warmup), "runs": int(results[0]["runs"]) if results else 0,
           "rounds": rounds, "clock": table.clock, "date": now_utc(),
           "calibration": ({"op_scale": table.op_scale, "network_ms": table.network_ms,
                            "networks_excluded": len(excluded)} if table.calibrated else None),
           "reference": {"genotype": str(ref), "now_ms": ref_now, "table_ms": ref_then,
                         "ratio": ref_now / ref_then if ref_then else None,
                         "predict_ms": table.reference_ms if table.relative else None,
                         "timed": "opening and closing every round of the networks' timing"},
           "comparison": compare,
           "stats": stats_rel if compare == "relative" else stats_abs,
           "stats_relative": stats_rel, "stats_absolute": stats_abs}
    if table.calibrated:
        key = "uncalibrated_rel" if compare == "relative" else "uncalibrated_ms"
        want = [r["measured_rel"] for r in rows] if compare == "relative" else measured
        out["stats_uncalibrated"] = error_stats([r[key] for r in rows], want)
    out["rows"] = rows
    return out


def _stats_line(s: dict) -> str:
    return (f"abs. error: median {s['median_abs_pct']:.1f}%, p90 {s['p90_abs_pct']:.1f}%, max {s['max_abs_pct']:.1f}%; "
            f"{s.get('within_10_pct', float('nan')):.0f}% within +-10%; mean signed {s['mean_signed_pct']:+.1f}%; "
            f"Spearman rank correlation {'n/a' if s['spearman'] is None else format(s['spearman'], '.3f')}")


_COMPARISONS = {"relative": "relative cost (network / reference network in the same rounds; drift cancels)",
                "absolute": "absolute ms"}


def format_validation(result: dict) -> str:
    s = result["stats"]
    rt = result.get("runtime", {})
    h, w = result["input_size"]
    lines = [f"{s['n']} random genotypes, {result.get('precision', 'fp32')}, {rt.get('name')} ({rt.get('delegate')}), "
             f"{rt.get('threads')} thread(s), {h}x{w} x{result['scale']}, {result.get('clock', 'wall')} clock"]
    chosen = result.get("comparison", "absolute")
    cal = result.get("calibration")
    if cal:
        lines.append(f"{_COMPARISONS[chosen]}, calibrated (op entries x{cal['op_scale']:.4f}, "
                     f"{cal['network_ms']:+.3f} ms per network): " + _stats_line(s))
        lines.append("  uncalibrated (plain sum of entries): " + _stats_line(result["stats_uncalibrated"]))
    else:
        lines.append(f"{_COMPARISONS[chosen]}: " + _stats_line(s))
    other = "absolute" if chosen == "relative" else "relative"
    if result.get(f"stats_{other}"):
        lines.append(f"{_COMPARISONS[other]}: " + _stats_line(result[f"stats_{other}"]))
    ref = result.get("reference") or {}
    if ref.get("ratio"):
        lines.append(f"reference network {ref['genotype']}: {ref['now_ms']:.2f} ms now, {ref['table_ms']:.2f} ms when "
                     f"the table was built (x{ref['ratio']:.3f})")
    return "\n".join(lines)


def plot_validation(result: dict, png_path) -> Path:
    """Scatter of predicted vs measured latency with the y = x line (and +-10 % band); atomic PNG.

    A calibrated table's uncalibrated predictions are drawn too (hollow grey markers).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from tinysr.profile.record import save_figure

    rel = result.get("comparison") == "relative"
    mk, pk, uk = ("measured_rel", "predicted_rel", "uncalibrated_rel") if rel else (
        "measured_ms", "predicted_ms", "uncalibrated_ms")
    m = [r[mk] for r in result["rows"]]
    p = [r[pk] for r in result["rows"]]
    cal = result.get("calibration")
    raw = [r[uk] for r in result["rows"]] if cal else []
    lo, hi = min(m + p + raw) * 0.9, max(m + p + raw) * 1.1
    fig = Figure(figsize=(5.5, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15, label="+-10 %")
    if cal:
        ax.scatter(m, raw, s=18, facecolors="none", edgecolors="grey", zorder=2, label="uncalibrated (sum of entries)")
    ax.scatter(m, p, s=18, color="#c44e52", zorder=3, label="calibrated" if cal else "random genotypes")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    if rel:
        ax.set_xlabel("measured cost / reference network (median over rounds)")
        ax.set_ylabel("predicted cost / reference network (table)")
    else:
        ax.set_xlabel("measured latency (ms, median)")
        ax.set_ylabel("predicted latency (ms, table)")
    s = result["stats"]
    rt = result.get("runtime", {})
    h, w = result["input_size"]
    title = (f"{result.get('device', {}).get('cpu') or result.get('device', {}).get('model') or ''} "
             f"{rt.get('name')} {rt.get('threads')}t {h}x{w} x{result['scale']}, n={s['n']}, "
             f"{result.get('clock', 'wall')} clock\n{'relative cost: ' if rel else ''}"
             f"median |err| {s['median_abs_pct']:.1f}%, p90 {s['p90_abs_pct']:.1f}%, "
             f"{s.get('within_10_pct', float('nan')):.0f}% within +-10%")
    if cal:
        u = result["stats_uncalibrated"]
        title += f" (uncalibrated: {u['median_abs_pct']:.1f}%, {u['p90_abs_pct']:.1f}%, {u['within_10_pct']:.0f}%)"
    ref = result.get("reference") or {}
    if ref.get("ratio"):
        title += f"\nreference network {ref['genotype']}: x{ref['ratio']:.3f} of its time when the table was built"
    ax.set_title(title, fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, png_path)
