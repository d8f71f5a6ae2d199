"""Quantized exports of the bundled TPSR x4: int8 loses <= 0.3 dB Set5 Y-PSNR, fp16 ~nothing;
the int8 graph is integer end to end (no float islands)."""
import json

import numpy as np
import pytest

from conftest import SHARED
from tinysr.cli.main import main

CALIB = SHARED / "data" / "train" / "T91"


@pytest.fixture(scope="module")
def exports(tmp_path_factory, request):
    bench = SHARED / "data" / "bench" / "Set5"
    if not bench.is_dir() or not CALIB.is_dir():
        pytest.skip(f"Set5 / T91 not available under {SHARED}")
    d = tmp_path_factory.mktemp("q")
    cards = {}
    for name, args in {
        "int8": ["--target", "tflite", "--precision", "int8"],
        "int8io": ["--target", "tflite", "--precision", "int8", "--int8-io"],
        "fp16": ["--target", "tflite", "--precision", "fp16"],
        "fp32": ["--target", "tflite", "--precision", "fp32"],
        "onnx_int8": ["--target", "onnx", "--precision", "int8"],
    }.items():
        ext = "onnx" if name.startswith("onnx") else "tflite"
        out = d / f"{name}.{ext}"
        rc = main(["export", "--model", "tpsr_x4", *args, "--input-size", "96x96", "--calib", str(CALIB),
                   "--calib-count", "16", "--verify-data", str(bench), "-o", str(out), "-q",
                   "--max-loss-db", "0.5"])
        assert rc == 0
        cards[name] = json.loads(out.with_suffix(".json").read_text())
    return cards


def test_int8_tflite_loses_at_most_0_3_db_on_set5(exports):
    q = exports["int8"]["quality"]
    print(f"Set5 Y-PSNR fp32 {q['psnr_fp32_torch_db']:.3f} dB, int8 {q['psnr_artifact_db']:.3f} dB, loss {q['loss_db']:.3f} dB")
    assert q["loss_db"] <= 0.3
    assert exports["int8io"]["quality"]["loss_db"] <= 0.3


def test_int8_graph_is_integer_end_to_end(exports):
    hist = exports["int8"]["op_histogram"]
    assert hist.get("QUANTIZE", 0) == 1 and hist.get("DEQUANTIZE", 0) == 1  # only at the edges
    assert hist["CONV_2D"] == 13 and hist["DEPTH_TO_SPACE"] == 2
    io = exports["int8io"]
    assert io["io_dtype"] == "int8" and "QUANTIZE" not in io["op_histogram"]


def test_fp16_is_lossless_and_half_the_size(exports):
    assert exports["fp16"]["quality"]["loss_db"] <= 0.05
    assert exports["fp16"]["file_size"] < 0.6 * exports["fp32"]["file_size"]
    assert exports["int8"]["file_size"] < 0.4 * exports["fp32"]["file_size"]


def test_onnx_int8_is_verified_and_reported(exports):
    q = exports["onnx_int8"]["quality"]
    assert np.isfinite(q["loss_db"]) and q["loss_db"] <= 0.5
    assert any(op in exports["onnx_int8"]["op_histogram"] for op in ("QuantizeLinear", "DequantizeLinear"))
