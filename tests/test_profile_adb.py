"""``tinysr.profile``: benchmark_model output parsers (verbatim fixtures) and the adb path (test double)."""
import os
import re
import sys
from pathlib import Path

import pytest

from tinysr.profile.adb import DeviceError, elf_abi, parse_devices, profile_on_device, profile_on_devices
from tinysr.profile.benchmark_output import (GPU_NOTE, parse_proto, parse_tables, parse_text,
                                             profile_from_output)
from tinysr.profile.record import OpRecord, Profile, plot_ops

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures" / "benchmark_model"
FIXTURES = ["mobilenet_v1_riscv64_cpu.txt", "efficientdet_lite0_x86_64_xnnpack.txt", "mnv3_seg_float_android_gpu.txt"]
sys.path.insert(0, str(HERE / "doubles"))
from profiling_proto import proto_from_text  # noqa: E402

from conftest import elf_header  # noqa: E402


def text(name):
    return (FIX / name).read_text()


def benchmark_runs(calls):
    """The ``benchmark_model`` shell commands in an adb call log, in order."""
    return [c[-1] for c in calls if "shell" in c and "--graph=" in c[-1]]


# ------------------------------------------------------------------------------ text parser
@pytest.mark.parametrize("name", FIXTURES)
def test_text_invariants(name):
    t = text(name)
    tables = parse_tables(t)
    p = parse_text(t)
    # one Run Order row per executed node
    assert len(p.ops) == tables["nodes"] == tables["observed"] > 0
    # per-op cost per inference sums to the table's reported total (rounding of 3-decimal avgs)
    tol = 0.0006 * sum(op.times_called for op in p.ops) + 1e-3 * tables["op_total_ms"]
    assert abs(p.op_total_ms - tables["op_total_ms"]) <= tol
    assert abs(sum(op.percent for op in p.ops) - 100.0) < 0.05 * len(p.ops) ** 0.5 + 0.01
    assert p.ops[-1].cumulative_percent == pytest.approx(100.0, abs=0.01)
    # rows agree with the "Summary by node type" section
    by_type = {r["type"]: r for r in tables["by_type"]}
    assert set(by_type) == {t for t, *_ in p.by_type()}
    for typ, count, ms, calls in p.by_type():
        assert by_type[typ]["count"] == count and by_type[typ]["times_called"] == calls
        assert by_type[typ]["avg_ms"] == pytest.approx(ms, abs=0.0006 * calls + 0.002)
    assert set(p.summary) >= {"init_ms", "first_inference_ms", "warmup_avg_ms", "median_ms", "p90_ms",
                              "avg_ms", "runs"}


def test_text_old_layout_with_start_column_no_prefix():
    p = parse_text(text("mobilenet_v1_riscv64_cpu.txt"))
    assert p.summary["init_ms"] == pytest.approx(17.187)
    assert p.summary["first_inference_ms"] == pytest.approx(3512.391)
    assert p.summary["avg_ms"] == pytest.approx(2950.34)
    assert p.summary["runs"] == 50 and p.summary["p90_ms"] is None
    assert p.runtime["threads"] == 4 and p.model == "./mobilenet_v1_1.0_224.tflite"
    first = p.ops[0]
    assert (first.type, first.name, first.avg_ms, first.percent, first.times_called) == (
        "CONV_2D", "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0", 60.957, 2.066, 1)
    assert [op.type for op in p.ops[-2:]] == ["SQUEEZE", "SOFTMAX"]
    assert "AllocateTensors" not in {op.type for op in p.ops}  # init profile is not the run profile


def test_text_new_layout_info_prefix_spaces_and_repeated_calls():
    p = parse_text(text("efficientdet_lite0_x86_64_xnnpack.txt"))
    assert p.summary["runs"] == 64 and p.summary["avg_ms"] == pytest.approx(15.5176)
    assert p.summary["init_ms"] == pytest.approx(32.163) and p.runtime["delegate"] == "xnnpack"
    dw = p.ops[2]
    assert (dw.type, dw.name, dw.avg_ms, dw.times_called) == (
        "Convolution (NHWC, QC8) DWConv", "Delegate/Convolution (NHWC, QC8) DWConv:1", 0.051, 13)
    post = next(op for op in p.ops if op.type == "TFLite_Detection_PostProcess")
    assert post.name.startswith("[StatefulPartitionedCall:3, ") and post.name.endswith("]:266")


