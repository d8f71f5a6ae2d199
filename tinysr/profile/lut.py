"""Latency lookup tables (device profiles) of the TPSR search space.

A table holds, for one device / runtime / thread count and one input size and scale, the measured
latency of every candidate operation of the cell (each followed by its PReLU, as in a cell node)
at the cell's feature-map size, of the fixed skeleton parts around the cell, a fixed per-model
overhead and, once calibrated, two terms fitted to whole networks measured on the device.
:class:`LatencyTable` adds up the entries of a genotype. The JSON format is documented in
``profiles/README.md``.

The parts and their keys come from the model code: the cell operations from
:data:`tinysr.ops.OPS` (built as :class:`tinysr.genotype.CellNode`), the skeleton from
:func:`tinysr.models.tpsr.skeleton_parts` (built with the constructors :class:`CellSR` uses).
Each entry is measured as its own small model: the PyTorch module is converted with
:func:`~tinysr.export.tflite_convert.convert_tflite` (``mode="mobile"``, NHWC, the same graph
``tinysr export`` writes) and timed whole (``warmup`` runs, then the median and 90th percentile
of ``runs`` runs). A part that is one operator of a larger graph (the leaf-sum ADD, which has two
inputs) is cut out of it (:func:`tinysr.export.flatbuffer.slice_op`). The overhead is what a whole
network costs beyond its parts: the measured median of the smallest network of the space (the
skeleton around the cell ``identity@in``) minus the sum of its table entries.

**Relative entries** (format ``tinysr.lut/3``): a shared machine's speed drifts from minute to
minute, so every model of a build is timed in interleaved rounds that open and close with a fixed
*reference network* (:data:`REFERENCES`; :meth:`Timer.measure_relative`). Each entry keeps, besides
its absolute median, its cost relative to the reference measured in the same round (``rel``: the
median over rounds of entry / reference) and that ratio's spread; rounds are repeated until every
spread is below a bound or a time limit is hit. A table with relative entries predicts
``relative cost x reference ms``: the reference's time recorded at build time, or re-measured
now (:meth:`LatencyTable.rescale`), so that one short measurement moves every prediction to
the machine's current speed.

**Calibration** (:func:`fit_calibration`): a few whole networks of the space
(:func:`calibration_genotypes`), timed in the same interleaved rounds as the entries by
:func:`build_lut` (or later, for an existing table, by :func:`tinysr.profile.predict.calibrate`),
and two terms fitted so that
``measured ~= overhead + skeleton + op_scale * cell + network_ms``, where ``cell`` is the sum of
the genotype's node entries and leaf-sum ADDs. ``op_scale`` is how much slower (> 1) or faster an
operation runs inside a network than alone (caches, memory traffic between operators),
``network_ms`` a per-network constant.
"""
from __future__ import annotations

import datetime as _dt
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinysr.export.tflite_convert import quiet_fds  # noqa: F401  (tinysr.profile.lut.quiet_fds, as before)
from tinysr.genotype import TPSR_GENOTYPE, CellNode, Genotype, NetworkGenotype
from tinysr.ops import OP_NAMES, OPS

FORMAT = "tinysr.lut/3"
#: Table formats this module reads: /1 has no ``calibration`` (op_scale 1, network_ms 0); /2 and /1 have
#: no relative entries (no ``reference`` record: absolute entries, as before).
READABLE_FORMATS = ("tinysr.lut/1", "tinysr.lut/2", FORMAT)
#: Search spaces a table can be built for: cell width, nodes per cell and candidate ops.
SPACES = {"tpsr": {"n_feats": 16, "num_nodes": 10, "ops": OP_NAMES},
          # the trilevel search (tinysr.search.trilevel): skip, the width-searched res3 / mb3 at these
          # hidden-width ratios, and the TPSR ops listed, at every resolution level of backbone A
          "trilevel": {"n_feats": 16, "ops": ("skip", "res3", "mb3", "conv3", "conv5", "dsep3", "dsep5", "inv3"),
                       "ratios": (0.5, 1.0, 1.5)},
          # the extended generator space: the TPSR cell with a searched width, depth (cells in sequence)
          # and skeleton (tinysr.models.tpsr.CellSR's options); a table holds every width's entries
          "tpsr_plus": {"n_feats": 16, "num_nodes": 10, "ops": OP_NAMES, "widths": (16, 24, 32), "depths": (1, 2),
                        "skeletons": ("tpsr", "anchor", "anchor+clip", "anchor+clip+linear")}}
#: Skeleton choices of the tpsr_plus space: ``(upsampler, clip, linear, skip)`` of
#: :class:`~tinysr.models.tpsr.CellSR` (``linear``: full convolutions trained as collapsible linear blocks;
#: the deployed network, and so its latency-table entries, are those of the same skeleton without it;
#: ``skip``: the long residual over the cells, priced as one more leaf-sum ADD). The space's default
#: choices are :data:`SPACES`' ``skeletons``; a search config may name any of these (``space_options``).
SKELETONS = {"tpsr": ("tpsr", False, False, False), "tpsr+clip": ("tpsr", True, False, False),
             "anchor": ("anchor", False, False, False), "anchor+clip": ("anchor", True, False, False),
             "tpsr+linear": ("tpsr", False, True, False), "anchor+linear": ("anchor", False, True, False),
             "anchor+clip+linear": ("anchor", True, True, False),
             "tpsr+skip": ("tpsr", False, False, True), "anchor+clip+skip": ("anchor", True, False, True),
             "anchor+clip+linear+skip": ("anchor", True, True, True)}


def skeleton_name(upsampler: str, clip: bool, linear: bool = False, skip: bool = False) -> str:
    return upsampler + ("+clip" if clip else "") + ("+linear" if linear else "") + ("+skip" if skip else "")
OVERHEAD_REFERENCE = "identity@in"
#: The trilevel space's overhead reference: the smallest network (head and the sub-pixel output layer).
TRILEVEL_REFERENCE = "B up"
#: The fixed network every model of a build is timed against, per space (at the table's cell width).
#: TPSR spaces: the paper's TPSR cell network (``tinysr.genotype.TPSR_GENOTYPE``). Its time is that of
#: a typical network the table predicts (a 10-node cell of the space's ops in the skeleton, mid-range
#: of the space's Mult-Adds), and its mix of convolutions, depthwise convolutions, PReLUs and ADDs is
#: theirs, so a slow-down of the host that hits memory-bound and compute-bound operators unequally
#: still moves the reference as it moves the predicted networks; and it is long enough (several
#: times the per-invoke cost) that its own timing jitter weighs little in each round's ratio. The
#: overhead reference ``identity@in`` (the skeleton alone, no cell operation) would share none of the
#: cell's operators. Trilevel: its overhead reference (the space has no fixed mid-range network).
REFERENCES = {"tpsr": str(TPSR_GENOTYPE), "tpsr_plus": str(TPSR_GENOTYPE), "trilevel": TRILEVEL_REFERENCE}
#: Default bound on an entry's relative spread (percent) and time limit (seconds) of a build's rounds.
MAX_SPREAD_PCT = 3.0
TIME_LIMIT_S = 300.0
SPREAD_DEFINITION = "(p90 - p10) / median of the per-round ratios model / reference, percent"
CALIBRATION_MODEL = "predicted = overhead + skeleton + op_scale * (node entries + leaf-sum ADDs) + network_ms"


# ------------------------------------------------------------------------------- parts
def op_key(op: str, n: int, h: int, w: int) -> str:
    """Table key of a cell operation (+ its PReLU): ``OPS[op].latency_key(n, h, w)``."""
    return OPS[op].latency_key(n, h, w)


