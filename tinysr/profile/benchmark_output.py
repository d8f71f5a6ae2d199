"""Read TFLite ``benchmark_model`` output into a :class:`~tinysr.profile.record.Profile`.

Two forms are understood, and :func:`profile_from_output` tells them apart by content:

**Text** (what the binary logs; ``--enable_op_profiling=true``). The per-operator table is the
one after ``Operator-wise Profiling Info for Regular Benchmark Runs:``, written by
``tensorflow/lite/profiling/profile_summarizer.cc`` through ``tensorflow/core/util/
stats_calculator.cc``: a ``===== Run Order =====`` section (one row per executed node, in
execution order), ``===== Top by Computation Time =====``, ``Number of nodes executed: N``,
``===== Summary by node type =====`` and ``Timings (microseconds): count=... avg=...`` (the
profiled total per inference). Columns are read from the bracketed header, so both layouts seen
in the wild parse: older binaries print ``[node type] [start] [first] [avg ms] [%] [cdf%]
[mem KB] [times called] [Name]`` tab-separated without a log prefix; newer ones drop
``[start]``, prefix log lines with ``INFO:`` and may pad with spaces. Whole-model timings come
from ``Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference
(avg): ...`` (older: ``Average inference timings in us: Warmup: ..., Init: ..., no stats:
...``), ``Initialized session in X ms.`` and the ``count=N first=... curr=... min=... max=...
avg=... std=...`` line of the regular runs (newest binaries add ``p5= median= p95=``). With
``--enable_op_profiling=false`` (the binary's default) the log ends after those timing lines:
no profiler is installed and no table is printed; :func:`parse_summary` reads such a log, and
its numbers are free of the profiler's overhead, unlike the same lines of a profiled run.

**Proto** (``--op_profiling_output_mode=proto --op_profiling_output_file=FILE``): a serialized
``tflite.profiling.BenchmarkProfilingData`` from upstream
``tensorflow/lite/profiling/proto/profiling_info.proto``, written by
``ProfileSummaryProtoFormatter`` (``tensorflow/lite/profiling/profile_summary_formatter.cc``).
The generated module ships with ``ai-edge-litert`` as ``ai_edge_litert.profiling_info_pb2``.
Fields relied on (name = number)::

    BenchmarkProfilingData: model_name = 1 (string), init_profile = 2, runtime_profile = 3
                            (ModelProfilingData)
    ModelProfilingData:     subgraph_profiles = 1 (repeated SubGraphProfilingData),
                            delegate_profiles = 2 (repeated DelegateProfilingData)
    SubGraphProfilingData:  subgraph_name = 1, subgraph_index = 2,
                            per_op_profiles = 3 (repeated OpProfileData)
    OpProfileData:          node_type = 1, inference_microseconds = 2 (OpProfilingStat),
                            mem_kb = 3, times_called = 4 (calls per run), name = 5,
                            run_order = 6
    OpProfilingStat:        first = 1, last = 2, avg = 3, stddev = 4, variance = 5, min = 6,
                            max = 7, sum = 8, count = 9   (int64 microseconds; count = calls)

Per-call average is ``sum / count``; runs are ``count / times_called``; the cost per inference
is ``sum / runs``. The proto carries no whole-model timings: pass the run's log text to
:func:`parse_proto` for those. ``DebugString`` text form (what the binary logs when it cannot
open the output file) is read too.
"""
from __future__ import annotations

import re
from pathlib import Path

from tinysr.profile.record import OpRecord, Profile

REGULAR_MARKER = "Operator-wise Profiling Info for Regular Benchmark Runs"
INIT_MARKER = "Profiling Info for Benchmark Initialization"

#: Node types under which benchmark_model reports a whole GPU-delegated partition as one row.
GPU_DELEGATE_TYPES = {"TfLiteGpuDelegateV2", "TfLiteGpuDelegate", "DELEGATE"}
GPU_NOTE = ("GPU delegate: benchmark_model reports each delegated partition as a single row "
            "(TfLiteGpuDelegateV2 / DELEGATE), so per-op GPU latency is not measured here; it must "
            "come from timing sub-models (prefixes of the network) on the GPU.")
P90_NOTE = "p90_ms: benchmark_model does not report a 90th percentile (left empty)."

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-nan"
_LOG_PREFIXES = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[ T][\d:.]+: [IWEF] \S+:\d+\] |[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] |"
    r"(?:INFO|WARNING|ERROR|VERBOSE|DEBUG): )")
_COLUMN_KEYS = {"node type": "type", "start": "start", "first": "first", "avg ms": "avg", "%": "pct",
                "cdf%": "cdf", "mem kb": "mem", "times called": "times", "name": "name"}