def test_text_variants_tab_indented_and_without_mem_column():
    base = parse_text(text("mobilenet_v1_riscv64_cpu.txt"))
    # as embedded in a reStructuredText literal block: every line indented by a tab
    indented = parse_text("".join("\t" + l for l in text("mobilenet_v1_riscv64_cpu.txt").splitlines(True)))
    assert [(o.type, o.name, o.avg_ms) for o in indented.ops] == [(o.type, o.name, o.avg_ms) for o in base.ops]
    # derived input: the [mem KB] column removed (layouts of binaries that do not print it)
    no_mem = re.sub(r"\t  \[mem KB\]", "", text("mobilenet_v1_riscv64_cpu.txt"))
    no_mem = re.sub(r"(%)\t +[\d.]+(\t +\d+\t)", r"\1\2", no_mem)
    p = parse_text(no_mem)
    assert [(o.type, o.avg_ms, o.times_called) for o in p.ops] == [(o.type, o.avg_ms, o.times_called)
                                                                    for o in base.ops]


def test_gpu_delegate_single_row_and_note():
    p = parse_text(text("mnv3_seg_float_android_gpu.txt"))
    assert [(o.type, o.name) for o in p.ops] == [("TfLiteGpuDelegateV2", "[Identity]:77")]
    assert p.runtime["delegate"] == "gpu" and GPU_NOTE in p.notes
    assert p.summary["init_ms"] == pytest.approx(1451.507) and p.summary["runs"] == 110


# ----------------------------------------------------------------------------- proto parser
@pytest.mark.parametrize("name", ["mobilenet_v1_riscv64_cpu.txt", "mnv3_seg_float_android_gpu.txt"])
def test_proto_matches_text(name, tmp_path):
    t = text(name)
    data = proto_from_text(t, model_name="/data/local/tmp/m.tflite")
    p, q = parse_proto(data, log_text=t), parse_text(t)
    assert len(p.ops) == len(q.ops) == p.summary["nodes"]
    for a, b in zip(p.ops, q.ops):
        assert (a.type, a.name, a.times_called) == (b.type, b.name, b.times_called)
        assert a.avg_ms == pytest.approx(b.avg_ms, abs=1e-3)
        assert a.percent == pytest.approx(b.percent, abs=0.01)
    assert p.op_total_ms == pytest.approx(p.summary["op_total_ms"])
    assert p.summary["runs"] == q.summary["runs"] and p.summary["avg_ms"] == q.summary["avg_ms"]
    f = tmp_path / "prof.pb"
    f.write_bytes(data)
    from_file = profile_from_output(f)
    assert from_file.model == "/data/local/tmp/m.tflite" and len(from_file.ops) == len(q.ops)


def test_profile_from_output_detects_forms(tmp_path):
    from ai_edge_litert import profiling_info_pb2
    from google.protobuf import text_format

    assert len(profile_from_output(FIX / "mobilenet_v1_riscv64_cpu.txt").ops) == 31
    msg = profiling_info_pb2.BenchmarkProfilingData()
    msg.ParseFromString(proto_from_text(text("mobilenet_v1_riscv64_cpu.txt")))
    dbg = tmp_path / "debug.txt"
    dbg.write_text(text_format.MessageToString(msg))  # what the binary logs if it cannot write the file
    assert len(profile_from_output(dbg).ops) == 31
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff\xfe\x00garbage\x07")
    with pytest.raises(ValueError, match="neither a benchmark_model text log nor a profiling proto"):
        profile_from_output(junk)


