"""`tinysr export`: every family and a searched genotype, measured here in the artifact's own
runtime (LiteRT / ONNX Runtime called directly), the native-op graph, the model card format
(tinysr.model-card/1), held-out verification data, preset and bad-input errors."""
import copy
import json
import os
import random
import re
import shutil

import numpy as np
import pytest
import torch

import tinysr
from conftest import ROOT, rng_image
from tinysr.bundled import sample_image
from tinysr.checkpoint import save_checkpoint
from tinysr.cli.main import main
from tinysr.export import card as cards
from tinysr.export.flatbuffer import op_histogram
from tinysr.export.pipeline import ExportOptions, ExportVerificationError, export_model
from tinysr.export.quantize import held_out_split
from tinysr.export.tflite_convert import UnsupportedOpError, convert_tflite
from tinysr.genotype import Genotype
from tinysr.imageio import load_rgb_uint8
from tinysr.models import create_model
from tinysr.models.tpsr import CellSR
from tinysr.provenance import file_sha256

# Measured: fp32 artifacts of every family below (24x32, both targets) differ from PyTorch by at
# most 4.6e-5 on a 0-255 scale (AMD EPYC; ai-edge-litert 2.3.0, onnxruntime 1.31.1). The export
# itself only rejects errors above 1e-3, so this bound is what catches a regression.
FP32_BOUND = 2e-4


def _ckpt(tmp_path, model, name):
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial PReLU slopes so that a wrong PRELU lowering shows
        for m in model.modules():
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    p = tmp_path / f"{name}.pt"
    save_checkpoint(p, model)
    return p


def fresh_crops(h, w, n=3, seed=5):
    """NCHW [0, 1] crops of the 160x160 bundled sample, an image no export here calibrates or verifies on."""
    img = load_rgb_uint8(sample_image())
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = int(rng.integers(0, img.shape[0] - h + 1)), int(rng.integers(0, img.shape[1] - w + 1))
        out.append(np.ascontiguousarray(img[y:y + h, x:x + w].transpose(2, 0, 1)[None], dtype=np.float32) / 255)
    return out


