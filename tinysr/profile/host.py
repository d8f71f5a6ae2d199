"""Per-operator latency of a .tflite or .onnx model on this machine (``tinysr profile --device host``).

**ONNX Runtime.** The session runs with ``SessionOptions.enable_profiling``; ORT writes a Chrome
trace (JSON) whose ``cat == "Node"`` events named ``<node>_kernel_time`` carry the node's op
(``args.op_name``), its output shapes (``args.output_type_shape``, when present) and its duration
(``dur``, microseconds). Every node's events of the steady-state runs (the last ``runs`` calls) are
summarized by their median; fence events and the first inference and warm-up runs are left out.

**LiteRT.** The Python ``Interpreter`` of ai-edge-litert 2.3 has no profiler hook: its constructor
offers ``experimental_op_resolver_type`` (AUTO / BUILTIN: XNNPACK applied by default;
BUILTIN_WITHOUT_DEFAULT_DELEGATES: the builtin kernels), ``experimental_preserve_all_tensors``
and ``experimental_force_delegate_node_profiling`` (only meaningful with a C++ profiler installed,
which Python cannot do); the wrapper exposes no profiler either. So each operator is timed as its
own *single-op model*: the flatbuffer is sliced per operator (:func:`tinysr.export.flatbuffer.slice_op`: one subgraph with
that operator, its activation inputs as graph inputs, its constant tensors and their buffers
kept) and that model is run in its own Interpreter with the same threads and delegate. The
profile's notes say so and compare the sum of the per-op medians with the whole-model median
(single-op models see warm caches and pay one invoke each; the whole model may fuse across
operators).

Whole-model timings (both runtimes) are measured in Python with ``time.perf_counter`` by one
engine, :func:`time_calls` (any zero-argument callables, timed in interleaved rounds; the latency
tables and their validation use it too): ``init_ms`` (session / Interpreter construction +
``allocate_tensors``), ``first_inference_ms``, ``warmup_avg_ms`` (the ``warmup`` runs after the
first), then ``median_ms``, ``p90_ms`` and ``avg_ms`` of ``runs`` steady-state runs. Inputs are
random (uniform [0, 1) floats, or random integers for integer inputs); dynamic dimensions are set
from ``input_size`` (batch 1).
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinysr.export.flatbuffer import num_ops, op_rows, slice_op
from tinysr.profile.record import OpRecord, Profile

HOST_DELEGATES = ("cpu", "xnnpack")
RUNTIMES = ("litert", "onnxruntime")


# ------------------------------------------------------------------------------ device
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        for key in ("model name", "Model", "Hardware", "cpu model", "uarch"):
            m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
            if m and m.group(1).strip():
                return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_slug(model: str | None = None) -> str:
    """A file-name slug of the CPU model, e.g. ``amd-epyc`` for ``AMD EPYC``."""
    model = model or cpu_model()
    model = re.sub(r"\((R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|@.*$|\d+-Core", " ", model)
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return slug[:40].strip("-") or "cpu"


def host_device_info(threads: int | None = None) -> dict:
    info = {"kind": "host", "cpu": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}"}
    if threads is not None:
        info["threads"] = int(threads)
    return info


# ------------------------------------------------------------------------------ timing
@dataclass
class Timing:
    """Timings of one callable (session / interpreter), milliseconds.

    ``first_ms``: the first call; ``warmup_ms``: the warm-up calls after it; ``times_ms``: the
    timed steady-state calls (``rounds_ms``: the same, per round); ``init_ms``: building the
    session / interpreter, when timed.
    """

    first_ms: float
    warmup_ms: list = field(default_factory=list)
    times_ms: list = field(default_factory=list)
    init_ms: float | None = None
    #: the timed calls of each round the callable took part in (one list per round; ``times_ms`` pools them)
    rounds_ms: list = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.times_ms))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.times_ms, 90))

    def summary(self) -> dict:
        return {"init_ms": self.init_ms, "first_inference_ms": self.first_ms,
                "warmup_avg_ms": float(np.mean(self.warmup_ms)) if self.warmup_ms else None,
                "median_ms": self.median_ms, "p90_ms": self.p90_ms, "avg_ms": float(np.mean(self.times_ms)),
                "runs": len(self.times_ms)}


#: Clocks the engine can time with: wall time, or the CPU time of the calling thread. Thread CPU
#: time leaves out the time the thread waits for a core (other processes on a busy machine); it is
#: the whole cost only when the work runs in the calling thread (LiteRT with 1 thread).
CLOCKS = {"wall": time.perf_counter, "thread-cpu": time.thread_time}


def _ms(fn, clock) -> float:
    t = clock()
    fn()
    return (clock() - t) * 1e3


def clock_for(name: str, threads: int = 1):
    """The clock function of ``name`` (see :data:`CLOCKS`); ``thread-cpu`` needs ``threads == 1``."""
    if name not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, not {name!r}")
    if name == "thread-cpu" and int(threads) != 1:
        raise ValueError("the thread-cpu clock times one thread: use it with threads=1 (or the wall clock)")
    return CLOCKS[name]


class Rounds:
    """Interleaved rounds over zero-argument callables, one round at a time (the engine of :func:`time_calls`).

    Building it calls every callable once (``first_ms``) and ``warmup`` more times (``warmup_ms``).
    Each :meth:`round` then calls the callables of ``order`` in turn and records their times in
    :attr:`timings` (one :class:`Timing` per callable; a new ``rounds_ms`` list per round). A caller
    that decides between rounds (e.g. to stop once measurements agree) drives it directly.
    """

    def __init__(self, calls, warmup: int = 5, clock=time.perf_counter):
        self.calls, self.clock = list(calls), clock
        self.timings = []
        for fn in self.calls:
            first = _ms(fn, clock)
            self.timings.append(Timing(first, [_ms(fn, clock) for _ in range(max(int(warmup), 0))]))
        self._last = len(self.calls) - 1  # the callable that ran last

    def round(self, runs: int, order=None, settle: bool = True) -> None:
        """One round: every callable of ``order`` (indices; default all, in order; an index may appear
        more than once, its times pooled in this round) in turn: one untimed call when another callable
        ran since its last call (``settle``), then ``runs`` timed calls."""
        order = range(len(self.calls)) if order is None else order
        opened = set()
        for i in order:
            fn, timing = self.calls[i], self.timings[i]
            if i not in opened:
                opened.add(i)
                timing.rounds_ms.append([])
            if settle and self._last != i:
                fn()
            times = [_ms(fn, self.clock) for _ in range(int(runs))]
            timing.times_ms.extend(times)
            timing.rounds_ms[-1].extend(times)
            self._last = i


def time_calls(calls, runs: int = 50, warmup: int = 5, rounds: int = 1, settle: bool = True,
               clock=time.perf_counter, progress: str | None = None) -> list:
    """Time zero-argument callables in interleaved rounds: one :class:`Timing` per callable.

    The timing engine of every host measurement (whole models, single-op models, latency-table
    entries, validation networks), through :class:`Rounds`. First each callable is called once
    (``first_ms``) and ``warmup`` more times (``warmup_ms``). Then ``rounds`` rounds call every
    callable in turn: one untimed call when other callables ran since its last call (``settle``:
    their data left the caches cold), then its share of the ``runs`` timed calls (split as evenly
    as possible over the rounds; ``runs`` in all). A passing disturbance on a shared machine thus
    spreads over all callables instead of skewing a few, and each one's median ignores it.
    ``clock``: a function returning seconds (wall time by default; see :data:`CLOCKS`). A round
    robin of one timed call per callable and round (``tinysr bench``) is ``runs=rounds,
    rounds=rounds, settle=False``. ``progress``: show a progress bar over the rounds with this
    description (None: none).
    """
    calls = list(calls)
    runs = max(int(runs), 1)
    rounds = max(min(int(rounds), runs), 1)
    per_round = [runs // rounds + (r < runs % rounds) for r in range(rounds)]
    settle = settle and len(calls) > 1
    engine = Rounds(calls, warmup, clock)
    from tqdm.auto import tqdm

    for n in tqdm(per_round, desc=progress, disable=progress is None, leave=False):
        engine.round(n, settle=settle)
    return engine.timings


def random_input(shape, dtype, rng: np.random.Generator) -> np.ndarray:
    """A random input: uniform [0, 1) floats, integers in the int8 range, or booleans."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    raise ValueError(f"cannot make a random input of type {dtype}")