# ------------------------------------------------------------------------------ record
def test_profile_json_roundtrip_table_and_plot(tmp_path):
    p = parse_text(text("efficientdet_lite0_x86_64_xnnpack.txt"))
    path = p.save(tmp_path / "out" / "p.json")
    assert Profile.load(path) == p and os.listdir(path.parent) == ["p.json"]
    table = p.table()
    assert "times called" in table and "Convolution (NHWC, QC8) DWConv" in table and "runs 64" in table
    png = plot_ops(p, tmp_path / "ops.png", top=5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        Profile.from_json({"format": "other/9"})
    assert OpRecord("ADD", "x", avg_ms=0.5, times_called=3).per_run_ms == pytest.approx(1.5)


def test_parse_devices_states():
    out = ("List of devices attached\n0123456789ABCDEF       device usb:1-1 product:sargo model:Pixel_3a "
           "device:sargo transport_id:1\nR58M123 unauthorized usb:1-2 transport_id:2\n"
           "emulator-5554          offline transport_id:3\n\n")
    devs = parse_devices(out)
    assert [(d.serial, d.state) for d in devs] == [("0123456789ABCDEF", "device"), ("R58M123", "unauthorized"),
                                                   ("emulator-5554", "offline")]
    assert devs[0].details["model"] == "Pixel_3a"


# ------------------------------------------------------------------------ adb via test double
def test_adb_success_records_device_and_caches_push(fake_adb):
    save = fake_adb.out / "p.json"
    p = profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary, threads=2, delegate="xnnpack", warmup=3,
                          runs=20, save=save)
    assert Profile.load(save) == p
    assert p.device["model"] == "Fake Phone 1" and p.device["abi"] == "arm64-v8a"
    assert p.device["android"] == "14" and p.device["governor"] == "schedutil" and p.device["serial"] == "FAKE0001"
    assert p.runtime["source"] == "proto" and p.runtime["delegate"] == "xnnpack" and p.runtime["threads"] == 2
    assert len(p.ops) == 31 and p.summary["runs"] == 50 and p.summary["init_ms"] == pytest.approx(17.187)
    calls = fake_adb.calls()
    pushes = [c for c in calls if "push" in c]
    assert len(pushes) == 2 and all(c[-1].startswith("/data/local/tmp/tinysr/") for c in pushes)
    plain, profiled = benchmark_runs(calls)  # whole-model timings first, then the per-op run
    for run in (plain, profiled):
        for flag in ("--num_threads=2", "--use_xnnpack=true", "--use_gpu=false", "--use_nnapi=false",
                     "--warmup_runs=3", "--num_runs=20"):
            assert flag in run
    assert "--enable_op_profiling=false" in plain and "--op_profiling_output" not in plain
    for flag in ("--enable_op_profiling=true", "--op_profiling_output_mode=proto",
                 "--op_profiling_output_file=/data/local/tmp/tinysr/prof.pb"):
        assert flag in profiled
    # second run: identical binary and model are not pushed again
    p2 = profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary)
    assert p2.runtime["pushed"] == {"binary": False, "model": False}
    assert len([c for c in fake_adb.calls() if "push" in c]) == 2


def test_adb_gpu_note_and_old_binary_text_fallback(fake_adb, monkeypatch):
    p = profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary, delegate="gpu")
    assert [o.type for o in p.ops] == ["TfLiteGpuDelegateV2"] and GPU_NOTE in p.notes
    monkeypatch.setenv("FAKE_ADB_SCENARIO", "oldbinary")
    p = profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary)
    assert p.runtime["source"] == "text" and len(p.ops) == 31
    assert any("older build" in n for n in p.notes)


def test_adb_two_serials(fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_SERIALS", "AAA111,BBB222")
    with pytest.raises(DeviceError, match="several devices connected"):
        profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary)
    res = profile_on_devices(fake_adb.model, ["AAA111", "BBB222"], save=fake_adb.out, benchmark_binary=fake_adb.binary)
    assert list(res) == ["AAA111", "BBB222"]
    assert [res[s].device["model"] for s in res] == ["Fake Phone 1", "Fake Phone 2"]
    assert sorted(os.listdir(fake_adb.out)) == ["tpsr.AAA111.json", "tpsr.BBB222.json"]


@pytest.mark.parametrize("scenario,serial,pattern", [
    ("none", None, r"no Android device connected"),
    ("unauthorized", None, r"device FAKE0001 is unauthorized"),
    ("ok", "NOPE42", r"device NOPE42 not found \(connected: FAKE0001\)"),
    ("abi", None, r"ABI x86_64 does not run this benchmark_model \(arm64-v8a\)"),
    ("disconnect", None, r"device FAKE0001 disconnected during benchmark_model run \(error: closed\)"),
    ("crash", None, r"benchmark_model failed on device FAKE0001 \(killed by signal 11\): .*Segmentation fault"),
])
def test_adb_failures_raise_one_line_and_write_nothing(fake_adb, monkeypatch, scenario, serial, pattern):
    monkeypatch.setenv("FAKE_ADB_SCENARIO", scenario)
    save = fake_adb.out / "p.json"
    with pytest.raises(DeviceError, match=pattern) as err:
        profile_on_device(fake_adb.model, serial=serial, benchmark_binary=fake_adb.binary, save=save)
    assert "\n" not in str(err.value)
    assert not fake_adb.out.exists()


def test_adb_missing_executable_and_bad_binary(fake_adb, monkeypatch, tmp_path):
    monkeypatch.delenv("ADB")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DeviceError, match="adb not found"):
        profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary)
    assert elf_abi(elf_header(tmp_path / "x86bin", 62)) == "x86_64"
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(DeviceError, match="not an ELF executable"):
        elf_abi(tmp_path / "script")