def skeleton_parts(n: int, h: int, w: int, scale: int, upsampler: str = "tpsr", clip: bool = False) -> list:
    """The skeleton parts of a table (:func:`tinysr.models.tpsr.skeleton_parts`)."""
    from tinysr.models.tpsr import skeleton_parts as parts

    return parts(scale, n, (h, w), upsampler, clip)


def space_widths(space: str, widths=None) -> tuple:
    """The cell widths a table of ``space`` holds: ``widths`` (a subset of an extended space's), else all."""
    spec = SPACES[space]
    allowed = tuple(spec.get("widths", (spec["n_feats"],)))
    if widths is None:
        return allowed
    widths = tuple(int(v) for v in widths)
    if "widths" not in spec and widths != allowed:
        raise ValueError(f"the {space} space has {allowed[0]}-channel cells only (widths: --space tpsr_plus)")
    if not widths or any(v < 1 for v in widths):
        raise ValueError(f"widths must be positive, got {widths}")
    return widths


def random_genotype(space: str, rng, scale: int = 4):
    """A uniform random genotype of ``space`` (``random.Random`` ``rng``): a cell (``Genotype.random``), and
    for an extended space first its width, depth and skeleton (a :class:`NetworkGenotype`)."""
    spec = SPACES[space]
    if space == "trilevel":  # a backbone, then 0-3 cells at the LR size (A: and 0-2 at 2x) of 1-2 nodes
        from tinysr.models.trilevel import TrilevelGenotype

        return TrilevelGenotype.random(rng, scale, spec["ops"], spec["ratios"], spec["n_feats"])
    if "widths" not in spec:
        return Genotype.random(spec["num_nodes"], rng, spec["ops"])
    width, depth, skeleton = rng.choice(spec["widths"]), rng.choice(spec["depths"]), rng.choice(spec["skeletons"])
    return NetworkGenotype(Genotype.random(spec["num_nodes"], rng, spec["ops"]), width, depth, *SKELETONS[skeleton])


def skeleton_layout(n: int, h: int, w: int, scale: int) -> dict:
    """The table's ``skeleton`` record: which entries are the fixed parts of a ``scale`` network."""
    lay = {"head": None, "cell_act": None, "up": [], "add_mean": None, "leaf_add": None}
    for p in skeleton_parts(n, h, w, scale):
        if p.name.startswith("up"):
            lay["up"].append(p.key)
        else:
            lay[p.name] = p.key
    return lay


def table_parts(space: str, input_size, scale: int, widths=None) -> list:
    """``[(key, what, make, channels, (h, w), op)]``: every table entry's model to convert.

    ``make()`` builds the module; ``op``: time only that operator of its converted graph (None:
    the whole converted model). An extended space (``tpsr_plus``): every operation and skeleton part at
    every width of ``widths`` (default the space's), for the TPSR skeleton and every skeleton of the space.
    """
    spec = SPACES[space]
    n = spec["n_feats"]
    if "widths" in spec:
        h, w = (int(v) for v in input_size)
        parts, seen = [], set()
        skeletons = ["tpsr"] + [s for s in spec["skeletons"] if s != "tpsr"]
        for width in space_widths(space, widths):
            for op in spec["ops"]:
                parts.append((op_key(op, width, h, w), f"{op} + PReLU, {width} ch",
                              lambda op=op, width=width: CellNode(op, width), width, (h, w), None))
            for sk in skeletons:
                for p in skeleton_parts(width, h, w, scale, *SKELETONS[sk][:2]):
                    if p.key not in seen:
                        seen.add(p.key)
                        parts.append((p.key, p.what, p.make, p.channels, p.size, p.op))
        return parts
    h, w = (int(v) for v in input_size)
    if space == "trilevel":
        from tinysr.models.trilevel import space_parts

        return [(p.key, p.what, p.make, p.channels, p.size, p.op)
                for p in space_parts(n, (h, w), scale, spec["ops"], spec["ratios"])]
    parts = [(op_key(op, n, h, w), f"{op} + PReLU, {n} ch", lambda op=op: CellNode(op, n), n, (h, w), None)
             for op in spec["ops"]]
    parts += [(p.key, p.what, p.make, p.channels, p.size, p.op) for p in skeleton_parts(n, h, w, scale)]
    return parts


# -------------------------------------------------------------------------- converting
PRECISIONS = ("fp32", "int8")


def to_int8(flat: bytes, channels: int, size, io: str) -> bytes:
    """``flat`` quantized as ``tinysr export --precision int8`` quantizes (:func:`tinysr.export.quantize.tflite_int8`),
    calibrated on two fixed random inputs (int8 kernels take the same time whatever the values): RGB in [0, 1]
    (the exporter's fixed input range) for a 3-channel input, else standard-normal feature maps (calibrated
    range). ``io``: ``"int8"`` for a table entry (inside a network its tensors are int8 already: no QUANTIZE /
    DEQUANTIZE at its edges) and for a whole network (as a phone runs it), ``"float"`` for float I/O."""
    from tinysr.export.quantize import tflite_int8

    rng = np.random.default_rng(0)
    h, w = (int(v) for v in size)
    if channels == 3:
        samples = [rng.random((1, 3, h, w), dtype=np.float32) for _ in range(2)]
    else:
        samples = [rng.standard_normal((1, channels, h, w), dtype=np.float32) for _ in range(2)]
    return tflite_int8(flat, samples, io=io, input_range=(0.0, 1.0) if channels == 3 else None)


def convert_part(module: nn.Module, channels: int, size, op: str | None = None, quiet: bool = True,
                 precision: str = "fp32") -> bytes:
    """The .tflite of one table entry (see :func:`table_parts`): the whole module, or its one ``op``; ``int8``:
    the module quantized (:func:`to_int8`, int8 I/O) before its op is cut out."""
    from tinysr.export.flatbuffer import op_rows, slice_op
    from tinysr.export.tflite_convert import convert_tflite

    with torch.no_grad(), quiet_fds(quiet):
        flat = convert_tflite(module.eval(), tuple(size), mode="mobile", channels=channels)
    if precision == "int8":
        flat = to_int8(flat, channels, size, io="int8")
    if op:
        idx = [i for i, (t, _, _) in enumerate(op_rows(flat)) if t == op]
        if len(idx) != 1:
            raise RuntimeError(f"expected one {op} operator to cut out, found {len(idx)}")
        flat = slice_op(flat, idx[0])
    return flat


def convert_network(model: nn.Module, size, quiet: bool = True, precision: str = "fp32") -> bytes:
    """The .tflite of a whole network (RGB input of ``size``), as ``tinysr export`` converts it (its deployed
    form: a network with a training-time form collapsed first); ``int8``: quantized as exported for a phone (int8
    I/O, as the ``tflite-int8`` preset, the Android demo and ``tinysr pareto`` export it)."""
    from tinysr.export.tflite_convert import convert_tflite
    from tinysr.models.mobile import deploy

    with torch.no_grad(), quiet_fds(quiet):
        flat = convert_tflite(deploy(model).eval(), tuple(size), mode="mobile")
    return to_int8(flat, 3, size, io="int8") if precision == "int8" else flat


def convert_genotype(genotype: Genotype, scale: int, n_feats: int, size, cache_dir=None, precision: str = "fp32") -> bytes:
    """The .tflite of ``CellSR(genotype, scale, n_feats)`` on a ``size`` input (random weights), cached;
    of ``TrilevelSR(genotype, scale, n_feats)`` for a trilevel genotype; ``int8``: quantized as a phone runs it
    (:func:`convert_network`)."""
    import hashlib

    from tinysr.models.tpsr import CellSR
    from tinysr.models.trilevel import TrilevelGenotype, TrilevelSR

    def make():
        torch.manual_seed(0)
        if isinstance(genotype, TrilevelGenotype):
            return convert_network(TrilevelSR(genotype, scale, n_feats), size, precision=precision)
        return convert_network(CellSR.of(genotype, scale, n_feats), size, precision=precision)

    h, w = size
    digest = hashlib.sha1(str(genotype).encode()).hexdigest()[:12]
    tag = "" if precision == "fp32" else "_int8io"  # int8 I/O (earlier caches' float-I/O networks: _int8)
    return convert_cached(make, cache_dir, f"net_{digest}_n{n_feats}_x{scale}_{h}x{w}{tag}.tflite")


