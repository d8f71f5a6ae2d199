"""``tinysr profile`` on this machine: ONNX Runtime's profiler, LiteRT single-op models, the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest

from tinysr.export.flatbuffer import op_rows, slice_op
from tinysr.profile.host import (cpu_slug, parse_ort_trace, profile_host, time_calls, time_litert,
                                 time_litert_models)
from tinysr.profile.record import Profile

FIX = Path(__file__).resolve().parent / "fixtures" / "benchmark_model"
GENOTYPE = "conv3@in dsep3@0 se@in inv3@1 identity@0"
SIZE = (16, 16)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch

    from tinysr.export.onnx_export import export_onnx
    from tinysr.export.tflite_convert import convert_tflite
    from tinysr.models.tpsr import CellSR

    d = tmp_path_factory.mktemp("host_models")
    torch.manual_seed(0)
    model = CellSR(GENOTYPE, scale=2).eval()
    (d / "m.tflite").write_bytes(convert_tflite(model, SIZE))
    export_onnx(model, SIZE, d / "m.onnx")
    return d / "m.tflite", d / "m.onnx"


# ------------------------------------------------------------------------------ ONNX Runtime
def test_parse_ort_trace_uses_kernel_events_of_the_last_runs():
    def ev(name, dur, ts, op="Conv", shape=None):
        args = {"op_name": op}
        if shape:
            args["output_type_shape"] = [{"float": shape}]
        return {"cat": "Node", "name": name, "dur": dur, "ts": ts, "args": args}

    events = [{"cat": "Session", "name": "model_run", "dur": 999, "ts": 0}]
    for run, (a, b) in enumerate([(900, 800), (10, 20), (12, 22), (14, 24)]):
        events += [ev("conv_fence_before", 5, run * 100), ev("conv_kernel_time", a, run * 100 + 1, shape=[1, 16, 4, 4]),
                   ev("relu_kernel_time", b, run * 100 + 2, op="Relu"), ev("relu_fence_after", 7, run * 100 + 3)]
    rows = parse_ort_trace(events, runs=3)
    assert [(r[0], r[1]) for r in rows] == [("conv", "Conv"), ("relu", "Relu")]
    assert rows[0][2] == "1x16x4x4" and rows[1][2] == ""
    assert rows[0][3] == pytest.approx(0.012) and rows[1][3] == pytest.approx(0.022)  # median of the last 3, in ms
    assert rows[0][4] == rows[1][4] == 3


def test_onnxruntime_profile_rows_are_the_optimized_graph_nodes(models, tmp_path):
    import onnx
    import onnxruntime as ort

    _, onnx_path = models
    p = profile_host(onnx_path, threads=1, warmup=2, runs=10)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    nodes = [n.name for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert sorted(op.name for op in p.ops) == sorted(nodes)
    assert {"Conv", "PRelu", "DepthToSpace"} <= {op.type for op in p.ops}
    assert any(op.output_shape for op in p.ops)
    assert p.ops[-1].cumulative_percent == pytest.approx(100.0)
    s = p.summary
    assert s["runs"] == 10 and s["median_ms"] > 0 and s["p90_ms"] >= s["median_ms"] and s["init_ms"] > 0
    assert s["first_inference_ms"] > 0 and s["warmup_avg_ms"] > 0
    # nodes run one after the other (1 thread): their times add up to most of a run, never much more
    assert 0.2 * s["ort_model_run_median_ms"] <= p.op_total_ms <= 1.3 * s["ort_model_run_median_ms"] + 0.05
    assert p.runtime["name"] == "onnxruntime" and p.device["kind"] == "host" and p.device["cpu"]


# ----------------------------------------------------------------------------------- LiteRT
def test_slice_op_reproduces_every_operator(models):
    """Each single-op model computes what that operator computes inside the whole graph."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    tfl, _ = models
    raw = tfl.read_bytes()
    full = Interpreter(model_content=raw, experimental_preserve_all_tensors=True,
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    full.allocate_tensors()
    inp = full.get_input_details()[0]
    full.set_tensor(inp["index"], np.random.default_rng(0).random(inp["shape"], dtype=np.float32))
    full.invoke()
    details = full._get_ops_details()
    names = {t["index"]: t["name"] for t in full.get_tensor_details()}
    assert len(details) == len(op_rows(raw)) > 5
    for i, d in enumerate(details):
        one = Interpreter(model_content=slice_op(raw, i),
                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        one.allocate_tensors()
        by_name = {names[t]: t for t in d["inputs"] if t >= 0}
        ins = one.get_input_details()
        assert ins and all(det["name"] in by_name for det in ins), d["op_name"]
        for det in ins:  # the op's activation inputs, now graph inputs (same tensor names)
            one.set_tensor(det["index"], full.get_tensor(by_name[det["name"]]))
        one.invoke()
        out = one.get_tensor(one.get_output_details()[0]["index"])
        np.testing.assert_allclose(out, full.get_tensor(d["outputs"][0]), rtol=1e-5, atol=1e-5, err_msg=d["op_name"])


def test_litert_profile_rows_are_the_graph_ops(models):
    from tinysr.export.flatbuffer import op_histogram

    tfl, _ = models
    p = profile_host(tfl, threads=1, warmup=2, runs=10)
    rows = op_rows(tfl)
    assert [op.type for op in p.ops] == [t for t, _, _ in rows]
    assert len(p.ops) == sum(op_histogram(tfl).values())
    assert all(op.avg_ms > 0 and op.output_shape for op in p.ops)
    assert p.ops[-1].cumulative_percent == pytest.approx(100.0)
    assert any("single-op models" in n and "whole-model median" in n for n in p.notes)
    s = p.summary
    assert s["runs"] == 10 and s["median_ms"] > 0 and s["p90_ms"] >= s["median_ms"]
    # each op alone pays one invoke: the sum exceeds a whole run, but by a bounded factor
    assert 0.3 * s["median_ms"] <= p.op_total_ms <= 10 * s["median_ms"]
    assert p.runtime["delegate"] == "xnnpack" and p.runtime["threads"] == 1


def test_litert_builtin_kernels_and_errors(models):
    tfl, onnx_path = models
    t = time_litert(tfl.read_bytes(), threads=1, delegate="cpu", warmup=1, runs=3)
    assert len(t.times_ms) == 3 and t.median_ms > 0
    with pytest.raises(ValueError, match="gpu"):
        profile_host(tfl, delegate="gpu")
    with pytest.raises(ValueError, match="ONNX Runtime"):
        profile_host(onnx_path, delegate="xnnpack")
    with pytest.raises(FileNotFoundError):
        profile_host(tfl.with_name("missing.tflite"))


# ------------------------------------------------------------------------- the timing engine
def test_time_calls_interleaves_rounds_over_any_callables():
    log = []

    def call(name):
        return lambda: log.append(name)

    timings = time_calls([call("a"), call("b"), call("c")], runs=7, warmup=2, rounds=3)
    # warm-up: every callable once (first) + 2 times, before any timed run
    assert log[:9] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    # rounds of 3, 2, 2 timed runs, each preceded by one untimed settling call
    rounds = log[9:]
    assert rounds == (["a"] * 4 + ["b"] * 4 + ["c"] * 4) + (["a"] * 3 + ["b"] * 3 + ["c"] * 3) * 2
    for t in timings:
        assert len(t.times_ms) == 7 and len(t.warmup_ms) == 2 and t.first_ms >= 0 and t.init_ms is None
        assert t.median_ms >= 0 and t.p90_ms >= t.median_ms
    log.clear()
    (only,) = time_calls([call("x")], runs=5, warmup=0, rounds=2)  # one callable: nothing to settle
    assert log == ["x"] * 6 and len(only.times_ms) == 5
    log.clear()
    time_calls([call("a"), call("b")], runs=2, warmup=0, rounds=9, settle=False)  # rounds capped at runs
    assert log == ["a", "b", "a", "b", "a", "b"]


def test_time_calls_reports_each_callables_own_time():
    import time

    fast, slow = (lambda: time.sleep(0.001)), (lambda: time.sleep(0.02))
    t_fast, t_slow = time_calls([fast, slow], runs=6, warmup=1, rounds=2)
    assert t_slow.median_ms > 10 * t_fast.median_ms
    assert 18 <= t_slow.median_ms < 200


def test_time_calls_clocks():
    import time

    from tinysr.profile.host import clock_for
    from tinysr.profile.lut import Timer

    ticks = iter(range(0, 10_000, 2))  # a fake clock: every reading 2 s after the last
    (t,) = time_calls([lambda: None], runs=3, warmup=1, clock=lambda: next(ticks))
    assert t.first_ms == t.warmup_ms[0] == 2000.0 and t.times_ms == [2000.0] * 3
    # the thread's CPU time leaves out waiting (here: sleeping), wall time does not
    wall, cpu = (time_calls([lambda: time.sleep(0.02)], runs=3, warmup=0, clock=clock_for(c))[0].median_ms
                 for c in ("wall", "thread-cpu"))
    assert wall >= 19 and cpu < 5
    with pytest.raises(ValueError, match="threads=1"):
        clock_for("thread-cpu", 2)
    with pytest.raises(ValueError, match="clock must be"):
        clock_for("tsc")
    with pytest.raises(ValueError, match="wall-clock"):
        Timer("adb:X", clock="thread-cpu")


def test_rounds_engine_records_each_round():
    from tinysr.profile.host import Rounds

    ticks = iter(range(0, 10_000))  # a fake clock: every reading 1 s after the last
    calls = []
    engine = Rounds([lambda: calls.append("a"), lambda: calls.append("b")], warmup=1, clock=lambda: next(ticks))
    assert calls == ["a", "a", "b", "b"] and engine.timings[0].first_ms == 1000.0
    engine.round(2, [0, 1, 0])  # the reference 0 opens and closes the round: its times pooled in one round
    engine.round(1, [0, 1, 0])
    a, b = engine.timings
    assert [len(r) for r in a.rounds_ms] == [4, 2] and [len(r) for r in b.rounds_ms] == [2, 1]
    assert len(a.times_ms) == 6 and len(b.times_ms) == 3
    # an untimed settling call whenever another callable ran since (not for a right after a)
    assert calls[4:] == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] + ["b"] * 2 + ["a"] * 2
    (t,) = time_calls([lambda: None], runs=5, warmup=0, rounds=2)
    assert [len(r) for r in t.rounds_ms] == [3, 2] and sum(t.rounds_ms, []) == t.times_ms


def test_litert_timing_goes_through_the_one_engine(models, monkeypatch):
    """time_litert, profile_litert and the latency tables' Timer all time with time_calls."""
    from tinysr.profile import host
    from tinysr.profile.lut import Timer

    tfl, _ = models
    raw = tfl.read_bytes()
    seen = []
    real = host.time_calls

    def spy(calls, runs=50, warmup=5, rounds=1, settle=True, **kw):
        seen.append((len(calls), runs, warmup, rounds))
        return real(calls, runs, warmup, rounds, settle, **kw)

    monkeypatch.setattr(host, "time_calls", spy)
    t = time_litert(raw, warmup=1, runs=3)
    assert seen[-1] == (1, 3, 1, 1) and len(t.times_ms) == 3 and t.init_ms > 0
    p = profile_host(tfl, warmup=1, runs=4, rounds=2)
    assert seen[-1] == (1 + len(op_rows(raw)), 4, 1, 2) and p.summary["runs"] == 4 and p.runtime["rounds"] == 2
    res = Timer("host", warmup=1, runs=4).measure([raw, raw], rounds=2)
    assert seen[-1] == (2, 4, 1, 2) and [r[2] for r in res] == [4, 4]
    two = time_litert_models([raw, slice_op(raw, 0)], warmup=0, runs=2)
    assert seen[-1] == (2, 2, 0, 1) and all(t.init_ms > 0 for t in two)


def test_profile_modules_import_no_private_names_from_each_other():
    import ast

    import tinysr.profile as pkg

    bad = []
    for f in sorted(Path(pkg.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                bad += [f"{f.name}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad


def test_cpu_slug():
    assert cpu_slug("AMD EPYC") == "amd-epyc"
    assert cpu_slug("Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz") == "intel-xeon-e5-2690-v4"
    assert cpu_slug("AMD Ryzen 9 5950X 16-Core Processor") == "amd-ryzen-9-5950x"


# -------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("which", ["tflite", "onnx"])
def test_cli_profile_writes_json_and_png(models, tmp_path, capsys, which):
    from tinysr.cli.main import main

    path = models[0] if which == "tflite" else models[1]
    out, png = tmp_path / "prof.json", tmp_path / "prof.png"
    rc = main(["profile", str(path), "--threads", "1", "--warmup", "1", "--runs", "5", "--save", str(out),
               "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "summary: init" in text and "median" in text and "p90" in text
    p = Profile.load(out)
    assert p.ops and p.summary["runs"] == 5
    assert p.runtime["name"] == ("litert" if which == "tflite" else "onnxruntime")
    assert png.read_bytes()[:8] == PNG


@pytest.mark.parametrize("name", sorted(p.name for p in FIX.glob("*.txt")))
def test_cli_profile_from_output(tmp_path, capsys, name):
    from tinysr.cli.main import main
    from tinysr.profile.benchmark_output import profile_from_output

    out, png = tmp_path / "p.json", tmp_path / "p.png"
    assert main(["profile", "--from-output", str(FIX / name), "--save", str(out), "--plot", str(png)]) == 0
    assert "operators:" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert len(saved["ops"]) == len(profile_from_output(FIX / name).ops) > 0
    assert png.read_bytes()[:8] == PNG


def test_cli_profile_errors_are_one_line(models, capsys):
    from tinysr.cli.main import main

    tfl, _ = models
    assert main(["profile"]) == 2
    assert main(["profile", str(tfl), "--delegate", "nnapi"]) == 2
    assert main(["profile", str(tfl), "--device", "phone"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("tinysr: error: ") for line in err)


# ----------------------------------------------------------- --device adb (adb test double)
def test_cli_profile_adb_several_serials(models, tmp_path, monkeypatch, capsys, fake_adb):
    from tinysr.cli.main import main

    monkeypatch.setenv("FAKE_ADB_SERIALS", "AAA111,BBB222")
    tfl, _ = models
    out = tmp_path / "out"
    rc = main(["profile", str(tfl), "--device", "adb:AAA111,BBB222", "--benchmark-binary", str(fake_adb.binary),
               "--save", str(out / "p.json"), "--plot", str(out / "p.png")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "=== device AAA111 ===" in text and "=== device BBB222 ===" in text
    for serial in ("AAA111", "BBB222"):
        p = Profile.load(out / f"p.{serial}.json")
        assert p.device["serial"] == serial and p.runtime["delegate"] == "cpu" and len(p.ops) == 31
        assert (out / f"p.{serial}.png").read_bytes()[:8] == PNG


def test_measure_latency_over_adb(models, fake_adb):
    from tinysr.profile.predict import measure_latency

    tfl, _ = models
    # the double plays a fixture log (avg 2950.34 ms, no median line): that is what comes back
    assert measure_latency(tfl, device="adb:FAKE0001", benchmark_binary=fake_adb.binary, runs=5) == pytest.approx(2950.34)
