"""Test helper: build a real ``tflite.profiling.BenchmarkProfilingData`` proto from a text fixture.

No verbatim binary proto output of ``benchmark_model`` was available, so the test double of adb
(``fake_adb.py``) writes one made from the numbers of a verbatim text fixture, filled the way
upstream ``ProfileSummaryProtoFormatter::GenerateOpProfileDataFromDetail``
(``tensorflow/lite/profiling/profile_summary_formatter.cc``) fills it: microsecond int64 stats,
``count`` = calls over all runs, ``sum`` = total microseconds, ``times_called`` = calls per run,
``run_order`` = position in the Run Order table. The table rows are split on tabs here (the
tab-separated fixtures), independently of the product's parser.
"""
from __future__ import annotations

import re

from ai_edge_litert import profiling_info_pb2 as pb2


def _tables(text: str, marker: str):
    start = text.find(marker)
    if start < 0:
        return []
    block = text[start:]
    m = re.search(r"=+ Run Order =+\n[^\n]*\n(.*?)\n\s*\n", block, re.S)
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip("\n").split("\t") if c.strip()]
        rows.append(cells)
    return rows


def _runs(text: str, marker: str) -> int:
    block = text[text.find(marker):]
    return int(re.search(r"Timings \(microseconds\): count=(\d+)", block).group(1))


def _fill(model_data, rows, runs: int, has_start: bool):
    sg = model_data.subgraph_profiles.add()
    sg.subgraph_index = 0
    sg.subgraph_name = "main"
    for order, cells in enumerate(rows):
        if has_start:
            node_type, _start, first, avg, _pct, _cdf, mem, times, name = cells[:9]
        else:
            node_type, first, avg, _pct, _cdf, mem, times, name = cells[:8]
        times = int(times)
        op = sg.per_op_profiles.add()
        op.node_type = node_type
        op.name = name
        op.times_called = times
        op.run_order = order
        st = op.inference_microseconds
        avg_us = round(float(avg) * 1000)
        st.first = round(float(first) * 1000)
        st.last = avg_us
        st.avg = avg_us
        st.min = avg_us
        st.max = avg_us
        st.count = times * runs
        st.sum = avg_us * times * runs
        mk = op.mem_kb
        mk.avg = round(float(mem))
        mk.count = times * runs


def proto_from_text(text: str, model_name: str = "") -> bytes:
    """Serialized ``BenchmarkProfilingData`` carrying the text log's init and regular-run tables."""
    msg = pb2.BenchmarkProfilingData()
    msg.model_name = model_name
    has_start = "[start]" in text
    init_marker = "Profiling Info for Benchmark Initialization:"
    run_marker = "Operator-wise Profiling Info for Regular Benchmark Runs:"
    if init_marker in text:
        _fill(msg.init_profile, _tables(text, init_marker), 1, has_start)
    _fill(msg.runtime_profile, _tables(text, run_marker), _runs(text, run_marker), has_start)
    return msg.SerializeToString()
