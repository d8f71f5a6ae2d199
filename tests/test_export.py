"""`tinysr export`: every family and a searched genotype, parity in the artifact's own runtime,
the native-op graph, quantization loss and bad-input errors."""
import json
import random

import numpy as np
import pytest
import torch

from tinysr.checkpoint import save_checkpoint
from tinysr.cli.main import main
from tinysr.export.pipeline import ExportOptions, ExportVerificationError, export_model
from tinysr.export.flatbuffer import op_histogram
from tinysr.export.tflite_convert import UnsupportedOpError, convert_tflite
from tinysr.genotype import Genotype
from tinysr.models import create_model
from tinysr.models.tpsr import CellSR


def _ckpt(tmp_path, model, name):
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial PReLU slopes so that a wrong PRELU lowering shows
        for m in model.modules():
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    p = tmp_path / f"{name}.pt"
    save_checkpoint(p, model)
    return p


MODELS = {
    "tpsr": lambda: create_model("tpsr_x4"),
    "mesrgan": lambda: create_model("mesrgan_x4", num_blocks=1),
    "esrgan": lambda: create_model("esrgan_x4", num_blocks=1),
    "searched": lambda: CellSR(Genotype.random(10, random.Random(7)), scale=4),
}


@pytest.mark.parametrize("family", list(MODELS))
@pytest.mark.parametrize("target", ["tflite", "onnx"])
def test_fp32_export_matches_pytorch_in_its_runtime(tmp_path, family, target):
    ckpt = _ckpt(tmp_path, MODELS[family](), family)
    out = tmp_path / f"{family}.{target}"
    card = export_model(str(ckpt), out, ExportOptions(target=target, input_size=(24, 32)), progress=False)
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["sha256"] == card["sha256"]
    assert card["parity"]["max_abs_err_255"] <= 1e-3
    assert card["verification"]["passed"]
    assert card["scale"] == 4 and card["params"] > 0 and card["mult_adds"] > 0
    if target == "tflite":
        assert card["layout"] == "nhwc" and card["input"]["shape"] == [1, 24, 32, 3]
        assert "TRANSPOSE" not in card["op_histogram"]
    else:
        assert card["onnx"]["after"]["nodes"] <= card["onnx"]["before"]["nodes"]
    for key in ("source", "tools", "file_size", "op_histogram", "value_max", "io_dtype"):
        assert key in card


def test_tpsr_mobile_graph_uses_native_prelu_and_depth_to_space():
    flat = convert_tflite(create_model("tpsr_x4"), (180, 320), mode="mobile", layout="nhwc")
    hist = op_histogram(flat)
    assert hist["PRELU"] == 13 and hist["DEPTH_TO_SPACE"] == 2
    for op in ("TRANSPOSE", "RESHAPE", "RELU"):
        assert op not in hist, hist
    plain = op_histogram(convert_tflite(create_model("tpsr_x4"), (36, 40), mode="plain", layout="nchw"))
    assert "PRELU" not in plain and "TRANSPOSE" in plain  # what the plain conversion does


def test_nchw_layout_and_0_255_range(tmp_path):
    ckpt = _ckpt(tmp_path, create_model("tpsr_x4"), "t")
    for target in ("tflite", "onnx"):
        out = tmp_path / f"r.{target}"
        card = export_model(str(ckpt), out, ExportOptions(target=target, input_size=(20, 24), layout="nchw",
                                                          value_range="0-255"), progress=False)
        assert card["value_max"] == 255.0 and card["input"]["shape"] == [1, 3, 20, 24]
        assert card["parity"]["max_abs_err_255"] <= 1e-3


def test_onnx_dynamic_shape_runs_at_other_sizes(tmp_path):
    from tinysr.runtimes import OnnxRunner

    ckpt = _ckpt(tmp_path, create_model("tpsr_x4"), "t")
    out = tmp_path / "d.onnx"
    assert main(["export", "--model", str(ckpt), "--preset", "onnx-dynamic", "-o", str(out), "-q"]) == 0
    r = OnnxRunner(out)
    assert r.fixed_size is None and r(np.random.rand(2, 3, 13, 17).astype(np.float32)).shape == (2, 3, 52, 68)


def test_upscale_runs_exported_models(tmp_path, capsys):
    from PIL import Image

    from conftest import rng_image

    ckpt = _ckpt(tmp_path, create_model("tpsr_x4"), "t")
    Image.fromarray(rng_image(50, 70)).save(tmp_path / "in.png")
    outs = {}
    for target in ("tflite", "onnx"):
        art = tmp_path / f"m.{target}"
        export_model(str(ckpt), art, ExportOptions(target=target, input_size=(48, 48)), progress=False)
        dst = tmp_path / f"o_{target}.png"
        assert main(["upscale", str(tmp_path / "in.png"), "-o", str(dst), "--model", str(art), "-q"]) == 0
        outs[target] = np.asarray(Image.open(dst)).astype(int)
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o_t.png"), "--model", str(ckpt), "-q"]) == 0
    ref = np.asarray(Image.open(tmp_path / "o_t.png")).astype(int)
    for target, got in outs.items():
        assert got.shape == (200, 280, 3) and np.abs(got - ref).max() <= 1, target


def test_unsupported_op_names_the_op_and_layer(tmp_path):
    model = create_model("srresnet_x4", num_blocks=1)  # BatchNorm has no native NHWC form here
    with pytest.raises(UnsupportedOpError, match=r"batch_norm.*body"):
        convert_tflite(model, (16, 16))
    ckpt = _ckpt(tmp_path, model, "s")
    assert main(["export", "--model", str(ckpt), "--target", "tflite", "--input-size", "16x16", "-q",
                 "-o", str(tmp_path / "s.tflite")]) == 2


@pytest.mark.parametrize("args, msg", [
    (["--target", "onnx", "--precision", "fp16"], "fp16"),
    (["--target", "tflite", "--dynamic-shape"], "fixed"),
    (["--preset", "nope"], "no preset"),
    (["--target", "tflite", "-o", "x.onnx"], "must end in .tflite"),
    (["--target", "tflite", "--input-size", "abc"], "expected HxW"),
])
def test_bad_export_options_are_one_line_errors(tmp_path, capsys, args, msg):
    ckpt = _ckpt(tmp_path, create_model("tpsr_x4"), "t")
    assert main(["export", "--model", str(ckpt), "-q", *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_verification_failure_is_loud_and_keeps_the_artifact_aside(tmp_path):
    ckpt = _ckpt(tmp_path, create_model("tpsr_x4"), "t")
    out = tmp_path / "q.tflite"
    opts = ExportOptions(target="tflite", precision="fp16", input_size=(24, 24), max_loss_db=-1.0)
    with pytest.raises(ExportVerificationError, match=r"loss .* dB > -1.0 dB"):
        export_model(str(ckpt), out, opts, progress=False)
    assert not out.exists() and (tmp_path / "q.rejected.tflite").is_file()
    assert not json.loads((tmp_path / "q.rejected.json").read_text())["verification"]["passed"]


def test_random_init_exports_an_architecture_without_weights(tmp_path, capsys):
    out = tmp_path / "srresnet.onnx"
    assert main(["export", "--model", "srresnet_x4", "--target", "onnx", "--input-size", "16x16", "-o", str(out), "-q"]) == 2
    assert "no bundled weights" in capsys.readouterr().err
    assert main(["export", "--model", "srresnet_x4", "--random-init", "--target", "onnx", "--input-size", "16x16",
                 "-o", str(out), "-q"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["source"]["weights"].startswith("random") and card["verification"]["passed"]
