"""Quantized exports of the bundled TPSR x4, measured here with LiteRT / ONNX Runtime called
directly (not through tinysr's runners or its evaluation loop) on whole images: Set5, the
exports' --verify-data (so each card's loss is recomputed), and Set14, which no export here sees.

Measured (AMD EPYC; ai-edge-litert 2.3.0, onnxruntime 1.31.1; 16 T91 calibration crops at
96x96), Y-PSNR loss against the fp32 PyTorch model, Set5 / Set14: TFLite int8 0.071 / 0.064 dB
(int8 I/O the same; min / max calibration instead of mse: 0.111 dB on Set5); TFLite fp16
0.0002 / 0.0000 dB; ONNX int8 (QDQ, dynamic shape) 0.108 / 0.065 dB. The bounds below are
about twice those figures, far tighter than the export's own gate (--max-loss-db 0.5 here)."""
import json

import numpy as np
import onnx
import pytest
import torch

from conftest import SHARED, PReLUNet
from test_export import run_raw
from tinysr.checkpoint import load_model
from tinysr.cli.main import main
from tinysr.export.flatbuffer import op_histogram
from tinysr.export.onnx_export import op_histogram_onnx
from tinysr.export.quantize import calibration_samples, tflite_int8
from tinysr.imageio import list_images, load_rgb_uint8
from tinysr.metrics.psnr_ssim import psnr_y

CALIB = SHARED / "data" / "train" / "T91"
BENCH = SHARED / "data" / "bench"
INT8_BOUND_DB = 0.15
ONNX_INT8_BOUND_DB = 0.2
FP16_BOUND_DB = 0.01
CARD_AGREEMENT_DB = 0.01  # card (evaluated in the artifact's 96x96 tiles) vs whole images here: 0.0013 measured


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    if not (BENCH / "Set5").is_dir() or not (BENCH / "Set14").is_dir() or not CALIB.is_dir():
        pytest.skip(f"Set5 / Set14 / T91 not available under {SHARED}")
    d = tmp_path_factory.mktemp("q")
    arts = {}
    for name, args in {
        "int8": ["--target", "tflite", "--precision", "int8"],
        "int8io": ["--target", "tflite", "--precision", "int8", "--int8-io"],
        "fp16": ["--target", "tflite", "--precision", "fp16"],
        "fp32": ["--target", "tflite", "--precision", "fp32"],
        "onnx_int8": ["--preset", "onnx-dynamic", "--precision", "int8"],  # dynamic: runs whole images here
    }.items():
        out = d / f"{name}.{'onnx' if name.startswith('onnx') else 'tflite'}"
        rc = main(["export", "--model", "tpsr_x4", *args, "--input-size", "96x96", "--calib", str(CALIB),
                   "--calib-count", "16", "--verify-data", str(BENCH / "Set5"), "-o", str(out), "-q",
                   "--max-loss-db", "0.5"])
        assert rc == 0
        arts[name] = out
    return arts


def _card(path):
    return json.loads(path.with_suffix(".json").read_text())


def _pairs(bench):
    lr_dir, hr_dir = BENCH / bench / "LR_bicubic" / "X4", BENCH / bench / "HR"
    for f in sorted(lr_dir.glob("*.png")):
        lr = load_rgb_uint8(f)
        yield lr, load_rgb_uint8(hr_dir / f.name)[: lr.shape[0] * 4, : lr.shape[1] * 4]


def _to_uint8(y):
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)


def _run(path, card, lr):
    """SR of one whole LR image (H x W x 3 uint8), fed and read back as the card describes the I/O."""
    x = lr.astype(np.float32)[None] / 255
    x = np.ascontiguousarray(x if card["layout"] == "nhwc" else x.transpose(0, 3, 1, 2))
    q_in, q_out = card["input"]["quantization"], card["output"]["quantization"]
    if q_in:
        x = np.clip(np.round(x / q_in["scale"] + q_in["zero_point"]), -128, 127).astype(np.int8)
    y = run_raw(path, x)
    if q_out:
        y = (y.astype(np.float32) - q_out["zero_point"]) * q_out["scale"]
    return y[0] if card["layout"] == "nhwc" else y[0].transpose(1, 2, 0)


_REF: dict = {}


def loss_db(path, bench, card=None) -> float:
    """Mean Y-PSNR (shave 4) of the fp32 PyTorch model minus the artifact's, whole images of ``bench``."""
    card = card or _card(path)
    if bench not in _REF:
        model = load_model("tpsr_x4")
        with torch.no_grad():
            _REF[bench] = [psnr_y(_to_uint8(model(torch.from_numpy(lr.transpose(2, 0, 1)[None] / np.float32(255)))
                                            .numpy()[0].transpose(1, 2, 0)), hr, 4) for lr, hr in _pairs(bench)]
    got = [psnr_y(_to_uint8(_run(path, card, lr)), hr, 4) for lr, hr in _pairs(bench)]
    return float(np.mean(_REF[bench]) - np.mean(got))