def convert_cached(make, cache_dir, name: str) -> bytes:
    """``make()`` -> bytes, kept as ``cache_dir/name`` when ``cache_dir`` is given (reused if present)."""
    from tinysr.profile.record import write_bytes_atomic

    if cache_dir is None:
        return make()
    path = Path(cache_dir) / name
    if path.is_file():
        return path.read_bytes()
    flat = make()
    write_bytes_atomic(path, flat)
    return flat


# ------------------------------------------------------------------------------ measuring
def parse_device(device: str) -> tuple:
    """``"host"`` -> ``("host", None)``; ``"adb"`` / ``"adb:SERIAL"`` -> ``("adb", SERIAL or None)``."""
    device = (device or "host").strip()
    if device == "host":
        return "host", None
    if device == "adb":
        return "adb", None
    if device.startswith("adb:"):
        serials = [s for s in device[4:].split(",") if s]
        return "adb", serials[0] if len(serials) == 1 else (serials or None)
    raise ValueError(f"device must be 'host', 'adb' or 'adb:SERIAL', not {device!r}")


class Timer:
    """Times .tflite flatbuffers on one device / runtime configuration: ``(median_ms, p90_ms, runs)``."""

    def __init__(self, device: str = "host", runtime: str = "litert", threads: int = 1, delegate: str | None = None,
                 warmup: int = 5, runs: int = 30, benchmark_binary=None, clock: str = "wall"):
        self.kind, self.serial = parse_device(device)
        if isinstance(self.serial, list):
            raise ValueError("a latency table or measurement is for one device: give a single serial")
        if runtime != "litert":
            raise ValueError(f"latency tables are measured with the LiteRT runtime (got {runtime!r})")
        self.device, self.runtime, self.threads = device, runtime, int(threads)
        self.delegate = delegate or ("xnnpack" if self.kind == "host" else "cpu")
        if self.kind == "host":
            from tinysr.profile.host import check_runtime_args, clock_for

            check_runtime_args(runtime, self.delegate, self.threads)
            clock_for(clock, self.threads)
        elif clock != "wall":
            raise ValueError(f"benchmark_model over adb times wall-clock latency only (not the {clock} clock)")
        self.clock = clock
        self.warmup, self.runs, self.benchmark_binary = int(warmup), int(runs), benchmark_binary

    def __call__(self, flat: bytes) -> tuple:
        return self.measure([flat], rounds=1)[0]

    def measure(self, flats: list, rounds: int = 1) -> list:
        """``[(median_ms, p90_ms, runs)]`` for several models, timed in interleaved rounds.

        On the host: :func:`tinysr.profile.host.time_litert_models` (every model loaded and
        warmed up first, then ``rounds`` rounds over all of them, ``runs`` timed runs each in
        all). Over adb: each round runs ``benchmark_model`` on every model in turn; a model's
        time is the median of its per-round medians (no p90).
        """
        rounds = max(min(int(rounds), self.runs), 1)
        if self.kind != "host":
            per_round = max(1, -(-self.runs // rounds))
            meds = [[] for _ in flats]
            for _ in range(rounds):
                for i, flat in enumerate(flats):
                    meds[i].append(self._adb_once(flat, per_round))
            return [(float(statistics.median(m)), None, per_round * rounds) for m in meds]
        from tinysr.profile.host import time_litert_models

        timings = time_litert_models(flats, self.threads, self.delegate, self.warmup, self.runs, rounds,
                                     clock=self.clock)
        return [(t.median_ms, t.p90_ms, len(t.times_ms)) for t in timings]

    def rounds(self, flats: list):
        """The round engine over ``flats`` (loaded and warmed up): :class:`tinysr.profile.host.Rounds` on
        the host; over adb, one ``benchmark_model`` call per model and round (its median the round's time)."""
        if self.kind == "host":
            from tinysr.profile.host import litert_rounds

            return litert_rounds(flats, self.threads, self.delegate, self.warmup, clock=self.clock)
        return _AdbRounds(self, flats)

    def measure_relative(self, flats: list, ref: int, rounds: int = 5, max_spread: float | None = None,
                         time_limit: float = 0.0, progress=None) -> list:
        """Time ``flats`` in interleaved rounds against ``flats[ref]`` (the reference network).

        Every round times the reference first, then each model still measured (one untimed run,
        then ``ceil(runs / rounds)`` timed runs each), then the reference again; a model's ratio in
        the round is the median of its round's runs over the median of the reference's runs in that
        round, so that a change of the machine's speed between rounds cancels. ``rounds`` rounds
        are always run. With ``max_spread`` (percent), more rounds follow for the models whose
        spread (:func:`relative_spread`: (p90 - p10) / median of their per-round ratios) is above
        it (a model needs 3 rounds to settle) until none is left or ``time_limit`` seconds (of the
        whole timing, checked after each round) have passed.

        Returns one dict per model: ``median_ms`` / ``p90_ms`` (of all its timed runs; no p90 over
        adb), ``runs``, ``rounds``, ``rel`` (median of the per-round ratios; the reference: 1) and
        ``spread_pct`` (None with one round).
        """
        if not 0 <= int(ref) < len(flats):
            raise ValueError(f"reference index {ref} is not one of the {len(flats)} models")
        if max_spread is not None and not float(max_spread) > 0:
            raise ValueError(f"the spread bound must be a positive percentage, got {max_spread}")
        if not float(time_limit) >= 0:
            raise ValueError(f"the time limit must be >= 0 seconds, got {time_limit}")
        say = progress or (lambda msg: None)
        rounds = max(min(int(rounds), self.runs), 1)
        per_round = max(1, math.ceil(self.runs / rounds))
        start = time.monotonic()
        engine = self.rounds(flats)
        timings = engine.timings
        active = [i for i in range(len(flats)) if i != ref]
        ratios = {i: [] for i in active}
        done = 0
        while True:
            engine.round(per_round, [ref] + active + [ref])
            done += 1
            ref_ms = statistics.median(timings[ref].rounds_ms[-1])
            for i in active:
                ratios[i].append(statistics.median(timings[i].rounds_ms[-1]) / ref_ms)
            if done < rounds:
                continue
            if max_spread is None or not active:
                break
            active = [i for i in active if len(ratios[i]) < 3 or relative_spread(ratios[i]) > max_spread]
            elapsed = time.monotonic() - start
            if not active or elapsed >= time_limit:
                break
            say(f"round {done + 1}: {len(active)} model(s) above {max_spread:g}% spread ({elapsed:.0f} s)")
        out = []
        for i, t in enumerate(timings):
            p90 = float(np.percentile(t.times_ms, 90)) if self.kind == "host" else None
            rel = [1.0] * len(t.rounds_ms) if i == ref else ratios[i]
            out.append({"median_ms": float(statistics.median(t.times_ms)), "p90_ms": p90, "runs": len(t.times_ms)
                        * (1 if self.kind == "host" else per_round), "rounds": len(t.rounds_ms),
                        "rel": float(statistics.median(rel)), "spread_pct": relative_spread(rel)})
        return out

    def _adb_once(self, flat: bytes, runs: int) -> float:
        from tinysr.profile.adb import profile_on_device

        with tempfile.TemporaryDirectory(prefix="tinysr-lut-") as d:
            path = Path(d) / "part.tflite"
            path.write_bytes(flat)
            # one benchmark_model run with op profiling off: the profiler's overhead stays out of the table
            p = profile_on_device(path, serial=self.serial, benchmark_binary=self.benchmark_binary,
                                  threads=self.threads, delegate=self.delegate, warmup=self.warmup, runs=runs,
                                  per_op=False)
        s = p.summary
        median = s.get("median_ms") if s.get("median_ms") is not None else s.get("avg_ms")
        if median is None:
            raise RuntimeError(f"benchmark_model on {self.serial or 'the device'} reported no inference time")
        return float(median)

    def describe(self) -> tuple:
        """``(device dict, runtime dict)`` for a table's or a measurement's header."""
        from tinysr.profile.host import host_device_info
        from tinysr.provenance import tool_versions

        if self.kind == "host":
            device = host_device_info(self.threads)
        else:
            from tinysr.profile.adb import Adb, device_info, select_device

            client = Adb()
            client = client.for_serial(select_device(client, self.serial))
            device = {"kind": "adb", **device_info(client), "threads": self.threads}
        runtime = {"name": self.runtime, "delegate": self.delegate, "threads": self.threads,
                   "versions": tool_versions(), "tool": "python Interpreter" if self.kind == "host" else "benchmark_model"}
        return device, runtime


class _AdbRounds:
    """:class:`tinysr.profile.host.Rounds`' interface over adb: a round runs ``benchmark_model`` once per
    model of its order, and that run's median is the model's one time of the round."""

    def __init__(self, timer: Timer, flats: list):
        from tinysr.profile.host import Timing

        self.timer, self.flats = timer, list(flats)
        self.timings = [Timing(float("nan")) for _ in self.flats]

    def round(self, runs: int, order=None, settle: bool = True) -> None:
        opened = set()
        for i in range(len(self.flats)) if order is None else order:
            if i not in opened:
                opened.add(i)
                self.timings[i].rounds_ms.append([])
            ms = self.timer._adb_once(self.flats[i], int(runs))
            self.timings[i].times_ms.append(ms)
            self.timings[i].rounds_ms[-1].append(ms)


def relative_spread(ratios) -> float | None:
    """Spread of per-round ratios in percent: ``(p90 - p10) / median * 100`` (numpy's linear
    percentiles); None for fewer than two rounds."""
    if len(ratios) < 2:
        return None
    r = np.asarray(ratios, float)
    return float((np.percentile(r, 90) - np.percentile(r, 10)) / np.median(r) * 100.0)


def convert_reference(space: str, network: str, scale: int, n_feats: int, size, cache_dir=None,
                      precision: str = "fp32") -> bytes:
    """The .tflite of a table's reference network (text of a genotype of ``space``) at its size and width."""
    h, w = (int(v) for v in size)
    if space == "trilevel":
        from tinysr.models.trilevel import TrilevelGenotype

        return convert_genotype(TrilevelGenotype.parse(network), scale, n_feats, (h, w), cache_dir, precision)
    return convert_genotype(Genotype.parse(network), scale, n_feats, (h, w), cache_dir, precision)


def build_lut(device: str = "host", runtime: str = "litert", space: str = "tpsr", input_size=(180, 320),
              scale: int = 4, threads: int = 1, runs: int = 30, warmup: int = 5, delegate: str | None = None,
              benchmark_binary=None, cache_dir=None, progress=None, rounds: int = 5, clock: str = "wall",
              calibration_networks: int = 8, calibration_seed: int = 0, widths=None,
              max_spread: float = MAX_SPREAD_PCT, time_limit: float = TIME_LIMIT_S, precision: str = "fp32") -> dict:
    """Measure every entry of a latency table and calibrate it; the JSON-ready dict (``profiles/README.md``).

    Every model (entries, overhead reference, calibration networks) is timed against the space's
    reference network (:data:`REFERENCES`) in the same rounds (:meth:`Timer.measure_relative`):
    each entry records its absolute median and p90 as before, and its cost relative to the
    reference (``rel``) with that ratio's spread (``spread_pct``, :func:`relative_spread`); the
    table's ``reference`` record holds the reference's absolute median. ``rounds``: the minimum
    number of rounds (``runs`` timed runs per model over them); more rounds follow for the models
    whose spread is above ``max_spread`` percent, until ``time_limit`` seconds of timing have
    passed (0: ``rounds`` rounds only).

    ``calibration_networks``: whole networks (:func:`calibration_genotypes`) timed in the same
    interleaved rounds as the entries, so that both see the same machine, and fitted into the
    table's ``calibration`` (0: none; the fit is on their relative costs). ``widths``: an extended
    space's widths to measure (default all of the space's; every entry's key names its width, so
    one table holds them all). ``cache_dir``: keep the converted models there and reuse them
    (conversion is deterministic in structure; weights are random and do not change the
    latency). ``progress``: ``callable(str)`` told about each entry. ``clock``: ``wall`` (latency
    as a user sees it) or ``thread-cpu`` (host, 1 thread: the CPU time of the invoking thread,
    which leaves out waiting for a core on a busy shared machine); the table records it, and its
    calibration and validation time with the same clock. ``precision``: ``int8`` times every model
    quantized as ``tinysr export --precision int8`` quantizes it (:func:`to_int8`, int8 I/O as the phone presets
    export it); the table records it, and its calibration and validation
    convert their networks alike.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if space not in SPACES:
        raise ValueError(f"unknown search space {space!r}; known: {', '.join(SPACES)}")
    if int(calibration_networks) < 0:
        raise ValueError(f"calibration_networks must be 0 (none) or more, got {calibration_networks}")
    if not float(max_spread) > 0:
        raise ValueError(f"max_spread must be a positive percentage, got {max_spread}")
    if not float(time_limit) >= 0:
        raise ValueError(f"time_limit must be >= 0 seconds, got {time_limit}")
    h, w = (int(v) for v in input_size)
    widths = space_widths(space, widths)
    n = SPACES[space]["n_feats"] if SPACES[space]["n_feats"] in widths else widths[0]
    timer = Timer(device, runtime, threads, delegate, warmup, runs, benchmark_binary, clock)
    say = progress or (lambda msg: None)
    torch.manual_seed(0)
    parts = table_parts(space, (h, w), scale, widths if "widths" in SPACES[space] else None)
    flats = []
    tag = "" if precision == "fp32" else f"_{precision}"
    for key, what, make, channels, size, op in parts:
        flats.append(convert_cached(lambda: convert_part(make(), channels, size, op, precision=precision), cache_dir,
                                    f"{key}{tag}.tflite"))
    # Fixed overhead: the smallest network of the space, measured whole, minus its table entries.
    trilevel = space == "trilevel"
    reference = REFERENCES[space]
    if trilevel:  # no calibration networks: the table is the plain sum of its entries
        from tinysr.models.trilevel import network_parts

        ref, genos = TRILEVEL_REFERENCE, []
        flats.append(convert_reference(space, ref, scale, n, (h, w), cache_dir, precision))
    else:
        ref = Genotype.parse(OVERHEAD_REFERENCE)
        genos = (calibration_genotypes(calibration_networks, calibration_seed, space, widths)
                 if calibration_networks else [])
        for g in [ref] + genos:
            flats.append(convert_genotype(g, scale, n, (h, w), cache_dir, precision))
    # the reference network: one of the models above when it is (overhead reference, TPSR calibration network)
    names = [str(ref)] + [str(g) for g in genos]
    if reference in names:
        ref_index = len(parts) + names.index(reference)
    else:
        flats.append(convert_reference(space, reference, scale, n, (h, w), cache_dir, precision))
        ref_index = len(flats) - 1
    rounds = max(min(int(rounds), int(runs)), 1)
    say(f"converted {len(flats)} models ({len(parts)} entries, the overhead reference, {len(genos)} calibration "
        f"networks); timing them against the reference network '{reference}' in at least {rounds} interleaved "
        f"round(s), more for those above {max_spread:g}% relative spread, up to {time_limit:g} s")
    start = time.monotonic()
    results = timer.measure_relative(flats, ref_index, rounds, max_spread, time_limit, say)
    seconds = time.monotonic() - start
    refm = results[ref_index]
    entries = {}
    for (key, what, *_), r in zip(parts, results):
        entries[key] = {"median_ms": r["median_ms"], "p90_ms": r["p90_ms"], "runs": r["runs"], "what": what,
                        "rel": r["rel"], "spread_pct": r["spread_pct"], "rounds": r["rounds"]}
        say(f"{key:<34} {r['median_ms']:9.3f} ms  x{r['rel']:.4f} of the reference "
            f"(spread {_pct(r['spread_pct'])}, {r['rounds']} rounds)  ({what})")
    ovr = results[len(parts)]
    ref_ms, ref_p90, ref_runs = ovr["median_ms"], ovr["p90_ms"], ovr["runs"]
    if trilevel:
        counts = [(1, p.key) for p in network_parts(ref, n, (h, w), scale)]
    else:
        counts = ([(p.count(ref), p.key) for p in skeleton_parts(n, h, w, scale)]
                  + [(1, op_key(nd.op, n, h, w)) for nd in ref.nodes])
    parts_ms = sum(c * entries[k]["median_ms"] for c, k in counts)
    parts_rel = sum(c * entries[k]["rel"] for c, k in counts)
    overhead = ref_ms - parts_ms
    say(f"{'overhead':<34} {overhead:9.3f} ms  (network {ref} {ref_ms:.3f} ms - parts {parts_ms:.3f} ms; "
        f"relative {ovr['rel'] - parts_rel:+.4f})")
    spreads = [e["spread_pct"] for e in entries.values() if e["spread_pct"] is not None]
    unsettled = sorted(k for k, e in entries.items() if e["spread_pct"] is None or e["spread_pct"] > max_spread)
    dev, rt = timer.describe()
    data = {
        "format": FORMAT,
        "space": space,
        "n_feats": n,
        "input_size": [h, w],
        "scale": int(scale),
        "device": dev,
        "runtime": rt,
        "date": now_utc(),
        "precision": precision,
        "method": (f"each entry converted on its own (convert_tflite mode=mobile, NHWC, random weights"
                   f"{'; int8: quantized as tinysr export does, entries and networks with int8 I/O' if precision == 'int8' else ''}) and timed "
                   f"whole: {warmup} warm-up runs, then at least {rounds} interleaved rounds over all entries, each "
                   f"round opened and closed by the reference network '{reference}' (one untimed run per model and "
                   f"round, then {max(1, math.ceil(int(runs) / rounds))} timed runs), more rounds for entries whose "
                   f"relative spread was above {max_spread:g}% (up to {time_limit:g} s) "
                   f"({_host_clock_text(clock) if timer.kind == 'host' else 'benchmark_model over adb'}); "
                   "median_ms / p90_ms of all timed runs, rel = median over rounds of entry / reference of the round; "
                   "the leaf-sum ADD is the ADD operator cut out of a converted two-branch graph; overhead = "
                   f"measured median of the network '{ref}' minus the sum of its entries"),
        "warmup": int(warmup),
        "runs": int(results[0]["runs"]),
        "rounds": int(rounds),
        "clock": clock,
        "skeleton": None if trilevel else skeleton_layout(n, h, w, scale),
        "reference": {"genotype": reference, "ms": refm["median_ms"], "p90_ms": refm["p90_ms"], "runs": refm["runs"],
                      "rounds": refm["rounds"], "spread": SPREAD_DEFINITION, "max_spread_pct": float(max_spread),
                      "time_limit_s": float(time_limit), "seconds": seconds,
                      "max_entry_spread_pct": max(spreads) if spreads else None, "unsettled": unsettled},
        "overhead": {"ms": overhead, "reference_genotype": str(ref), "reference_ms": ref_ms,
                     "reference_p90_ms": ref_p90, "reference_parts_ms": parts_ms,
                     "rel": ovr["rel"] - parts_rel, "reference_rel": ovr["rel"], "reference_parts_rel": parts_rel},
        "entries": entries,
    }
    if unsettled:
        say(f"{len(unsettled)} entries still above {max_spread:g}% relative spread after {seconds:.0f} s: "
            + ", ".join(unsettled[:8]) + (" ..." if len(unsettled) > 8 else ""))
    if trilevel:
        data["space_ops"], data["space_ratios"] = list(SPACES[space]["ops"]), list(SPACES[space]["ratios"])
    if "widths" in SPACES[space]:
        data["widths"] = list(widths)
        data["skeletons"] = list(SPACES[space]["skeletons"])
    if genos:
        cal = results[len(parts) + 1:len(parts) + 1 + len(genos)]
        data["calibration"] = calibration_record(LatencyTable(data), genos,
                                                 [(r["median_ms"], r["p90_ms"], r["runs"]) for r in cal],
                                                 calibration_seed, warmup, rounds,
                                                 "timed in the same interleaved rounds as the entries",
                                                 relative=[r["rel"] for r in cal])
        for line in calibration_lines(data["calibration"]):
            say(line)
    return data


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.1f}%"


def now_utc() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _host_clock_text(clock: str) -> str:
    what = "time.perf_counter" if clock == "wall" else "time.thread_time (CPU time of the invoking thread)"
    return f"LiteRT Python Interpreter, {what} around invoke"


# ---------------------------------------------------------------------------- calibration
def fit_calibration(base_ms, cell_ms, measured_ms, min_spread: float = 0.05) -> dict:
    """Fit ``measured ~= base + op_scale * cell + network_ms`` over whole networks.

    ``base_ms``: each network's overhead + skeleton entries; ``cell_ms``: the sum of its node
    entries and leaf-sum ADDs; ``measured_ms``: its measured median. Least squares on the
    *relative* error (each residual divided by the measured time, the quantity validation
    reports), with ``op_scale >= 0`` (a time factor). When the networks' cell sums differ by
    less than ``min_spread`` (relative range), the scale cannot be told from the constant:
    ``op_scale`` stays 1 and only ``network_ms`` is fitted. Returns ``{"op_scale", "network_ms"}``.
    """
    b, c, m = (np.asarray(v, float) for v in (base_ms, cell_ms, measured_ms))
    if not (len(b) == len(c) == len(m)) or len(m) == 0:
        raise ValueError("calibration needs one base, cell and measured time per network (at least one network)")
    if np.any(m <= 0):
        raise ValueError("measured times must be positive")
    y, wt = m - b, 1.0 / m

    def constant_only(scale: float) -> dict:
        return {"op_scale": scale, "network_ms": float(np.sum(wt ** 2 * (y - scale * c)) / np.sum(wt ** 2))}

    if len(m) < 2 or (c.max() - c.min()) < min_spread * abs(c.mean()):
        return constant_only(1.0)
    a = np.stack([np.ones_like(c), c], axis=1) * wt[:, None]
    (const, scale), *_ = np.linalg.lstsq(a, y * wt, rcond=None)
    if scale < 0:
        return constant_only(0.0)
    return {"op_scale": float(scale), "network_ms": float(const)}


def error_stats(predicted, measured) -> dict:
    """Relative error of predictions, in percent of the measured value."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = (p - m) / m * 100.0
    a = np.abs(err)

    def ranks(v):
        return np.argsort(np.argsort(v)).astype(float)

    rho = float(np.corrcoef(ranks(p), ranks(m))[0, 1]) if len(p) > 2 else None  # JSON has no NaN
    return {"n": int(len(p)), "median_abs_pct": float(np.median(a)), "p90_abs_pct": float(np.percentile(a, 90)),
            "max_abs_pct": float(a.max()), "mean_signed_pct": float(err.mean()),
            "mean_abs_pct": float(a.mean()), "within_10_pct": float(np.mean(a <= 10.0) * 100.0), "spearman": rho}


CALIBRATION_CANDIDATES = 200


def calibration_genotypes(networks: int = 8, seed: int = 0, space: str = "tpsr", widths=None) -> list:
    """The networks a table is calibrated on: the published TPSR cell and ``networks - 1`` random ones.

    The random ones come from their own seed stream (``random.Random("tinysr-calibration-SEED")``,
    never the integer seeds validation samples with): of ``CALIBRATION_CANDIDATES`` drawn
    genotypes, those at evenly spaced quantiles (5 % .. 95 %) of the cell's Mult-Adds, so that
    the fit sees light and heavy cells. The choice needs no measurement (the networks are timed
    with the table's entries) and is the same on every device. An extended space's networks
    (width, depth and skeleton drawn too, at ``widths``) are ordered by their whole network's Mult-Adds.
    """
    import random

    from tinysr.genotype import TPSR_GENOTYPE

    networks = int(networks)
    if networks < 1:
        raise ValueError(f"calibration needs at least one network, got {networks}")
    spec = SPACES[space]
    rng = random.Random(f"tinysr-calibration-{seed}")
    cands, seen = [], {str(TPSR_GENOTYPE)}
    plus = "widths" in spec
    widths = space_widths(space, widths) if plus else None
    while len(cands) < CALIBRATION_CANDIDATES:
        g = random_genotype(space, rng)
        if plus and g.n_feats not in widths:
            continue
        if str(g) not in seen:
            seen.add(str(g))
            cands.append(g)
    if plus:
        from tinysr.models.tpsr import mult_adds

        cands.sort(key=lambda g: mult_adds(g, 4, input_size=(8, 8)))
    else:
        cands.sort(key=lambda g: g.mult_adds(spec["n_feats"], 1, 1))
    k = networks - 1
    qs = [0.5] if k == 1 else [0.05 + 0.9 * i / (k - 1) for i in range(k)]
    return [TPSR_GENOTYPE] + [cands[round(q * (len(cands) - 1))] for q in qs[:k]]


def calibration_record(table: "LatencyTable", genos: list, results: list, seed: int, warmup: int, rounds: int,
                       how: str, relative=None) -> dict:
    """The table's ``calibration``: the fit (:func:`fit_calibration`) of ``genos`` measured as ``results``.

    ``relative``: the networks' measured costs relative to the table's reference network (a table
    with relative entries): the fit is then on those, in the table's units (relative cost x the
    reference's recorded ms), and records ``network_rel`` (``network_ms`` / reference ms) too.
    """
    terms = [table.cell_terms(g) for g in genos]
    measured = [r[0] for r in results] if relative is None else [v * table.reference_ms for v in relative]
    fit = fit_calibration([b for b, _ in terms], [c for _, c in terms], measured)
    rows = [{"genotype": str(g), "measured_ms": med, "measured_p90_ms": p90, "runs": n_runs, "table_ms": base + cell,
             "calibrated_ms": base + fit["op_scale"] * cell + fit["network_ms"]}
            for g, (base, cell), (med, p90, n_runs) in zip(genos, terms, results)]
    if relative is not None:
        for row, v, m in zip(rows, relative, measured):
            row["measured_rel"], row["measured_ref_ms"] = float(v), float(m)
    rec = {
        "model": CALIBRATION_MODEL, "op_scale": fit["op_scale"], "network_ms": fit["network_ms"],
        "fit": "least squares of the relative error over the networks below, op_scale >= 0",
        "networks_from": (f"the published TPSR cell + {len(genos) - 1} of {CALIBRATION_CANDIDATES} random genotypes "
                          f"of random.Random('tinysr-calibration-{seed}') at evenly spaced quantiles of the cell's "
                          "Mult-Adds (disjoint from validation samples)"),
        "seed": int(seed), "warmup": int(warmup), "runs": int(results[0][2]), "rounds": int(rounds),
        "clock": table.clock, "timed": how, "date": now_utc(),
        "before": error_stats([r["table_ms"] for r in rows], measured),
        "after": error_stats([r["calibrated_ms"] for r in rows], measured),
        "networks": rows,
    }
    if relative is not None:
        rec["network_rel"] = fit["network_ms"] / table.reference_ms
        rec["measured"] = ("relative to the reference network in the same rounds (measured_rel), in the table's ms: "
                           "measured_ref_ms = measured_rel x reference.ms")
    return rec


def calibration_lines(cal: dict) -> list:
    """One line per calibration network: measured, table sum and calibrated prediction."""
    lines = []
    for r in cal["networks"]:
        m, t, c = r.get("measured_ref_ms", r["measured_ms"]), r["table_ms"], r["calibrated_ms"]
        lines.append(f"measured {m:8.2f} ms  table {t:8.2f} ms ({(t - m) / m * 100:+5.1f}%)  "
                     f"calibrated {c:8.2f} ms ({(c - m) / m * 100:+5.1f}%)  {r['genotype']}")
    return lines


def format_calibration(cal: dict) -> str:
    b, a = cal["before"], cal["after"]
    return (f"calibrated on {len(cal['networks'])} networks: op entries x{cal['op_scale']:.4f}, "
            f"{cal['network_ms']:+.3f} ms per network (their abs. error median {b['median_abs_pct']:.1f}% -> "
            f"{a['median_abs_pct']:.1f}%, mean signed {b['mean_signed_pct']:+.1f}% -> {a['mean_signed_pct']:+.1f}%)")


# ------------------------------------------------------------------------------ the table
class LatencyTable:
    """A loaded latency table with everything :meth:`predict` needs precomputed.

    A table with relative entries (``reference`` record, format ``tinysr.lut/3``) predicts from them:
    every entry, the overhead and the calibration's per-network term are relative costs times
    :attr:`reference_ms`, the reference network's time: the one recorded at build time unless
    ``reference_ms`` is given, :meth:`set_reference_ms` sets another or :meth:`rescale` measures it
    now. A table without them (older formats) predicts from the absolute entries, as before.
    """

    def __init__(self, data: dict, source: str = "", reference_ms: float | None = None):
        self._read_header(data, source, reference_ms)
        self.parts = skeleton_parts(self.n, self.h, self.w, self.scale)
        missing = [p.key for p in self.parts if p.key not in self.entries]
        if missing:
            raise ValueError(f"{source or 'profile'}: skeleton entries missing: {', '.join(missing)}")
        self.raw_op_ms = {name: self.entries[spec.latency_key(self.n, self.h, self.w)] for name, spec in OPS.items()
                          if spec.latency_key(self.n, self.h, self.w) in self.entries}
        (self.leaf_add,) = [p for p in self.parts if p.per == "extra leaf"]
        self.skeleton_ms = sum(self.entries[p.key] for p in self.parts if p.per == "network")
        cal = data.get("calibration") or {}
        self.op_scale = float(cal.get("op_scale", 1.0))
        self.network_ms = float(cal.get("network_ms", 0.0))
        if self.relative and "network_rel" in cal:
            self.network_ms = float(cal["network_rel"]) * self.reference_ms
        # predict() is a pure sum over these (calibration folded in)
        self.op_ms = {k: v * self.op_scale for k, v in self.raw_op_ms.items()}
        self.add_ms = self.entries[self.leaf_add.key] * self.op_scale
        self.base_ms = self.overhead_ms + self.skeleton_ms + self.network_ms
        self.widths = tuple(int(v) for v in data.get("widths", [self.n]))
        self._skeletons: dict = {}  # (width, upsampler, clip) -> (skeleton ms, leaf-sum ADD ms, parts)

    def _read_header(self, data: dict, source: str, reference_ms: float | None = None) -> None:
        """What every table has: format, space, size, scale, width, clock, entries and overhead (in ms: the
        relative entries times the reference's ms when the table has them)."""
        where = source or "profile"
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{where}: not a latency table ({' or '.join(READABLE_FORMATS)}; "
                             f"format: {data.get('format')!r})")
        self.data, self.source = data, source
        self.space = data.get("space", "tpsr")
        self.n = int(data["n_feats"])
        self.h, self.w = (int(v) for v in data["input_size"])
        self.scale = int(data["scale"])
        self.clock = data.get("clock", "wall")
        self.precision = data.get("precision", "fp32")  # what its entries time: fp32, or int8 as exported
        if self.precision not in PRECISIONS:
            raise ValueError(f"{where}: unknown precision {self.precision!r} ({' or '.join(PRECISIONS)})")
        ref = data.get("reference") or {}
        overhead = data.get("overhead", {})
        self.relative = bool(ref) and "rel" in overhead and all("rel" in v for v in data["entries"].values())
        if ref and not self.relative:
            raise ValueError(f"{where}: the table has a reference network but not every entry and the overhead "
                             "has its relative cost ('rel')")
        self.reference = ref.get("genotype")
        self.table_reference_ms = float(ref["ms"]) if self.relative else None
        if reference_ms is not None and not self.relative:
            raise ValueError(f"{where} has no relative entries (format {data.get('format')}): its predictions cannot "
                             "be rescaled to a reference time; rebuild it with tinysr lut build")
        if reference_ms is not None and not (float(reference_ms) > 0 and math.isfinite(float(reference_ms))):
            raise ValueError(f"the reference network's time must be a positive number of ms, got {reference_ms}")
        self.reference_ms = float(reference_ms) if reference_ms is not None else self.table_reference_ms
        if self.relative:
            self.entries = {k: float(v["rel"]) * self.reference_ms for k, v in data["entries"].items()}
            self.overhead_ms = float(overhead["rel"]) * self.reference_ms
        else:
            self.entries = {k: float(v["median_ms"]) for k, v in data["entries"].items()}
            self.overhead_ms = float(overhead.get("ms", 0.0))

    def set_reference_ms(self, ms: float) -> "LatencyTable":
        """Predict with the reference network taking ``ms`` (e.g. measured now): every prediction scales by
        ``ms`` / the recorded time. Only for a table with relative entries; returns the table."""
        type(self).__init__(self, self.data, self.source, ms)
        return self

    @property
    def speed_ratio(self) -> float | None:
        """The reference's time used now over its time at build time (1: as built; None: absolute table)."""
        return self.reference_ms / self.table_reference_ms if self.relative else None

    def relative_cost(self, genotype) -> float:
        """The network's predicted cost relative to the reference network (the prediction / :attr:`reference_ms`)."""
        if not self.relative:
            raise ValueError(f"{self.source or 'profile'} has no relative entries: rebuild it with tinysr lut build")
        return self.predict(genotype) / self.reference_ms

    def timer(self, runs: int = 20, warmup: int = 3, benchmark_binary=None) -> Timer:
        """A :class:`Timer` with the table's device, runtime, delegate, threads and clock."""
        rt = self.data.get("runtime", {})
        return Timer(self.device, rt.get("name", "litert"), self.threads, rt.get("delegate"), warmup, runs,
                     benchmark_binary, self.clock)

    def reference_flat(self, cache_dir=None) -> bytes:
        """The .tflite of the table's reference network (relative tables), at the table's size, scale and width."""
        if not self.relative:
            raise ValueError(f"{self.source or 'profile'} has no reference network (no relative entries): "
                             "rebuild it with tinysr lut build")
        return convert_reference(self.space, self.reference, self.scale, self.n, (self.h, self.w), cache_dir,
                                 self.precision)

    def measure_reference(self, runs: int = 20, warmup: int = 3, rounds: int = 2, cache_dir=None,
                          benchmark_binary=None) -> float:
        """The reference network's time (median ms) measured now on the table's device and settings."""
        flat = self.reference_flat(cache_dir)
        return float(self.timer(runs, warmup, benchmark_binary).measure([flat], rounds)[0][0])

    def rescale(self, runs: int = 20, warmup: int = 3, rounds: int = 2, cache_dir=None,
                benchmark_binary=None) -> float:
        """Re-measure the reference network now and predict with its time (:meth:`set_reference_ms`), so that
        every prediction follows the machine's current speed (a search calls it once at its start).
        Returns the measured ms. ``ValueError`` for a table without relative entries."""
        ms = self.measure_reference(runs, warmup, rounds, cache_dir, benchmark_binary)
        self.set_reference_ms(ms)
        return ms

    @classmethod
    def load(cls, path) -> "LatencyTable":
        """The table in ``path``: a :class:`LatencyTable`, or a :class:`TrilevelTable` for the trilevel space."""
        import json

        path = Path(path)
        with open(path, encoding="utf-8") as f:
            return open_table(json.load(f), str(path))

    def save(self, path) -> Path:
        return save_lut(self.data, path)

    @property
    def threads(self) -> int:
        return int(self.data.get("runtime", {}).get("threads") or self.data.get("device", {}).get("threads") or 1)

    @property
    def device(self) -> str:
        d = self.data.get("device", {})
        return f"adb:{d['serial']}" if d.get("kind") == "adb" and d.get("serial") else d.get("kind", "host")

    @property
    def calibrated(self) -> bool:
        return bool(self.data.get("calibration"))

    def check(self, input_size=None, scale=None, n_feats=None) -> None:
        """Raise ``ValueError`` (one line) unless the network's size, scale and width are the table's."""
        where = self.source or "profile"
        if input_size is not None and tuple(int(v) for v in input_size) != (self.h, self.w):
            raise ValueError(f"{where} was measured at {self.h}x{self.w}, not {input_size[0]}x{input_size[1]}: "
                             "build a table for that size")
        if scale is not None and int(scale) != self.scale:
            raise ValueError(f"{where} was measured for x{self.scale}, not x{scale}: build a table for that scale")
        if n_feats is not None and int(n_feats) not in getattr(self, "widths", (self.n,)):
            have = "/".join(map(str, getattr(self, "widths", (self.n,))))
            raise ValueError(f"{where} was measured for {have}-channel cells, not {n_feats}: "
                             "build a table for that width (tinysr lut build --space tpsr_plus --widths ...)")

    def _skeleton(self, net: NetworkGenotype) -> tuple:
        """``(skeleton ms, leaf-sum ADD ms, parts)`` of a network genotype's skeleton (raw entries)."""
        key = (net.n_feats, net.upsampler, net.clip)
        hit = self._skeletons.get(key)
        if hit is None:
            parts = skeleton_parts(net.n_feats, self.h, self.w, self.scale, net.upsampler, net.clip)
            missing = [p.key for p in parts if p.key not in self.entries]
            if missing:
                raise ValueError(f"{self.source or 'profile'} has no entries for the skeleton '{net.prefix()}' "
                                 f"({', '.join(missing)}): build a table with tinysr lut build --space tpsr_plus")
            add = next(p for p in parts if p.per == "extra leaf")
            hit = (sum(self.entries[p.key] for p in parts if p.per == "network"), self.entries[add.key], parts)
            self._skeletons[key] = hit
        return hit

    def _op_ms(self, op: str, n: int) -> float:
        key = op_key(op, n, self.h, self.w)
        if key not in self.entries:
            raise ValueError(f"{self.source or 'profile'} has no entry {key} (operation {op!r} at width {n}): "
                             "build a table for that width (tinysr lut build --space tpsr_plus --widths ...)")
        return self.entries[key]

    def _network_terms(self, net: NetworkGenotype) -> tuple:
        skel, add, _ = self._skeleton(net)
        cell = sum(self._op_ms(node.op, net.n_feats) for node in net.nodes) + (len(net.leaves) - 1) * add
        return self.overhead_ms + skel, net.n_cells * cell + (add if net.skip else 0.0)

    def cell_terms(self, genotype: Genotype) -> tuple:
        """``(base_ms, cell_ms)`` before calibration: overhead + skeleton, and node entries + leaf ADDs
        (a network genotype: its skeleton's parts, and its cells' entries at its width times its depth)."""
        if isinstance(genotype, NetworkGenotype):
            return self._network_terms(genotype)
        try:
            cell = sum([self.raw_op_ms[node.op] for node in genotype.nodes])
        except KeyError as e:
            raise ValueError(f"{self.source or 'profile'} has no entry for operation {e.args[0]!r}") from None
        cell += (len(genotype.leaves) - 1) * self.entries[self.leaf_add.key]
        return self.overhead_ms + self.skeleton_ms, cell

    def predict_uncalibrated(self, genotype: Genotype) -> float:
        """The plain sum of the table's entries (no calibration terms)."""
        return sum(self.cell_terms(genotype))

    def predict(self, genotype: Genotype) -> float:
        """Predicted latency (ms) of the network built from ``genotype`` (calibrated when the table is)."""
        if isinstance(genotype, NetworkGenotype):
            base, cell = self._network_terms(genotype)
            return base + self.network_ms + self.op_scale * cell
        op_ms = self.op_ms
        try:
            cell = sum([op_ms[node.op] for node in genotype.nodes])
        except KeyError as e:
            raise ValueError(f"{self.source or 'profile'} has no entry for operation {e.args[0]!r}") from None
        return self.base_ms + cell + (len(genotype.leaves) - 1) * self.add_ms

    def breakdown(self, genotype: Genotype) -> list:
        """``[(label, key, ms)]``: every term of :meth:`predict`, in network order (op terms scaled)."""
        if isinstance(genotype, NetworkGenotype):
            return self._network_breakdown(genotype)
        rows = []
        for p in self.parts:
            if p.per == "network":
                rows.append((p.what, p.key, self.entries[p.key]))
                continue
            for i, node in enumerate(genotype.nodes):
                key = OPS[node.op].latency_key(self.n, self.h, self.w)
                if key not in self.entries:
                    raise ValueError(f"{self.source or 'profile'} has no entry {key}")
                rows.append((f"node {i}: {node}", key, self.entries[key] * self.op_scale))
            for leaf in genotype.leaves[1:]:
                rows.append((f"leaf sum + node {leaf}", p.key, self.add_ms))
        rows.append(("fixed overhead", "overhead", self.overhead_ms))
        if self.calibrated:
            rows.append(("calibration: per-network term", "calibration.network_ms", self.network_ms))
        return rows


    def _network_breakdown(self, net: NetworkGenotype) -> list:
        _, add, parts = self._skeleton(net)
        rows = []
        for p in parts:
            if p.per == "network":
                rows.append((p.what, p.key, self.entries[p.key]))
                continue
            for c in range(net.n_cells):
                cell = f"cell {c}, " if net.n_cells > 1 else ""
                for i, node in enumerate(net.nodes):
                    rows.append((f"{cell}node {i}: {node}", op_key(node.op, net.n_feats, self.h, self.w),
                                 self._op_ms(node.op, net.n_feats) * self.op_scale))
                for leaf in net.leaves[1:]:
                    rows.append((f"{cell}leaf sum + node {leaf}", p.key, add * self.op_scale))
            if net.skip:
                rows.append(("skip: head output + cells' output", p.key, add * self.op_scale))
        rows.append(("fixed overhead", "overhead", self.overhead_ms))
        if self.calibrated:
            rows.append(("calibration: per-network term", "calibration.network_ms", self.network_ms))
        return rows


class TrilevelTable(LatencyTable):
    """A latency table of the trilevel space (:mod:`tinysr.models.trilevel`): a network's latency is
    the overhead plus the entries of its parts (:func:`tinysr.models.trilevel.network_parts`); no calibration."""

    def __init__(self, data: dict, source: str = "", reference_ms: float | None = None):
        self._read_header(data, source, reference_ms)
        if self.space != "trilevel":
            raise ValueError(f"{source or 'profile'}: not a latency table of the trilevel space")
        self.op_scale, self.network_ms = 1.0, 0.0

    def entry(self, key: str) -> float:
        if key not in self.entries:
            raise ValueError(f"{self.source or 'profile'} has no entry {key} (its ops: "
                             f"{', '.join(self.data.get('space_ops', []))}; width ratios "
                             f"{self.data.get('space_ratios')}): build a table with that operation and width")
        return self.entries[key]

    def _parts(self, genotype):
        from tinysr.models.trilevel import TrilevelGenotype, network_parts

        if not isinstance(genotype, (TrilevelGenotype, str)):
            raise ValueError(f"{self.source or 'profile'} is a table of the trilevel space: it predicts trilevel "
                             f"genotypes ('A ...' / 'B ...'), not {genotype}")
        return network_parts(genotype, self.n, (self.h, self.w), self.scale)

    def cell_terms(self, genotype) -> tuple:
        parts = self._parts(genotype)
        return (self.overhead_ms + sum(self.entry(p.key) for p in parts if p.level == "network"),
                sum(self.entry(p.key) for p in parts if p.level == "cell"))

    def predict(self, genotype) -> float:
        return sum(self.cell_terms(genotype))

    def breakdown(self, genotype) -> list:
        rows = [(p.what, p.key, self.entry(p.key)) for p in self._parts(genotype)]
        return rows + [("fixed overhead", "overhead", self.overhead_ms)]


def open_table(data: dict, source: str = "") -> LatencyTable:
    """The loaded table of ``data``'s space."""
    return (TrilevelTable if data.get("space") == "trilevel" else LatencyTable)(data, source)


def save_lut(data: dict, path) -> Path:
    import json

    from tinysr.profile.record import write_bytes_atomic

    path = Path(path)
    write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return path


def default_lut_name(data: dict) -> str:
    """``host-<cpu-slug>-litert-<threads>t[-<space>][-int8].json`` (or ``adb-<model>-...``)."""
    import re

    from tinysr.profile.host import cpu_slug

    dev = data.get("device", {})
    rt = data.get("runtime", {})
    if dev.get("kind") == "adb":
        who = "adb-" + re.sub(r"[^a-z0-9]+", "-", (dev.get("model") or dev.get("serial") or "device").lower()).strip("-")
    else:
        who = "host-" + cpu_slug(dev.get("cpu"))
    default = "cpu" if dev.get("kind") == "adb" else "xnnpack"
    delegate = "" if rt.get("delegate") in (None, default) else f"-{rt['delegate']}"
    space = "" if data.get("space", "tpsr") == "tpsr" else f"-{data['space']}"
    precision = "" if data.get("precision", "fp32") == "fp32" else f"-{data['precision']}"
    return f"{who}-{rt.get('name', 'litert')}{delegate}-{rt.get('threads', 1)}t{space}{precision}.json"
