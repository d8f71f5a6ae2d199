"""Latency lookup tables (device profiles) of the TPSR search space.

A table holds, for one device / runtime / thread count and one input size and scale, the measured
latency of every candidate operation of the cell (each followed by its PReLU, as in a cell node)
at the cell's feature-map size, of the fixed skeleton parts around the cell, and a fixed
per-model overhead. :func:`tinysr.profile.predict.predict_latency` adds up the entries of a
genotype. The JSON format is documented in ``profiles/README.md``.

Each entry is measured as its own small model: the PyTorch module is converted with
:func:`~tinysr.export.tflite_convert.convert_tflite` (``mode="mobile"``, NHWC, the same graph
``tinysr export`` writes) and timed whole (``warmup`` runs, then the median and 90th percentile
of ``runs`` runs). The leaf-sum ADD cannot be a one-input model, so it is cut out of a converted
two-branch graph (:func:`tinysr.export.flatbuffer.slice_op`). The overhead is what a whole network
costs beyond its parts: the measured median of the smallest network of the space (the skeleton
around the cell ``identity@in``) minus the sum of its table entries.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import statistics
import tempfile
from pathlib import Path

import torch
from torch import nn

from tinysr.genotype import CellNode, Genotype
from tinysr.ops import OP_NAMES, OPS

FORMAT = "tinysr.lut/1"
#: Search spaces a table can be built for: cell width, nodes per cell and candidate ops.
SPACES = {"tpsr": {"n_feats": 16, "num_nodes": 10, "ops": OP_NAMES}}
OVERHEAD_REFERENCE = "identity@in"


# ------------------------------------------------------------------------------------- keys
def op_key(op: str, n: int, h: int, w: int) -> str:
    """Table key of a cell operation (+ its PReLU): ``OPS[op].latency_key(n, h, w)``."""
    return OPS[op].latency_key(n, h, w)


def head_key(n: int, h: int, w: int) -> str:
    return f"skeleton.head_c3_n{n}_{h}x{w}"


def cell_act_key(n: int, h: int, w: int) -> str:
    return f"skeleton.prelu_n{n}_{h}x{w}"


def add_key(n: int, h: int, w: int) -> str:
    return f"skeleton.add_n{n}_{h}x{w}"


def up_key(cin: int, h: int, w: int) -> str:
    return f"skeleton.up_c{cin}_{h}x{w}"


def add_mean_key(h: int, w: int) -> str:
    return f"skeleton.addmean_c3_{h}x{w}"


def skeleton_layout(n: int, h: int, w: int, scale: int) -> dict:
    """Keys of the fixed parts of a ``scale`` network on an ``h x w`` input."""
    from tinysr.models.blocks import num_x2_steps

    ups, ch, hh, ww = [], n, h, w
    for _ in range(num_x2_steps(scale)):
        ups.append(up_key(ch, hh, ww))
        ch, hh, ww = 3, hh * 2, ww * 2
    return {"head": head_key(n, h, w), "cell_act": cell_act_key(n, h, w), "up": ups,
            "add_mean": add_mean_key(h * scale, w * scale), "leaf_add": add_key(n, h, w)}


# --------------------------------------------------------------------------- part modules
class _TwoBranchAdd(nn.Module):
    """Two PReLU branches summed: the graph the leaf-sum ADD is cut out of."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.PReLU(), nn.PReLU(init=0.5)

    def forward(self, x):
        return self.a(x) + self.b(x)


def part_modules(space: str, input_size, scale: int) -> list:
    """``[(key, what, module, channels, (h, w), kind)]``: every table entry's model to convert.

    ``kind`` is ``"model"`` (time the converted model) or ``"slice:ADD"`` (time the ADD operator
    cut out of it).
    """
    from tinysr.models.blocks import MeanShift, SubPixelUp

    spec = SPACES[space]
    n = spec["n_feats"]
    h, w = input_size
    parts = []
    for op in spec["ops"]:
        parts.append((op_key(op, n, h, w), f"{op} + PReLU, {n} ch", CellNode(op, n), n, (h, w), "model"))
    lay = skeleton_layout(n, h, w, scale)
    parts.append((lay["head"], f"mean shift + head conv3 3->{n}", nn.Sequential(MeanShift(), nn.Conv2d(3, n, 3, padding=1)),
                  3, (h, w), "model"))
    parts.append((lay["leaf_add"], f"leaf-sum ADD, {n} ch (one per extra leaf)", _TwoBranchAdd(), n, (h, w), "slice:ADD"))
    parts.append((lay["cell_act"], f"cell-output PReLU, {n} ch", nn.PReLU(), n, (h, w), "model"))
    ch, hh, ww = n, h, w
    for key in lay["up"]:
        parts.append((key, f"x2 sub-pixel block: conv3 {ch}->12 + DEPTH_TO_SPACE", SubPixelUp(ch, 3), ch, (hh, ww),
                      "model"))
        ch, hh, ww = 3, hh * 2, ww * 2
    parts.append((lay["add_mean"], "inverse mean shift", MeanShift(inverse=True), 3, (h * scale, w * scale), "model"))
    return parts