@pytest.mark.parametrize("name", ["int8", "int8io"])
def test_int8_tflite_loss_measured_on_set5_and_set14(exports, name):
    card = _card(exports[name])
    set5, set14 = loss_db(exports[name], "Set5"), loss_db(exports[name], "Set14")
    print(f"{name}: Y-PSNR loss Set5 {set5:.4f} dB (card {card['quality']['loss_db']:.4f}), Set14 {set14:.4f} dB")
    assert set5 <= INT8_BOUND_DB and set14 <= INT8_BOUND_DB
    assert abs(card["quality"]["loss_db"] - set5) <= CARD_AGREEMENT_DB


def test_mse_calibration_loses_less_than_minmax(exports):
    fp32 = exports["fp32"]
    samples = calibration_samples(list_images([str(CALIB)]), (96, 96), count=16, scale=4)
    losses = {}
    for method in ("mse", "minmax"):
        path = fp32.with_name(f"{method}.tflite")
        path.write_bytes(tflite_int8(fp32.read_bytes(), samples, calibration=method))
        losses[method] = loss_db(path, "Set5", _card(fp32))
    print(f"Set5 Y-PSNR loss: mse {losses['mse']:.4f} dB, minmax {losses['minmax']:.4f} dB")
    assert losses["mse"] < losses["minmax"] <= INT8_BOUND_DB


def test_int8_graph_is_integer_end_to_end(exports):
    from ai_edge_litert.interpreter import Interpreter

    hist = op_histogram(exports["int8"])
    assert hist.get("QUANTIZE", 0) == 1 and hist.get("DEQUANTIZE", 0) == 1  # only at the edges
    assert hist["CONV_2D"] == 13 and hist["DEPTH_TO_SPACE"] == 2
    io_hist = op_histogram(exports["int8io"])
    assert "QUANTIZE" not in io_hist and "DEQUANTIZE" not in io_hist
    it = Interpreter(model_path=str(exports["int8io"]))
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8


def test_fp16_is_lossless_and_half_the_size(exports):
    set5, set14 = loss_db(exports["fp16"], "Set5"), loss_db(exports["fp16"], "Set14")
    print(f"fp16: Y-PSNR loss Set5 {set5:.4f} dB, Set14 {set14:.4f} dB")
    assert set5 <= FP16_BOUND_DB and set14 <= FP16_BOUND_DB
    size = {k: p.stat().st_size for k, p in exports.items()}
    print(f"sizes: fp32 {size['fp32']}, fp16 {size['fp16']}, int8 {size['int8']} bytes")
    assert size["fp16"] < 0.6 * size["fp32"] and size["int8"] < 0.4 * size["fp32"]


def test_onnx_int8_loss_measured_on_set5_and_set14(exports):
    card = _card(exports["onnx_int8"])
    set5, set14 = loss_db(exports["onnx_int8"], "Set5"), loss_db(exports["onnx_int8"], "Set14")
    print(f"onnx int8: Y-PSNR loss Set5 {set5:.4f} dB (card {card['quality']['loss_db']:.4f}), Set14 {set14:.4f} dB")
    assert set5 <= ONNX_INT8_BOUND_DB and set14 <= ONNX_INT8_BOUND_DB
    assert abs(card["quality"]["loss_db"] - set5) <= CARD_AGREEMENT_DB
    assert "QuantizeLinear" in op_histogram_onnx(onnx.load(str(exports["onnx_int8"])))


def _run_tflite(flat, x, reference_kernels=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if reference_kernels else OpResolverType.AUTO
    it = Interpreter(model_content=flat, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def test_prelu_is_written_as_int8_ops_xnnpack_runs():
    """LiteRT's int8 PRELU is a reference kernel outside the XNNPACK graph (6.5-8.4 ms per 16-channel 180x320
    tensor here): per-channel slopes (below 0, in [0, 1], above 1) become x + (slopes - 1) * MINIMUM(x, 0), one
    slope LEAKY_RELU. The rewrite computes what the PRELU kernel computes, to the int8 rounding."""
    from tinysr.export.tflite_convert import convert_tflite

    c = 8
    slopes = [np.linspace(0.05, 0.5, c), np.linspace(1.5, 2.0, c), [0.25], np.linspace(-0.5, 1.5, c)]
    net = PReLUNet([list(map(float, s)) for s in slopes]).eval()
    flat = convert_tflite(net, (24, 32))
    rng = np.random.default_rng(0)
    samples = [rng.random((1, 3, 24, 32), dtype=np.float32) for _ in range(4)]
    fast, kernel = tflite_int8(flat, samples), tflite_int8(flat, samples, fast_prelu=False)
    hist = op_histogram(fast)
    assert (hist["MINIMUM"], hist["MUL"], hist["ADD"], hist["LEAKY_RELU"], hist.get("PRELU", 0)) == (3, 3, 3, 1, 0)
    assert op_histogram(kernel)["PRELU"] == 4 and "MINIMUM" not in op_histogram(kernel)
    x = rng.random((1, 24, 32, 3), dtype=np.float32)
    ref = _run_tflite(flat, x)
    got, want = _run_tflite(fast, x), _run_tflite(kernel, x)
    # one rounding more than the PRELU kernel (the product): 10% more error measured, bound 25%
    assert np.abs(got - ref).mean() <= 1.25 * np.abs(want - ref).mean()
    assert np.abs(got - want).max() * 255 <= 2.0
    # XNNPACK and LiteRT's reference kernels agree on the rewritten graph
    assert np.abs(got - _run_tflite(fast, x, reference_kernels=True)).max() * 255 <= 1.0