# ---------------------------------------------------------------------------------- text
def _clean(line: str) -> str:
    line = line.strip()
    for _ in range(2):  # "INFO: " after a timestamp prefix
        line = _LOG_PREFIXES.sub("", line, count=1)
    return line


def _row_regex(header: str):
    cols = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", header)]
    if not cols or cols[0] != "node type":
        return None, cols
    parts = [r"^(?P<type>.*?)"]
    for i, col in enumerate(cols[1:], start=1):
        key = _COLUMN_KEYS.get(col, f"c{i}")
        if key == "name":
            parts.append(r"(?:\s+(?P<name>.*?))?\s*$")
            break
        pct = "%" if key in ("pct", "cdf") else ""
        parts.append(rf"\s+(?P<{key}>{_NUM}){pct}")
    else:
        parts.append(r"\s*$")
    return re.compile("".join(parts)), cols


def _kv_numbers(line: str) -> dict:
    return {k: float(v) for k, v in re.findall(rf"(\w+)=({_NUM})", line)}


def _regular_block(lines: list) -> list:
    """The lines of the regular-runs profile (after the init profile, if any)."""
    for i, line in enumerate(lines):
        if REGULAR_MARKER in line:
            return lines[i + 1:]
    for i, line in enumerate(lines):
        if INIT_MARKER in line:  # init profile only: nothing of the regular runs
            for j in range(i + 1, len(lines)):
                if lines[j].endswith("nodes observed"):
                    return lines[j + 1:]
            return []
    return lines


def parse_tables(text: str) -> dict:
    """The regular-runs profile of a text log, as plain data.

    Returns ``{"ops": [OpRecord], "columns": [...], "nodes": N|None, "observed": N|None,
    "op_total_ms": float|None, "by_type": [dict], "sections": [str]}``. ``ops`` are the Run Order
    rows of every section (one per subgraph; ``Delegate internal`` sections are skipped and
    named in ``sections``).
    """
    lines = [_clean(l) for l in text.splitlines()]
    block = _regular_block(lines)
    out = {"ops": [], "columns": [], "nodes": None, "observed": None, "op_total_ms": None,
           "by_type": [], "sections": []}
    section = "primary"
    i = 0
    while i < len(block):
        line = block[i]
        if line.startswith("Primary graph") or line.startswith("Subgraph (index:"):
            if line.endswith(":"):
                section = line.rstrip(":")
        elif line.startswith("Delegate internal"):
            section = "delegate internal"
        elif re.match(r"^=+ Run Order =+$", line):
            i += 1
            while i < len(block) and not block[i]:
                i += 1
            regex, cols = _row_regex(block[i]) if i < len(block) else (None, [])
            out["columns"] = out["columns"] or cols
            if section not in out["sections"]:
                out["sections"].append(section)
            i += 1
            while i < len(block) and block[i] and not block[i].startswith("="):
                m = regex.match(block[i]) if regex else None
                if m and section != "delegate internal":
                    g = m.groupdict()
                    out["ops"].append(OpRecord(
                        type=g["type"].strip(), name=(g.get("name") or "").strip(),
                        avg_ms=float(g.get("avg") or 0.0), percent=float(g.get("pct") or 0.0),
                        cumulative_percent=float(g.get("cdf") or 0.0),
                        times_called=int(float(g.get("times") or 1))))
                i += 1
            continue
        elif re.match(r"^=+ Summary by node type =+$", line):
            i += 2  # header
            while i < len(block) and block[i] and not block[i].startswith("="):
                m = re.match(rf"^(?P<type>.*?)\s+(?P<count>\d+)\s+(?P<avg>{_NUM})\s+(?P<pct>{_NUM})%"
                             rf"\s+(?P<cdf>{_NUM})%(?:\s+(?P<mem>{_NUM}))?\s+(?P<times>\d+)\s*$", block[i])
                if m and section != "delegate internal":
                    out["by_type"].append({"type": m["type"].strip(), "count": int(m["count"]),
                                           "avg_ms": float(m["avg"]), "percent": float(m["pct"]),
                                           "times_called": int(m["times"])})
                i += 1
            continue
        elif line.startswith("Number of nodes executed:"):
            if section != "delegate internal":
                out["nodes"] = (out["nodes"] or 0) + int(line.split(":")[1])
        elif line.startswith("Timings (microseconds):") and section != "delegate internal":
            kv = _kv_numbers(line)
            total = kv.get("avg", kv.get("curr"))
            if total is not None:
                out["op_total_ms"] = (out["op_total_ms"] or 0.0) + total / 1000.0
        elif re.match(r"^\d+ nodes observed$", line) and section != "delegate internal":
            out["observed"] = (out["observed"] or 0) + int(line.split()[0])
        i += 1
    return out