def check_runtime_args(runtime: str, delegate: str | None, threads: int) -> str:
    """Validate a host runtime configuration; returns the delegate (its default when None)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if runtime == "onnxruntime":
        if delegate not in (None, "cpu"):
            raise ValueError(f"delegate {delegate!r} does not apply to ONNX Runtime on the host (CPU provider only)")
        return "cpu"
    delegate = delegate or "xnnpack"
    if delegate not in HOST_DELEGATES:
        raise ValueError(f"delegate {delegate!r} is not available for LiteRT on the host (choose "
                         f"{' or '.join(HOST_DELEGATES)}; gpu / nnapi need --device adb)")
    return delegate


def litert_interpreter(model, threads: int = 1, delegate: str = "xnnpack"):
    """An Interpreter (not yet allocated) for a .tflite path or flatbuffer bytes.

    ``delegate``: ``xnnpack`` (LiteRT's default: the XNNPACK delegate applied at construction) or
    ``cpu`` (the builtin kernels: ``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegate == "xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    kw = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    return Interpreter(num_threads=int(threads), experimental_op_resolver_type=resolver, **kw)


def litert_invokes(models, threads: int = 1, delegate: str = "xnnpack", seed: int = 0) -> tuple:
    """``(invokes, init_ms)``: an allocated Interpreter per .tflite (path or bytes), given random inputs,
    and its bound ``invoke``; ``init_ms``: building and allocating each (wall time)."""
    rng = np.random.default_rng(seed)
    invokes, inits = [], []
    for model in models:
        t = time.perf_counter()
        interp = litert_interpreter(model, threads, delegate)
        interp.allocate_tensors()
        inits.append((time.perf_counter() - t) * 1e3)
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], random_input(tuple(d["shape"]), d["dtype"], rng))
        invokes.append(interp.invoke)
    return invokes, inits