# --------------------------------------------- two runs: whole-model timings unprofiled, per-op rows profiled
def adb_shell(command):
    """One ``adb shell`` through the test double, as the product calls it."""
    import subprocess

    proc = subprocess.run([os.environ["ADB"], "shell", command], capture_output=True, text=True, check=True)
    return proc.stdout


def test_double_honours_enable_op_profiling(fake_adb):
    """Like the real binary: no profiler (no tables, no proto) unless --enable_op_profiling=true."""
    import subprocess

    for local, remote in ((fake_adb.model, "/data/local/tmp/m.tflite"), (fake_adb.binary, "/data/local/tmp/bm")):
        subprocess.run([os.environ["ADB"], "push", str(local), remote], capture_output=True, check=True)
    adb_shell("chmod +x /data/local/tmp/bm")
    proto = fake_adb.tmp / "adbroot" / "devices" / "FAKE0001" / "fs" / "data" / "local" / "tmp" / "p.pb"
    base = "/data/local/tmp/bm --graph=/data/local/tmp/m.tflite --num_runs=50"
    proto_flags = " --op_profiling_output_mode=proto --op_profiling_output_file=/data/local/tmp/p.pb"

    off = adb_shell(base + " --enable_op_profiling=false" + proto_flags)
    assert "Enable op profiling: [0]" in off and "Run Order" not in off and "Profiling Info" not in off
    assert parse_tables(off)["ops"] == [] and not proto.exists()
    assert parse_text(off).summary["avg_ms"] == pytest.approx(2950.34)  # the fixture's numbers
    assert adb_shell(base) == off  # the flag's default is false

    on = adb_shell(base + " --enable_op_profiling=true")
    q = parse_text(on)
    assert len(q.ops) == 31 and q.ops[0].avg_ms == 60.957  # operator rows as in the fixture
    assert q.summary["avg_ms"] == pytest.approx(2950.34 * 1.12, rel=1e-5)  # the profiler slows the runs
    assert q.summary["init_ms"] == pytest.approx(17.187 * 1.12, abs=1e-3)  # printed in whole us
    on_proto = adb_shell(base + " --enable_op_profiling=true" + proto_flags)
    assert "Run Order" not in on_proto and len(parse_proto(proto.read_bytes()).ops) == 31


@pytest.mark.parametrize("overhead", [None, "0.5"])
def test_adb_summary_from_unprofiled_run_ops_from_profiled_run(fake_adb, monkeypatch, overhead):
    if overhead:
        monkeypatch.setenv("FAKE_ADB_PROFILER_OVERHEAD", overhead)
    factor = 1.0 + float(overhead or 0.12)
    save = fake_adb.out / "p.json"
    p = profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary, save=save)
    assert Profile.load(save) == p
    s = p.summary
    # every whole-model number is the unprofiled run's (the fixture's); the profiled run's are all x factor
    assert s["avg_ms"] == pytest.approx(2950.34) and s["init_ms"] == pytest.approx(17.187)
    assert s["first_inference_ms"] == pytest.approx(3512.391) and s["warmup_avg_ms"] == pytest.approx(3512.39)
    assert (s["std_ms"], s["min_ms"], s["max_ms"]) == pytest.approx((109.798, 2727.568, 3189.954))
    assert s["runs"] == 50 and s["median_ms"] is None and s["p90_ms"] is None
    assert s["profiled_run_avg_ms"] == pytest.approx(2950.34 * factor, rel=1e-5)
    assert s["profiled_run_avg_ms"] > s["avg_ms"]
    # per-operator rows: the profiled run (proto)
    assert len(p.ops) == 31 and s["nodes"] == 31 and p.runtime["source"] == "proto"
    assert s["op_total_ms"] == pytest.approx(p.op_total_ms)
    assert p.runtime["timings_from"] == {"summary": "benchmark_model, op profiling off",
                                         "ops": "benchmark_model --enable_op_profiling=true (separate run)"}
    assert "op profiling off" in p.notes[0] and f"{(factor - 1) * 100:+.1f}%" in p.notes[0]
    assert f"whose own average was {s['profiled_run_avg_ms']:.3f} ms" in p.notes[0]
    table = p.table()
    assert "avg 2950.340 ms" in table and "note: summary (init, first inference" in table


def test_adb_per_op_false_runs_once_without_profiler(fake_adb):
    p = profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary, per_op=False)
    calls = fake_adb.calls()
    (run,) = benchmark_runs(calls)
    assert "--enable_op_profiling=false" in run and "--op_profiling_output" not in run
    assert not [c for c in calls if "pull" in c]
    assert p.ops == [] and p.summary["avg_ms"] == pytest.approx(2950.34) and p.summary["runs"] == 50
    assert p.summary["profiled_run_avg_ms"] is None and p.summary["nodes"] is None
    assert p.runtime["timings_from"] == {"summary": "benchmark_model, op profiling off", "ops": None}
    assert "no per-operator rows" in p.notes[0]


