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
    run = next(c[-1] for c in calls if "shell" in c and "--graph=" in c[-1])
    for flag in ("--num_threads=2", "--use_xnnpack=true", "--use_gpu=false", "--use_nnapi=false",
                 "--warmup_runs=3", "--num_runs=20", "--enable_op_profiling=true",
                 "--op_profiling_output_mode=proto",
                 "--op_profiling_output_file=/data/local/tmp/tinysr/prof.pb"):
        assert flag in run
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