def litert_rounds(models, threads: int = 1, delegate: str = "xnnpack", warmup: int = 5, seed: int = 0,
                  clock: str = "wall") -> Rounds:
    """:class:`Rounds` over the Interpreters of several .tflite (paths or bytes), loaded and warmed up,
    for a caller that runs the rounds itself (``init_ms`` of each timing set)."""
    invokes, inits = litert_invokes(models, threads, delegate, seed)
    engine = Rounds(invokes, warmup, clock_for(clock, threads))
    for timing, init in zip(engine.timings, inits):
        timing.init_ms = init
    return engine


def time_litert_models(models, threads: int = 1, delegate: str = "xnnpack", warmup: int = 5, runs: int = 50,
                       rounds: int = 1, seed: int = 0, clock: str = "wall") -> list:
    """Whole-model timings of several .tflite (paths or bytes), interleaved (:func:`time_calls`).

    Every Interpreter is built, allocated (``init_ms``, wall time) and given random inputs first.
    ``clock``: ``wall`` or ``thread-cpu`` (:data:`CLOCKS`).
    """
    clock_fn = clock_for(clock, threads)
    invokes, inits = litert_invokes(models, threads, delegate, seed)
    timings = time_calls(invokes, runs, warmup, rounds, clock=clock_fn)
    for timing, init in zip(timings, inits):
        timing.init_ms = init
    return timings


def time_litert(model, threads: int = 1, delegate: str = "xnnpack", warmup: int = 5, runs: int = 50,
                seed: int = 0) -> Timing:
    """Whole-model timings of a .tflite (path or bytes) in the LiteRT Interpreter."""
    return time_litert_models([model], threads, delegate, warmup, runs, 1, seed)[0]