def parse_summary(text: str) -> dict:
    """Whole-model timings of a log: ``init_ms``, ``first_inference_ms``, ``warmup_avg_ms``,
    ``avg_ms``, ``median_ms``, ``p90_ms`` (never printed: ``None``), ``runs``, and ``std_ms``,
    ``min_ms``, ``max_ms`` of the regular runs (``None`` where the log lacks them)."""
    lines = [_clean(l) for l in text.splitlines()]
    s = dict.fromkeys(("init_ms", "first_inference_ms", "warmup_avg_ms", "median_ms", "p90_ms", "avg_ms",
                       "runs", "std_ms", "min_ms", "max_ms"))
    timings_at = None
    for i, line in enumerate(lines):
        m = re.search(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                      rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})", line)
        if m:
            s["init_ms"], s["first_inference_ms"], s["warmup_avg_ms"], s["avg_ms"] = (
                float(v) / 1000.0 for v in m.groups())
            timings_at = i
            continue
        m = re.search(rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), "
                      rf"(?:no stats|Inference): ({_NUM})", line)
        if m:
            s["warmup_avg_ms"], s["init_ms"], s["avg_ms"] = (float(v) / 1000.0 for v in m.groups())
            timings_at = i
    if s["init_ms"] is None:
        for line in lines:
            m = re.search(rf"Initialized session in ({_NUM}) ?ms", line)
            if m:
                s["init_ms"] = float(m.group(1))
    end = timings_at if timings_at is not None else len(lines)
    for line in lines[:end]:
        if REGULAR_MARKER in line or INIT_MARKER in line:
            break
        if line.startswith("count="):
            kv = _kv_numbers(line)
            s["runs"] = int(kv["count"])
            if "median" in kv:
                s["median_ms"] = kv["median"] / 1000.0
            for key in ("std", "min", "max"):
                s[f"{key}_ms"] = kv[key] / 1000.0 if key in kv else None
            if s["avg_ms"] is None or timings_at is None:
                s["avg_ms"] = kv["avg"] / 1000.0 if "avg" in kv else kv.get("curr", 0.0) / 1000.0
    return s


def parse_runtime(text: str) -> dict:
    """What the log says about the run configuration (graph, threads, delegate)."""
    params = {}
    for line in (_clean(l) for l in text.splitlines()):
        m = re.match(r"^([A-Za-z#][\w #()/.-]*?)\s*:\s*\[(.*)\]$", line)
        if m:
            params.setdefault(m.group(1).strip().lower(), m.group(2))
    rt = {"tool": "benchmark_model"}
    if params.get("graph"):
        rt["graph"] = params["graph"]
    threads = params.get("#threads used for cpu inference") or params.get("num threads")
    if threads not in (None, ""):
        rt["threads"] = int(threads) if threads.lstrip("-").isdigit() else threads
    low = text.lower()
    if params.get("use gpu") in ("1", "true") or "applied gpu delegate" in low or "delegate for gpu" in low:
        rt["delegate"] = "gpu"
    elif params.get("use nnapi") in ("1", "true") or "nnapi delegate created" in low:
        rt["delegate"] = "nnapi"
    elif "xnnpack delegate" in low and params.get("use xnnpack") not in ("0", "false"):
        rt["delegate"] = "xnnpack"
    return rt


def _delegate_notes(ops, runtime) -> list:
    notes = []
    types = {op.type for op in ops}
    if runtime.get("delegate") == "gpu" or types & GPU_DELEGATE_TYPES:
        notes.append(GPU_NOTE)
    others = sorted(t for t in types - GPU_DELEGATE_TYPES if re.match(r"^TfLite\w*Delegate", t))
    for t in others:
        notes.append(f"rows of type {t} each stand for a whole delegated partition, not one op")
    return notes


def parse_text(text: str, model: str = "") -> Profile:
    """A :class:`Profile` from a ``benchmark_model`` text log (ops may be empty if profiling was off)."""
    tables = parse_tables(text)
    runtime = parse_runtime(text)
    summary = parse_summary(text)
    ops = tables["ops"]
    summary["op_total_ms"] = tables["op_total_ms"]
    summary["nodes"] = tables["nodes"] if tables["nodes"] is not None else tables["observed"]
    notes = []
    if not ops:
        notes.append("no per-operator table in the output (was --enable_op_profiling=true given?)")
    notes += _delegate_notes(ops, runtime)
    extra = [s for s in tables["sections"] if s != "primary"]
    if extra:
        notes.append("sections: " + "; ".join(tables["sections"]) + " (delegate-internal rows skipped)")
    notes.append(P90_NOTE)
    return Profile(model=model or runtime.get("graph", ""), runtime=runtime, ops=ops, summary=summary,
                   notes=notes)