def test_adb_gpu_two_runs(fake_adb):
    p = profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary, delegate="gpu")
    assert p.summary["avg_ms"] == pytest.approx(8.68033) and p.summary["init_ms"] == pytest.approx(1451.507)
    assert p.summary["profiled_run_avg_ms"] == pytest.approx(8.68033 * 1.12, rel=1e-5)
    assert [o.type for o in p.ops] == ["TfLiteGpuDelegateV2"] and GPU_NOTE in p.notes
    assert all("--use_gpu=true" in r for r in benchmark_runs(fake_adb.calls()))


@pytest.mark.parametrize("at,reason", [
    ("after:1", r"adb: device 'FAKE0001' not found"),  # gone between the two runs
    ("2", r"error: closed"),  # connection cut during the profiled run
])
def test_adb_disconnect_between_runs_one_line_no_file(fake_adb, monkeypatch, at, reason):
    monkeypatch.setenv("FAKE_ADB_SCENARIO", "disconnect")
    monkeypatch.setenv("FAKE_ADB_DISCONNECT_AT", at)
    save = fake_adb.out / "p.json"
    with pytest.raises(DeviceError, match=rf"^device FAKE0001 disconnected during benchmark_model run \({reason}\)$") \
            as err:
        profile_on_device(fake_adb.model, benchmark_binary=fake_adb.binary, save=save)
    assert "\n" not in str(err.value)
    assert not fake_adb.out.exists()
    runs = (fake_adb.tmp / "adbroot" / "devices" / "FAKE0001" / "benchmark_runs").read_text()
    assert runs == ("1" if at == "after:1" else "2")  # the unprofiled run did finish


def test_cli_profile_adb_no_per_op_and_disconnect(fake_adb, monkeypatch, capsys):
    from tinysr.cli.main import main

    out = fake_adb.out / "p.json"
    assert main(["profile", str(fake_adb.model), "--device", "adb", "--benchmark-binary", str(fake_adb.binary),
                 "--no-per-op", "--save", str(out)]) == 0
    p = Profile.load(out)
    assert p.ops == [] and p.summary["avg_ms"] == pytest.approx(2950.34)
    assert len(benchmark_runs(fake_adb.calls())) == 1
    out.unlink()
    monkeypatch.setenv("FAKE_ADB_SCENARIO", "disconnect")
    monkeypatch.setenv("FAKE_ADB_DISCONNECT_AT", "after:2")  # the device's 2nd run: this call's unprofiled one
    capsys.readouterr()
    assert main(["profile", str(fake_adb.model), "--device", "adb", "--benchmark-binary", str(fake_adb.binary),
                 "--save", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == ("tinysr: error: device FAKE0001 disconnected during benchmark_model run "
                   "(adb: device 'FAKE0001' not found)\n")
    assert not out.exists()


def test_latency_table_timer_over_adb_uses_one_unprofiled_run(fake_adb):
    from tinysr.profile.lut import Timer

    median, p90, runs = Timer("adb:FAKE0001", warmup=2, runs=7, benchmark_binary=fake_adb.binary)(
        fake_adb.model.read_bytes())
    assert median == pytest.approx(2950.34) and p90 is None and runs == 7  # not the profiled 3304.38
    calls = fake_adb.calls()
    (run,) = benchmark_runs(calls)
    assert "--enable_op_profiling=false" in run and "--num_runs=7" in run and "--op_profiling_output" not in run
    assert not [c for c in calls if "pull" in c]


def test_latency_table_relative_timing_over_adb(fake_adb):
    """Over adb a round runs benchmark_model once per model (the reference opening and closing it)."""
    from tinysr.profile.lut import Timer

    flat = fake_adb.model.read_bytes()
    res = Timer("adb:FAKE0001", warmup=1, runs=4, benchmark_binary=fake_adb.binary).measure_relative(
        [flat, flat], 1, rounds=2)
    assert [r["rounds"] for r in res] == [2, 2] and [r["runs"] for r in res] == [4, 8]
    assert res[0]["rel"] == pytest.approx(1.0) and res[0]["spread_pct"] == pytest.approx(0.0)
    assert res[0]["median_ms"] == pytest.approx(2950.34) and res[0]["p90_ms"] is None
    assert len(benchmark_runs(fake_adb.calls())) == 6  # 2 rounds x (reference, model, reference)