def _ort_session(path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def _ort_feeds(session, input_size, rng) -> dict:
    feeds = {}
    for inp in session.get_inputs():
        dims = list(inp.shape)
        # Symbolic dims: batch 1; the last two (NCHW) or the middle two (NHWC, C = 3) from input_size.
        nhwc = len(dims) == 4 and dims[-1] in (1, 3, 4) and not (isinstance(dims[1], int) and dims[1] in (1, 3, 4))
        hw_axes = (1, 2) if nhwc else (len(dims) - 2, len(dims) - 1)
        shape = []
        for i, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                shape.append(d)
            elif i in hw_axes and input_size:
                shape.append(int(input_size[hw_axes.index(i)]))
            elif i == 0:
                shape.append(1)
            else:
                raise ValueError(f"input {inp.name!r} has a symbolic dimension {i} ({d!r}): pass input_size")
        dtype = _ORT_TYPES.get(inp.type)
        if dtype is None:
            raise ValueError(f"input {inp.name!r}: unsupported type {inp.type}")
        feeds[inp.name] = random_input(tuple(shape), dtype, rng)
    return feeds


def time_onnxruntime(path, threads: int = 1, warmup: int = 5, runs: int = 50, input_size=None,
                     seed: int = 0) -> Timing:
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    sess = _ort_session(path, threads)
    init = (time.perf_counter() - t) * 1e3
    feeds = _ort_feeds(sess, input_size, rng)
    timing = time_calls([lambda: sess.run(None, feeds)], runs, warmup)[0]
    timing.init_ms = init
    return timing


# ----------------------------------------------------------------------- ONNX Runtime
def parse_ort_trace(events: list, runs: int | None = None) -> list:
    """Per-node rows from an ORT profiler trace: ``[(name, op, shape, ms, calls_used)]`` in run order.

    ``ms`` is the median of the node's kernel times (robust to the odd preempted run on a busy
    machine). ``runs``: use only each node's last ``runs`` kernel events (the steady-state runs);
    all events when None.
    """
    per_node: dict = {}
    for ev in events:
        if not isinstance(ev, dict) or ev.get("cat") != "Node":
            continue
        name = str(ev.get("name", ""))
        if not name.endswith("_kernel_time"):
            continue  # fence_before / fence_after
        node = name[: -len("_kernel_time")]
        args = ev.get("args") or {}
        rec = per_node.setdefault(node, {"op": args.get("op_name", ""), "shape": "", "durs": [],
                                         "ts": ev.get("ts", 0)})
        if not rec["shape"]:
            rec["shape"] = _ort_shape(args.get("output_type_shape"))
        rec["durs"].append(float(ev.get("dur", 0.0)))
    rows = []
    for node, rec in sorted(per_node.items(), key=lambda kv: kv[1]["ts"]):
        durs = rec["durs"][-runs:] if runs else rec["durs"]
        rows.append((node, rec["op"], rec["shape"], float(np.median(durs)) / 1e3 if durs else 0.0, len(durs)))
    return rows


def _ort_shape(value) -> str:
    if not value:
        return ""
    shapes = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            for dims in item.values():
                if isinstance(dims, list):
                    shapes.append("x".join(str(d) for d in dims))
    return ", ".join(shapes)


def _with_percentages(rows: list) -> list:
    total = sum(r.per_run_ms for r in rows)
    cum = 0.0
    for r in rows:
        r.percent = 100.0 * r.per_run_ms / total if total else 0.0
        cum += r.percent
        r.cumulative_percent = cum
    return rows


def profile_onnxruntime(path, threads: int = 1, warmup: int = 5, runs: int = 50, input_size=None,
                        seed: int = 0) -> Profile:
    """Per-node profile of an .onnx model with ORT's built-in profiler (see the module notes)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="tinysr-ort-prof-") as tmp:
        t = time.perf_counter()
        sess = _ort_session(path, threads, profile_prefix=str(Path(tmp) / "ort"))
        init = (time.perf_counter() - t) * 1e3
        feeds = _ort_feeds(sess, input_size, rng)
        timing = time_calls([lambda: sess.run(None, feeds)], runs, warmup)[0]
        timing.init_ms = init
        trace = sess.end_profiling()
        events = json.loads(Path(trace).read_text())
    n_runs = len(timing.times_ms)
    rows = parse_ort_trace(events, runs=n_runs)
    ops = _with_percentages([OpRecord(type=op, name=name, output_shape=shape, avg_ms=ms)
                             for name, op, shape, ms, _ in rows])
    summary = timing.summary()
    summary["op_total_ms"] = sum(op.per_run_ms for op in ops)
    summary["nodes"] = len(ops)
    model_runs = [float(e["dur"]) / 1e3 for e in events
                  if isinstance(e, dict) and e.get("cat") == "Session" and e.get("name") == "model_run"]
    steady = model_runs[-n_runs:]
    notes = [f"per-node times: ONNX Runtime profiler (kernel time of each node, median of the {n_runs} "
             "steady-state runs; first inference and warm-up excluded)"]
    if steady:
        summary["ort_model_run_median_ms"] = float(statistics.median(steady))
        notes.append(f"sum of per-node times {summary['op_total_ms']:.3f} ms vs ORT model_run median "
                     f"{summary['ort_model_run_median_ms']:.3f} ms vs wall-clock median {timing.median_ms:.3f} ms "
                     "(the rest: ORT's per-run and per-node framework time)")
    notes.append("whole-model timings measured in Python (time.perf_counter) with the profiler on")
    import onnxruntime as ort

    runtime = {"name": "onnxruntime", "version": ort.__version__, "provider": "CPUExecutionProvider",
               "threads": int(threads), "warmup_runs": int(warmup), "num_runs": int(runs),
               "inputs": {k: list(v.shape) for k, v in feeds.items()}}
    return Profile(model=str(path), device=host_device_info(threads), runtime=runtime, ops=ops,
                   summary=summary, notes=notes)


# ------------------------------------------------------------------------------ LiteRT
def profile_litert(path, threads: int = 1, delegate: str = "xnnpack", warmup: int = 5, runs: int = 50,
                   per_op: bool = True, seed: int = 0, rounds: int = 1) -> Profile:
    """Whole-model timings of a .tflite in the Interpreter, and per-op times from single-op models.

    The whole model and its single-op models are timed together (:func:`time_litert_models`,
    ``rounds`` interleaved rounds).
    """
    path = Path(path)
    raw = path.read_bytes()
    rows = op_rows(raw) if per_op else []
    timing, *op_timings = time_litert_models([raw] + [slice_op(raw, i) for i in range(len(rows))], threads,
                                             delegate, warmup, runs, rounds, seed)
    ops, notes = [], []
    if per_op:
        for (typ, name, shape), t in zip(rows, op_timings):
            ops.append(OpRecord(type=typ, name=name, output_shape=shape, avg_ms=t.median_ms))
        _with_percentages(ops)
        total = sum(op.per_run_ms for op in ops)
        ratio = total / timing.median_ms if timing.median_ms else float("nan")
        notes.append(f"per-op times measured as single-op models (the LiteRT Python API has no op profiler): "
                     f"median of {len(timing.times_ms)} runs of each operator alone; their sum vs whole-model "
                     f"median: {total:.3f} ms vs {timing.median_ms:.3f} ms (x{ratio:.2f})")
    notes.append("whole-model timings measured in Python (time.perf_counter) around Interpreter calls")
    summary = timing.summary()
    summary["op_total_ms"] = sum(op.per_run_ms for op in ops) if ops else None
    summary["nodes"] = len(ops) if ops else num_ops(raw)
    from importlib import metadata

    runtime = {"name": "litert", "version": metadata.version("ai-edge-litert"), "threads": int(threads),
               "delegate": delegate, "warmup_runs": int(warmup), "num_runs": int(runs), "rounds": int(rounds),
               "per_op_method": "single-op models" if per_op else None}
    return Profile(model=str(path), device=host_device_info(threads), runtime=runtime, ops=ops,
                   summary=summary, notes=notes)


def runtime_for(path, runtime: str | None = None) -> str:
    if runtime:
        return runtime
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        return "litert"
    if suffix == ".onnx":
        return "onnxruntime"
    raise ValueError(f"{path}: cannot tell the runtime from the extension (use --runtime litert|onnxruntime)")


def profile_host(model_path, runtime: str | None = None, threads: int = 1, delegate: str | None = None,
                 warmup: int = 5, runs: int = 50, input_size=None, per_op: bool = True, save=None,
                 rounds: int = 1) -> Profile:
    """Profile a .tflite (LiteRT) or .onnx (ONNX Runtime) model on this machine; optionally save the JSON.

    ``rounds``: LiteRT, the whole model and its single-op models are timed in that many interleaved rounds.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model not found: {model_path}")
    runtime = runtime_for(model_path, runtime)
    delegate = check_runtime_args(runtime, delegate, threads)
    if runtime == "litert":
        profile = profile_litert(model_path, threads, delegate, warmup, runs, per_op, rounds=rounds)
    else:
        profile = profile_onnxruntime(model_path, threads, warmup, runs, input_size)
    if save:
        profile.save(save)
    return profile