# --------------------------------------------------------------------------------- proto
def _pb2():
    try:
        from ai_edge_litert import profiling_info_pb2
    except ImportError as e:  # pragma: no cover - ai-edge-litert is a dependency
        raise RuntimeError("reading benchmark_model proto output needs ai-edge-litert "
                           f"(ai_edge_litert.profiling_info_pb2): {e}") from None
    return profiling_info_pb2


def decode_proto(data: bytes):
    """``BenchmarkProfilingData`` from serialized bytes or its text (DebugString) form."""
    pb2 = _pb2()
    msg = pb2.BenchmarkProfilingData()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and re.search(r"^\s*(runtime_profile|init_profile|model_name)\s*[{:]", text, re.M):
        from google.protobuf import text_format
        try:
            text_format.Parse(text, msg)
            return msg
        except text_format.ParseError as e:
            raise ValueError(f"not a BenchmarkProfilingData text proto: {e}") from None
    from google.protobuf.message import DecodeError
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise ValueError(f"not a BenchmarkProfilingData proto: {e}") from None
    return msg


def _op_from_proto(op):
    st = op.inference_microseconds
    calls = max(int(op.times_called), 1)
    count = int(st.count)
    per_call_us = st.sum / count if count else float(st.avg)
    runs = count // calls if count else 0
    per_run_us = st.sum / runs if runs else per_call_us * calls
    rec = OpRecord(type=op.node_type, name=op.name, avg_ms=per_call_us / 1000.0, times_called=calls)
    return rec, per_run_us, runs


def parse_proto(data: bytes, model: str = "", log_text: str | None = None) -> Profile:
    """A :class:`Profile` from ``--op_profiling_output_mode=proto`` output.

    ``log_text`` (the run's stdout/stderr) supplies the whole-model timings and run settings.
    Raises ``ValueError`` for bytes that are not a ``BenchmarkProfilingData`` with a runtime profile.
    """
    msg = decode_proto(data)
    if not msg.HasField("runtime_profile") or not msg.runtime_profile.subgraph_profiles:
        raise ValueError("BenchmarkProfilingData has no runtime_profile subgraph (was op profiling on?)")
    rows, runs_seen = [], []
    subgraphs = list(msg.runtime_profile.subgraph_profiles)
    for sg in subgraphs:
        for op in sorted(sg.per_op_profiles, key=lambda o: o.run_order):
            rec, per_run_us, runs = _op_from_proto(op)
            rows.append((rec, per_run_us))
            if runs:
                runs_seen.append(runs)
    total_us = sum(us for _, us in rows)
    cum = 0.0
    for rec, us in rows:
        rec.percent = 100.0 * us / total_us if total_us else 0.0
        cum += rec.percent
        rec.cumulative_percent = cum
    ops = [rec for rec, _ in rows]
    runtime = parse_runtime(log_text) if log_text else {"tool": "benchmark_model"}
    summary = parse_summary(log_text) if log_text else {}
    summary["op_total_ms"] = total_us / 1000.0
    summary["nodes"] = len(ops)
    if summary.get("runs") is None and runs_seen:
        summary["runs"] = max(set(runs_seen), key=runs_seen.count)
    notes = _delegate_notes(ops, runtime)
    if len(subgraphs) > 1:
        notes.append(f"{len(subgraphs)} subgraphs: rows of all subgraphs listed in order")
    if msg.runtime_profile.delegate_profiles:
        notes.append("delegate-internal profiles present in the proto; not listed")
    notes.append(P90_NOTE)
    return Profile(model=model or msg.model_name or runtime.get("graph", ""), runtime=runtime, ops=ops,
                   summary=summary, notes=notes)


# -------------------------------------------------------------------------------- entry
def looks_like_text_log(data: bytes) -> bool:
    """True for a ``benchmark_model`` text log (as opposed to a proto file)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if re.search(r"^\s*(runtime_profile|init_profile|model_name)\s*[{:]", text, re.M):
        return False
    return bool(re.search(r"Run Order|Inference timings in us|inference timings|^\s*(INFO: )?count=\d+",
                          text, re.M))


def profile_from_output(path, model: str = "") -> Profile:
    """Read a saved ``benchmark_model`` output: a text log or a proto file (told apart by content).

    Backs ``tinysr profile --from-output FILE``. Raises ``ValueError`` with a one-line reason when
    the file is neither.
    """
    path = Path(path)
    data = path.read_bytes()
    if looks_like_text_log(data):
        profile = parse_text(data.decode("utf-8"), model=model)
        if not profile.ops and profile.summary.get("avg_ms") is None:
            raise ValueError(f"{path}: no Run Order table and no timing lines in this benchmark_model log")
    else:
        try:
            profile = parse_proto(data, model=model)
        except ValueError as e:
            raise ValueError(f"{path}: neither a benchmark_model text log nor a profiling proto ({e})") from None
    profile.runtime.setdefault("source", str(path))
    return profile