@contextlib.contextmanager
def quiet_fds(enabled: bool = True):
    """Silence file descriptors 1 and 2 (the converter's C++ and progress chatter)."""
    if not enabled:
        yield
        return
    import sys

    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


def convert_part(module: nn.Module, channels: int, size, kind: str = "model", quiet: bool = True) -> bytes:
    """The .tflite of one table entry (see :func:`part_modules`)."""
    from tinysr.export.tflite_convert import convert_tflite
    from tinysr.export.flatbuffer import op_rows, slice_op

    with torch.no_grad(), quiet_fds(quiet):
        flat = convert_tflite(module.eval(), tuple(size), mode="mobile", channels=channels)
    if kind.startswith("slice:"):
        want = kind.split(":", 1)[1]
        idx = [i for i, (t, _, _) in enumerate(op_rows(flat)) if t == want]
        if len(idx) != 1:
            raise RuntimeError(f"expected one {want} operator to cut out, found {len(idx)}")
        flat = slice_op(flat, idx[0])
    return flat


def convert_cached(make, cache_dir, name: str) -> bytes:
    """``make()`` -> bytes, kept as ``cache_dir/name`` when ``cache_dir`` is given (reused if present)."""
    if cache_dir is None:
        return make()
    path = Path(cache_dir) / name
    if path.is_file():
        return path.read_bytes()
    flat = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(flat)
    os.replace(tmp, path)
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
                 warmup: int = 5, runs: int = 30, benchmark_binary=None):
        self.kind, self.serial = parse_device(device)
        if isinstance(self.serial, list):
            raise ValueError("a latency table or measurement is for one device: give a single serial")
        if runtime != "litert":
            raise ValueError(f"latency tables are measured with the LiteRT runtime (got {runtime!r})")
        self.device, self.runtime, self.threads = device, runtime, int(threads)
        self.delegate = delegate or ("xnnpack" if self.kind == "host" else "cpu")
        if self.kind == "host":
            from tinysr.profile.host import _check_runtime_args

            _check_runtime_args(runtime, self.delegate, self.threads)
        self.warmup, self.runs, self.benchmark_binary = int(warmup), int(runs), benchmark_binary

    def __call__(self, flat: bytes) -> tuple:
        return self.measure([flat], rounds=1)[0]

    def measure(self, flats: list, rounds: int = 1) -> list:
        """``[(median_ms, p90_ms, runs)]`` for several models, timed in interleaved rounds.

        Every model is loaded and warmed up first; then each of ``rounds`` rounds runs every model
        in turn (one untimed run, then ``runs / rounds`` timed runs). A passing disturbance on a
        shared machine thus spreads over all models instead of skewing a few, and the median of
        each model's pooled runs ignores it.
        """
        rounds = max(min(int(rounds), self.runs), 1)
        per_round = max(1, -(-self.runs // rounds))
        if self.kind != "host":
            meds = [[] for _ in flats]
            for _ in range(rounds):
                for i, flat in enumerate(flats):
                    meds[i].append(self._adb_once(flat, per_round))
            return [(float(statistics.median(m)), None, per_round * rounds) for m in meds]
        import time

        import numpy as np

        from tinysr.profile.host import _random_input, litert_interpreter

        rng = np.random.default_rng(0)
        sessions = []
        for flat in flats:
            interp = litert_interpreter(flat, self.threads, self.delegate)
            interp.allocate_tensors()
            for d in interp.get_input_details():
                interp.set_tensor(d["index"], _random_input(tuple(d["shape"]), d["dtype"], rng))
            for _ in range(max(self.warmup, 0)):
                interp.invoke()
            sessions.append(interp)
        times = [[] for _ in flats]
        for _ in range(rounds):
            for interp, ts in zip(sessions, times):
                interp.invoke()  # untimed: caches were someone else's
                for _ in range(per_round):
                    t = time.perf_counter()
                    interp.invoke()
                    ts.append((time.perf_counter() - t) * 1e3)
        return [(float(statistics.median(ts)), float(np.percentile(ts, 90)), len(ts)) for ts in times]

    def _adb_once(self, flat: bytes, runs: int) -> float:
        from tinysr.profile.adb import profile_on_device

        with tempfile.TemporaryDirectory(prefix="tinysr-lut-") as d:
            path = Path(d) / "part.tflite"
            path.write_bytes(flat)
            p = profile_on_device(path, serial=self.serial, benchmark_binary=self.benchmark_binary,
                                  threads=self.threads, delegate=self.delegate, warmup=self.warmup, runs=runs)
        s = p.summary
        median = s.get("median_ms") if s.get("median_ms") is not None else s.get("avg_ms")
        if median is None:
            raise RuntimeError(f"benchmark_model on {self.serial or 'the device'} reported no inference time")
        return float(median)

    def describe(self) -> tuple:
        """``(device dict, runtime dict)`` for the table's header."""
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


def build_lut(device: str = "host", runtime: str = "litert", space: str = "tpsr", input_size=(180, 320),
              scale: int = 4, threads: int = 1, runs: int = 30, warmup: int = 5, delegate: str | None = None,
              benchmark_binary=None, cache_dir=None, progress=None, rounds: int = 5) -> dict:
    """Measure every entry of a latency table; returns the JSON-ready dict (see ``profiles/README.md``).

    ``cache_dir``: keep the converted part models there and reuse them (conversion is
    deterministic in structure; weights are random and do not change the latency).
    ``progress``: ``callable(str)`` told about each entry. ``rounds``: the ``runs`` of every
    entry are split over this many interleaved rounds (see :meth:`Timer.measure`).
    """
    from tinysr.models.tpsr import CellSR

    if space not in SPACES:
        raise ValueError(f"unknown search space {space!r}; known: {', '.join(SPACES)}")
    h, w = (int(v) for v in input_size)
    n = SPACES[space]["n_feats"]
    timer = Timer(device, runtime, threads, delegate, warmup, runs, benchmark_binary)
    say = progress or (lambda msg: None)
    torch.manual_seed(0)
    parts = part_modules(space, (h, w), scale)
    flats = []
    for key, what, module, channels, size, kind in parts:
        flats.append(convert_cached(lambda: convert_part(module, channels, size, kind), cache_dir, f"{key}.tflite"))
    # Fixed overhead: the smallest network of the space, measured whole, minus its table entries.
    ref = Genotype.parse(OVERHEAD_REFERENCE)
    ref_name = f"reference_{OVERHEAD_REFERENCE.replace('@', '_at_')}_x{scale}_{h}x{w}.tflite"
    flats.append(convert_cached(lambda: _convert_network(CellSR(ref, scale, n), (h, w)), cache_dir, ref_name))
    rounds = max(min(int(rounds), int(runs)), 1)
    say(f"converted {len(flats)} models; timing them in {rounds} interleaved round(s)")
    results = timer.measure(flats, rounds)
    entries = {}
    for (key, what, *_), (median, p90, n_runs) in zip(parts, results):
        entries[key] = {"median_ms": median, "p90_ms": p90, "runs": n_runs, "what": what}
        say(f"{key:<34} {median:9.3f} ms  ({what})")
    ref_ms, ref_p90, ref_runs = results[-1]
    lay = skeleton_layout(n, h, w, scale)
    parts_ms = _skeleton_ms(entries, lay) + entries[op_key("identity", n, h, w)]["median_ms"]
    overhead = ref_ms - parts_ms
    say(f"{'overhead':<34} {overhead:9.3f} ms  (network {OVERHEAD_REFERENCE} {ref_ms:.3f} ms - parts {parts_ms:.3f} ms)")
    dev, rt = timer.describe()
    return {
        "format": FORMAT,
        "space": space,
        "n_feats": n,
        "input_size": [h, w],
        "scale": int(scale),
        "device": dev,
        "runtime": rt,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "method": (f"each entry converted on its own (convert_tflite mode=mobile, NHWC, random weights) and timed "
                   f"whole: {warmup} warm-up runs, then median / p90 of {results[0][2]} runs taken in {rounds} "
                   "interleaved rounds over all entries (one untimed run per entry and round) "
                   f"({'LiteRT Python Interpreter, time.perf_counter around invoke' if timer.kind == 'host' else 'benchmark_model over adb'}); "
                   "the leaf-sum ADD is the ADD operator cut out of a converted two-branch graph; overhead = "
                   f"measured median of the network '{OVERHEAD_REFERENCE}' minus the sum of its entries"),
        "warmup": int(warmup),
        "runs": int(results[0][2]),
        "rounds": int(rounds),
        "skeleton": lay,
        "overhead": {"ms": overhead, "reference_genotype": OVERHEAD_REFERENCE, "reference_ms": ref_ms,
                     "reference_p90_ms": ref_p90, "reference_parts_ms": parts_ms},
        "entries": entries,
    }


def _convert_network(model: nn.Module, size, quiet: bool = True) -> bytes:
    from tinysr.export.tflite_convert import convert_tflite

    with torch.no_grad(), quiet_fds(quiet):
        return convert_tflite(model.eval(), tuple(size), mode="mobile")


def _skeleton_ms(entries: dict, lay: dict) -> float:
    keys = [lay["head"], lay["cell_act"], *lay["up"], lay["add_mean"]]
    return sum(float(entries[k]["median_ms"]) for k in keys)


# ------------------------------------------------------------------------------ the table
class LatencyTable:
    """A loaded latency table with everything :meth:`predict` needs precomputed."""

    def __init__(self, data: dict, source: str = ""):
        if data.get("format") != FORMAT:
            raise ValueError(f"{source or 'profile'}: not a {FORMAT} latency table (format: {data.get('format')!r})")
        self.data, self.source = data, source
        self.space = data.get("space", "tpsr")
        self.n = int(data["n_feats"])
        self.h, self.w = (int(v) for v in data["input_size"])
        self.scale = int(data["scale"])
        self.entries = {k: float(v["median_ms"]) for k, v in data["entries"].items()}
        lay = data["skeleton"]
        missing = [k for k in [lay["head"], lay["cell_act"], *lay["up"], lay["add_mean"], lay["leaf_add"]]
                   if k not in self.entries]
        if missing:
            raise ValueError(f"{source or 'profile'}: skeleton entries missing: {', '.join(missing)}")
        self.op_ms = {name: self.entries[spec.latency_key(self.n, self.h, self.w)] for name, spec in OPS.items()
                      if spec.latency_key(self.n, self.h, self.w) in self.entries}
        self.add_ms = self.entries[lay["leaf_add"]]
        self.overhead_ms = float(data.get("overhead", {}).get("ms", 0.0))
        self.skeleton_ms = _skeleton_ms(data["entries"], lay)
        self.base_ms = self.overhead_ms + self.skeleton_ms  # the cached skeleton sum

    @classmethod
    def load(cls, path) -> "LatencyTable":
        import json

        path = Path(path)
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f), str(path))

    def save(self, path) -> Path:
        return save_lut(self.data, path)

    @property
    def threads(self) -> int:
        return int(self.data.get("runtime", {}).get("threads") or self.data.get("device", {}).get("threads") or 1)

    @property
    def device(self) -> str:
        d = self.data.get("device", {})
        return f"adb:{d['serial']}" if d.get("kind") == "adb" and d.get("serial") else d.get("kind", "host")

    def check_size(self, input_size=None, scale=None) -> None:
        if input_size is not None and tuple(int(v) for v in input_size) != (self.h, self.w):
            raise ValueError(f"{self.source or 'profile'} was measured at {self.h}x{self.w}, not "
                             f"{input_size[0]}x{input_size[1]}: build a table for that size")
        if scale is not None and int(scale) != self.scale:
            raise ValueError(f"{self.source or 'profile'} was measured for x{self.scale}, not x{scale}")

    def predict(self, genotype: Genotype) -> float:
        """Predicted latency (ms) of the network built from ``genotype``."""
        op_ms = self.op_ms
        try:
            cell = sum([op_ms[node.op] for node in genotype.nodes])
        except KeyError as e:
            raise ValueError(f"{self.source or 'profile'} has no entry for operation {e.args[0]!r}") from None
        return self.base_ms + cell + (len(genotype.leaves) - 1) * self.add_ms

    def breakdown(self, genotype: Genotype) -> list:
        """``[(label, key, ms)]``: every term of :meth:`predict`, in network order."""
        lay = self.data["skeleton"]
        rows = [("mean shift + head", lay["head"], self.entries[lay["head"]])]
        for i, node in enumerate(genotype.nodes):
            key = OPS[node.op].latency_key(self.n, self.h, self.w)
            if key not in self.entries:
                raise ValueError(f"{self.source or 'profile'} has no entry {key}")
            rows.append((f"node {i}: {node}", key, self.entries[key]))
        for leaf in genotype.leaves[1:]:
            rows.append((f"leaf sum + node {leaf}", lay["leaf_add"], self.add_ms))
        rows.append(("cell PReLU", lay["cell_act"], self.entries[lay["cell_act"]]))
        for i, key in enumerate(lay["up"]):
            rows.append((f"x2 upsampling {i + 1}", key, self.entries[key]))
        rows.append(("inverse mean shift", lay["add_mean"], self.entries[lay["add_mean"]]))
        rows.append(("fixed overhead", "overhead", self.overhead_ms))
        return rows


def save_lut(data: dict, path) -> Path:
    import json

    from tinysr.profile.record import _atomic_write

    path = Path(path)
    _atomic_write(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return path


def default_lut_name(data: dict) -> str:
    """``host-<cpu-slug>-litert-<threads>t.json`` (or ``adb-<model>-...``)."""
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
    return f"{who}-{rt.get('name', 'litert')}{delegate}-{rt.get('threads', 1)}t.json"