def run_raw(path, x):
    """The artifact run in its own runtime on ``x`` exactly as given (input resized to x's shape)."""
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        inp = it.get_input_details()[0]
        if tuple(inp["shape"]) != x.shape:
            it.resize_tensor_input(inp["index"], list(x.shape))
        it.allocate_tensors()
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _torch(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


MODELS = {
    "tpsr": lambda: create_model("tpsr_x4"),
    "mesrgan": lambda: create_model("mesrgan_x4", num_blocks=1),
    "esrgan": lambda: create_model("esrgan_x4", num_blocks=1),
    "searched": lambda: CellSR(Genotype.random(10, random.Random(7)), scale=4),
}


@pytest.mark.parametrize("family", list(MODELS))
@pytest.mark.parametrize("target", ["tflite", "onnx"])
def test_fp32_export_matches_pytorch_in_its_runtime(tmp_path, family, target):
    model = MODELS[family]()
    ckpt = _ckpt(tmp_path, model, family)
    out = tmp_path / f"{family}.{target}"
    card = export_model(str(ckpt), out, ExportOptions(target=target, input_size=(24, 32)), progress=False)
    nhwc = target == "tflite"
    errs = []
    for x in fresh_crops(24, 32):
        got = run_raw(out, np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x)
        errs.append(float(np.abs((got.transpose(0, 3, 1, 2) if nhwc else got) - _torch(model, x)).max()) * 255)
    print(f"{family} {target}: max abs error {max(errs):.2e} here, {card['parity']['max_abs_err_255']:.2e} in the card")
    assert max(errs) <= FP32_BOUND
    assert card["parity"]["max_abs_err_255"] <= FP32_BOUND
    assert card["sha256"] == file_sha256(out) and card["file_size"] == out.stat().st_size
    assert card["params"] == sum(p.numel() for p in model.parameters())
    if target == "tflite":
        assert card["input"]["shape"] == [1, 24, 32, 3] and card["output"]["shape"] == [1, 96, 128, 3]
        assert "TRANSPOSE" not in op_histogram(out)
    else:
        assert card["input"]["shape"] == [1, 3, 24, 32] and card["output"]["shape"] == [1, 3, 96, 128]
        assert card["onnx"]["after"]["nodes"] <= card["onnx"]["before"]["nodes"]


def test_tpsr_mobile_graph_uses_native_prelu_and_depth_to_space():
    flat = convert_tflite(create_model("tpsr_x4"), (180, 320), mode="mobile", layout="nhwc")
    hist = op_histogram(flat)
    assert hist["PRELU"] == 13 and hist["DEPTH_TO_SPACE"] == 2
    for op in ("TRANSPOSE", "RESHAPE", "RELU"):
        assert op not in hist, hist
    plain = op_histogram(convert_tflite(create_model("tpsr_x4"), (36, 40), mode="plain", layout="nchw"))
    assert "PRELU" not in plain and "TRANSPOSE" in plain  # what the plain conversion does


def test_nchw_layout_and_0_255_range(tmp_path):
    model = create_model("tpsr_x4")
    ckpt = _ckpt(tmp_path, model, "t")
    x = fresh_crops(20, 24, n=1)[0]
    ref = _torch(model, x) * 255
    for target in ("tflite", "onnx"):
        out = tmp_path / f"r.{target}"
        card = export_model(str(ckpt), out, ExportOptions(target=target, input_size=(20, 24), layout="nchw",
                                                          value_range="0-255"), progress=False)
        assert card["input"]["shape"] == [1, 3, 20, 24] and card["input"]["range"] == [0.0, 255.0]
        got = run_raw(out, x * 255)  # NCHW pixels in 0-255, straight into the runtime
        assert got.shape == (1, 3, 80, 96) and np.abs(got - ref).max() <= FP32_BOUND, target


def test_onnx_dynamic_shape_runs_at_other_sizes(tmp_path):
    from tinysr.runtimes import OnnxRunner

    ckpt = _ckpt(tmp_path, create_model("tpsr_x4"), "t")
    out = tmp_path / "d.onnx"
    assert main(["export", "--model", str(ckpt), "--preset", "onnx-dynamic", "-o", str(out), "-q"]) == 0
    r = OnnxRunner(out)
    assert r.fixed_size is None and r(np.random.rand(2, 3, 13, 17).astype(np.float32)).shape == (2, 3, 52, 68)


def test_upscale_runs_exported_models(tmp_path, capsys):
    from PIL import Image

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


# ------------------------------------------------------------------ the model card
@pytest.fixture(scope="module")
def card_dir(tmp_path_factory, tpsr_int8io):
    """An fp32 .tflite, an int8 .tflite with int8 I/O (default calibration; the shared export) and a
    dynamic .onnx."""
    d = tmp_path_factory.mktemp("cards")
    ckpt = _ckpt(d, create_model("tpsr_x4"), "t")
    for name, spec, opts in [
        ("fp32.tflite", str(ckpt), ExportOptions(target="tflite", input_size=(24, 32))),
        ("dynamic.onnx", str(ckpt), ExportOptions(target="onnx", dynamic=True, input_size=(16, 16))),
    ]:
        export_model(spec, d / name, opts, progress=False)
    for f in (tpsr_int8io, tpsr_int8io.with_suffix(".json")):
        shutil.copyfile(f, d / f.name)
    return d


def _reject(constant):
    raise ValueError(f"non-JSON constant {constant}")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_model_cards_are_strict_typed_json_without_local_paths(card_dir):
    package = str(os.path.dirname(tinysr.__file__))
    for path in sorted(card_dir.glob("*.json")):
        text = path.read_text()
        card = json.loads(text, parse_constant=_reject)
        assert cards.problems(card) == [], path.name
        assert str(card_dir) not in text and package not in text, path.name
        assert not [s for s in _strings(card) if os.path.isabs(s)], path.name


def test_model_card_values_match_the_artifact(card_dir):
    from ai_edge_litert.interpreter import Interpreter

    fp32, int8, dyn = (json.loads((card_dir / f"{n}.json").read_text()) for n in ("fp32", "int8io", "dynamic"))
    assert (fp32["name"], int8["name"], dyn["name"]) == ("t fp32", "tpsr_x4 int8", "t fp32")
    assert dyn["input"]["shape"] == [None, 3, None, None] and dyn["output"]["shape"] == [None, 3, None, None]
    assert fp32["input"]["quantization"] is None and fp32["output"]["clamped"] is False
    it = Interpreter(model_path=str(card_dir / "int8io.tflite"))
    for side, details in (("input", it.get_input_details()[0]), ("output", it.get_output_details()[0])):
        q = int8[side]["quantization"]
        assert int8[side]["dtype"] == np.dtype(details["dtype"]).name == "int8"
        assert (q["scale"], q["zero_point"]) == details["quantization"]
        assert int8[side]["shape"] == [int(v) for v in details["shape"]]


def test_card_checker_rejects_untyped_values(card_dir):
    card = json.loads((card_dir / "dynamic.json").read_text())
    assert cards.problems(card) == []
    cases = {
        "input.shape[0]": lambda c: c["input"].__setitem__("shape", ["N", 3, "H", "W"]),
        "output.clamped": lambda c: c["output"].__setitem__("clamped", "not clamped: clip to the range"),
        "parity.psnr_vs_torch_db": lambda c: c["parity"].__setitem__("psnr_vs_torch_db", float("inf")),
        "notes: not a field": lambda c: c.__setitem__("notes", "x"),
        "scale: missing": lambda c: c.pop("scale"),
        "verification_set.split": lambda c: c["verification_set"].__setitem__("split", "same"),
    }
    for expected, change in cases.items():
        bad = copy.deepcopy(card)
        change(bad)
        assert any(p.startswith(expected) for p in cards.problems(bad)), expected
        with pytest.raises(cards.CardError):
            cards.dumps(bad)


def test_card_format_is_documented_field_by_field():
    readme = (ROOT / "export" / "README.md").read_text()
    rows = {k: t.replace("\\|", "|") for k, t in re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", readme, re.M)}
    assert rows == cards.FIELDS
    assert "(export/README.md)" in (ROOT / "README.md").read_text()


# ------------------------------------------------------------------ held-out verification data
def _overlap(a, b) -> bool:
    if a["file"] != b["file"]:
        return False
    if a["box"] is None or b["box"] is None:
        return True
    (t1, l1, h1, w1), (t2, l2, h2, w2) = a["box"], b["box"]
    return t1 < t2 + h2 and t2 < t1 + h1 and l1 < l2 + w2 and l2 < l1 + w1


def test_default_verification_is_held_out_from_calibration(card_dir):
    card = json.loads((card_dir / "int8io.json").read_text())
    cal, ver = card["calibration"], card["verification_set"]
    assert ver["split"] == "held-out-region" and cal["source"] == ver["source"] == "tinysr/samples/grace_hopper.jpg"
    assert cal["parts"] and ver["parts"] and cal["crops"] == 8 and cal["crop_size"] == [32, 32]
    assert not [(a, b) for a in cal["parts"] for b in ver["parts"] if _overlap(a, b)]
    assert card["quality"]["images"] == len(ver["parts"])


def test_held_out_split_is_disjoint_and_deterministic(tmp_path):
    from PIL import Image

    for i in range(12):
        Image.fromarray(rng_image(16, 24, seed=i)).save(tmp_path / f"p{i:02d}.png")
    files = sorted(tmp_path.glob("*.png"))
    calib, held, split = held_out_split(files[::-1])
    assert split == "held-out-files" and [p.file.name for p in held] == ["p04.png", "p09.png"]
    records = [p.record() for p in calib], [p.record() for p in held]
    assert len(calib) + len(held) == 12 and not [(a, b) for a in records[0] for b in records[1] if _overlap(a, b)]
    calib, held, split = held_out_split(files[:1])
    assert split == "held-out-region" and (calib[0].box, held[0].box) == ((0, 0, 16, 12), (0, 12, 16, 12))
    assert not _overlap(calib[0].record(), held[0].record())


def test_verify_data_sharing_calibration_images_is_refused(tmp_path, capsys):
    from PIL import Image

    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        Image.fromarray(rng_image(80, 80, seed=i)).save(d / f"p{i}.png")
    assert main(["export", "--model", "tpsr_x4", "--precision", "int8", "--input-size", "16x16", "--calib", str(d),
                 "--calib-count", "3", "--verify-data", str(d), "-o", str(tmp_path / "q.tflite"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "shares 3 image(s) with the calibration crops" in err and err.count("\n") == 1
    assert not (tmp_path / "q.tflite").exists()


# ------------------------------------------------------------------ errors
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
    (["--preset", "nope"], "no preset 'nope'; available: onnx-dynamic"),
    (["--preset", "missing.yaml"], "preset file missing.yaml: not found"),
    (["--target", "tflite", "-o", "x.onnx"], "must end in .tflite"),
    (["--target", "tflite", "--input-size", "abc"], "expected HxW"),
    (["--target", "tflite", "--float-io"], "--float-io applies to --target tflite --precision int8 only"),
])
def test_bad_export_options_are_one_line_errors(tmp_path, capsys, args, msg):
    ckpt = _ckpt(tmp_path, create_model("tpsr_x4"), "t")
    assert main(["export", "--model", str(ckpt), "-q", *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.startswith("tinysr: error: ") and err.count("\n") == 1


def test_phone_int8_preset_has_int8_io_and_float_io_overrides_it(tmp_path):
    """The tflite-int8 preset is the phone's form: int8 tensors in and out (a float output's DEQUANTIZE of the whole
    720p image costs more than the network's int8 layers on some hosts); --float-io gives float tensors."""
    from ai_edge_litert.interpreter import Interpreter

    ckpt = _ckpt(tmp_path, create_model("quicksrnet_s_x4"), "q")
    dtypes = {}
    for name, extra in {"preset": [], "float": ["--float-io"]}.items():
        out = tmp_path / f"{name}.tflite"
        assert main(["export", "--model", str(ckpt), "--preset", "tflite-int8", "--input-size", "24x32", "-q",
                     "--max-loss-db", "99", "-o", str(out), *extra]) == 0
        it = Interpreter(model_path=str(out))
        dtypes[name] = (it.get_input_details()[0]["dtype"], it.get_output_details()[0]["dtype"])
        assert json.loads(out.with_suffix(".json").read_text())["input"]["dtype"] == \
            np.dtype(dtypes[name][0]).name
    assert dtypes == {"preset": (np.int8, np.int8), "float": (np.float32, np.float32)}


@pytest.mark.parametrize("text, problem", [
    ("target: [tflite\n", "invalid YAML at line 2, column 1"),
    ("- tflite\n- int8\n", "expected a mapping of option: value, got list"),
    ("target: tflite\ncolour: red\n", "unknown key(s) colour"),
    ("input_size: 180x320\n", "input_size must be a list of 2 ints"),
    ("calib_count: many\n", "calib_count must be an int, got 'many'"),
    ("int8_io: 'yes'\n", "int8_io must be true or false"),
    ("max_loss_db: [0.3]\n", "max_loss_db must be a number or null"),
    ("precision: int4\n", "precision must be one of fp32, fp16, int8"),
])
def test_malformed_preset_is_a_one_line_error_naming_the_file(tmp_path, capsys, text, problem):
    preset = tmp_path / "broken.yaml"
    preset.write_text(text)
    assert main(["export", "--model", "tpsr_x4", "--preset", str(preset), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinysr: error: preset {preset}: ") and err.count("\n") == 1
    assert problem in err


def test_verification_failure_is_loud_and_keeps_the_artifact_aside(tmp_path):
    ckpt = _ckpt(tmp_path, create_model("tpsr_x4"), "t")
    out = tmp_path / "q.tflite"
    opts = ExportOptions(target="tflite", precision="fp16", input_size=(24, 24), max_loss_db=-1.0)
    with pytest.raises(ExportVerificationError, match=r"loss .* dB > -1.0 dB"), \
            pytest.warns(UserWarning, match=r"fixed input 24x24 leaves no room for an overlap of 16"):
        export_model(str(ckpt), out, opts, progress=False)
    assert not out.exists() and (tmp_path / "q.rejected.tflite").is_file()
    rejected = json.loads((tmp_path / "q.rejected.json").read_text())
    assert not rejected["verification"]["passed"] and rejected["artifact"] == "q.rejected.tflite"
    assert not list(tmp_path.glob(".tinysr-export-*"))  # the work folder is gone


def test_random_init_exports_an_architecture_without_weights(tmp_path, capsys):
    out = tmp_path / "srresnet.onnx"
    assert main(["export", "--model", "srresnet_x4", "--target", "onnx", "--input-size", "16x16", "-o", str(out),
                 "-q"]) == 2
    assert "no bundled weights" in capsys.readouterr().err
    assert main(["export", "--model", "srresnet_x4", "--random-init", "--target", "onnx", "--input-size", "16x16",
                 "-o", str(out), "-q"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["source"]["weights"] == "random-init" and card["source"]["file_sha256"] is None
