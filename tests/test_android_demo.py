"""``tinysr android-demo prepare`` and the contract with the Android app (android_demo/).

The app cannot be built here (no Android SDK); what its Kotlin reader, tile planner and tensor codec
must agree with is checked from this side: the prepared cards against
``android_demo/contract/card_contract.json`` (the file the app reads), and three fixtures the Kotlin
unit tests read, regenerated here from the Python code (``TINYSR_UPDATE_FIXTURES=1`` rewrites them):
the tile plans of ``tinysr.upscale``, the app's message for each kind of broken card, and the codec's
golden tensors. Then the Kotlin unit tests themselves (``app/src/test`` on the Android-free classes of
``model/``) are compiled with kotlinc and run with JUnit on the JVM, with the pinned toolchain that
``android_demo/jvm-tests/setup.sh`` installs.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from tinysr.android_demo import AppCardError, codec_io, field_problem, load_contract, prepare, read_app_card
from tinysr.cli.main import build_parser, main
from tinysr.export import card as cards
from tinysr.upscale import upscale_array

APP = ROOT / "android_demo" / "app"
TEST_RESOURCES = APP / "src" / "test" / "resources"
CONTRACT = load_contract(APP)


def _fixture(name: str, data) -> None:
    """Compare ``data`` with the committed fixture (or write it with TINYSR_UPDATE_FIXTURES=1)."""
    path = TEST_RESOURCES / name
    text = json.dumps(data, indent=1) + "\n"
    if os.environ.get("TINYSR_UPDATE_FIXTURES"):
        path.write_text(text)
    assert path.is_file(), f"{path} missing: run with TINYSR_UPDATE_FIXTURES=1"
    assert json.loads(path.read_text()) == data, f"{path} is stale: run with TINYSR_UPDATE_FIXTURES=1"


def _app_copy(root):
    """A copy of the app's skeleton that prepare accepts: the manifest and the contract beside it."""
    app = root / "android_demo" / "app"
    (app / "src" / "main").mkdir(parents=True)
    shutil.copy(APP / "src" / "main" / "AndroidManifest.xml", app / "src" / "main")
    (root / "android_demo" / "contract").mkdir()
    shutil.copy(ROOT / "android_demo" / "contract" / "card_contract.json", root / "android_demo" / "contract")
    return app


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """fp32, fp16, int8 prepared in turn into one app (each replacing the last): (card, files, model dir)."""
    app = _app_copy(tmp_path_factory.mktemp("app"))
    out = {}
    for precision in ("fp32", "fp16", "int8"):
        card, art = prepare("tpsr_x4", precision, app, input_size=(48, 48), progress=False)
        keep = tmp_path_factory.mktemp(precision)
        for f in art.parent.iterdir():
            shutil.copy(f, keep)
        out[precision] = card, sorted(p.name for p in art.parent.iterdir()), keep
    assets = app / "src" / "main" / "assets"
    out["assets"] = sorted(p.name for p in assets.iterdir())
    return out


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_prepare_places_the_model_and_its_card(prepared, precision):
    card, files, folder = prepared[precision]
    assert files == [f"tpsr_x4_{precision}.json", f"tpsr_x4_{precision}.tflite"]  # the previous model is gone
    assert cards.problems(card) == [] and card["precision"] == precision and card["verification"]["passed"]
    assert read_app_card(folder, CONTRACT) == card
    assert field_problem(card, CONTRACT["fields"]) is None
    assert card["input"]["shape"] == [1, 48, 48, 3] and card["layout"] == "nhwc" and card["scale"] == 4
    for io in ("input", "output"):
        if precision == "int8":  # int8 I/O: the app quantizes with the card's parameters
            assert card[io]["dtype"] == "int8"
            q = card[io]["quantization"]
            assert isinstance(q["scale"], float) and q["scale"] > 0 and -128 <= q["zero_point"] <= 127
        else:
            assert card[io]["dtype"] == "float32" and card[io]["quantization"] is None


def test_prepared_models_run_as_the_app_runs_them(prepared):
    from tinysr.bundled import sample_photo
    from tinysr.imageio import load_image
    from tinysr.runtimes import make_runner

    rgb = np.ascontiguousarray(load_image(sample_photo()).rgb[40:77, 50:111])  # a real photo: int8 is calibrated on one
    outs = {}
    for precision in ("fp32", "fp16", "int8"):
        card, _, folder = prepared[precision]
        runner = make_runner(str(folder / card["artifact"]))
        outs[precision] = upscale_array(runner, rgb, overlap=CONTRACT["tile_overlap"])
        assert outs[precision].shape == (37 * 4, 61 * 4, 3)
    assert np.abs(outs["fp16"] - outs["fp32"]).max() < 0.02
    assert np.abs(outs["int8"] - outs["fp32"]).mean() < 0.02


def test_only_the_models_folder_is_left_in_the_assets(prepared):
    assert prepared["assets"] == [CONTRACT["models_dir"]]  # no staging or old folders


def test_contract_fields_are_the_cards_own():
    assert CONTRACT["card_format"] == cards.FORMAT
    for path, typ in CONTRACT["fields"].items():
        assert cards.FIELDS.get(path) == typ, f"{path}: contract says {typ}, the card {cards.FIELDS.get(path)}"
    for path in CONTRACT["fields"]:  # a field is listed after the object holding it
        parent = path.rpartition(".")[0]
        if parent in CONTRACT["fields"]:
            assert list(CONTRACT["fields"]).index(parent) < list(CONTRACT["fields"]).index(path)


def test_contract_overlap_is_tinysr_upscales_default():
    upscale = next(a for a in build_parser()._actions if a.dest == "command").choices["upscale"]
    assert CONTRACT["tile_overlap"] == upscale.get_default("tile_overlap") == 16


class _Recorder:
    """A fixed-size runner that records the window it is given: the image's pixels carry (row, column)."""

    def __init__(self, fixed, scale=2):
        self.fixed_size, self.scale, self.calls = fixed, scale, []

    def __call__(self, x):
        rows, cols = x[0, 0], x[0, 1]
        y0, x0 = int(rows[0, 0]), int(cols[0, 0])
        self.calls.append([y0, x0, int(rows.max()) - y0 + 1, int(cols.max()) - x0 + 1])
        return np.zeros((1, 3, x.shape[2] * self.scale, x.shape[3] * self.scale), np.float32)


TILE_CASES = [  # (h, w, window h, window w, overlap)
    (130, 200, 48, 48, 16), (100, 70, 64, 64, 16), (40, 30, 48, 48, 16), (48, 48, 48, 48, 16),
    (37, 251, 180, 320, 16), (90, 70, 24, 24, 16), (7, 5, 48, 48, 0), (1, 1, 48, 48, 16),
    (300, 257, 256, 256, 16), (61, 90, 30, 40, 4),
]


def _tile_plans():
    import warnings

    from tinysr.upscale import tile_plan, tiles

    out = []
    for h, w, fh, fw, overlap in TILE_CASES:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rgb = np.stack([yy, xx, np.zeros_like(yy)], axis=2)
        runner = _Recorder((fh, fw))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            upscale_array(runner, rgb, overlap=overlap)
            tile, used = tile_plan(runner, 256, overlap)
        cores = [list(t) for t in tiles(h, w, tile)]
        out.append({"height": h, "width": w, "window": [fh, fw], "overlap": overlap, "tile": tile,
                    "used_overlap": used, "overlap_reduced": bool(caught),
                    "tiles": [c + r for c, r in zip(cores, runner.calls, strict=True)]})
    return {"about": "tinysr.upscale tile plans, by tests/test_android_demo.py: tiles are "
                     "[y, x, h, w, window y, window x, window rows inside the image, window columns inside]",
            "cases": out}


def test_tile_plan_fixture_matches_the_python_planner():
    _fixture("tile_plans.json", _tile_plans())


SAMPLE_CARD = {  # the fields the app reads (card_contract.json), with the values of an int8 x4 export
    "format": "tinysr.model-card/1", "name": "tpsr_x4 int8", "artifact": "tpsr_x4_int8.tflite", "target": "tflite",
    "precision": "int8", "scale": 4, "layout": "nhwc",
    "input": {"shape": [1, 48, 48, 3], "dtype": "int8", "range": [0.0, 1.0],
              "quantization": {"scale": 0.003921568859368563, "zero_point": -128}},
    "output": {"shape": [1, 192, 192, 3], "dtype": "int8", "range": [0.0, 1.0], "clamped": False,
               "quantization": {"scale": 0.004468172322958708, "zero_point": -121}},
    "params": 61097, "mult_adds": 143193600.0, "mult_adds_at": [48, 48], "file_size": 123456,
    "tflite": {"gpu_delegate_unsupported": []}, "verification": {"passed": True},
}


def _case(name, card=SAMPLE_CARD, edit=None, files=None, card_name="tpsr_x4_int8.json"):
    card = copy.deepcopy(card)
    if edit:
        edit(card)
    text = card if isinstance(card, str) else json.dumps(card, indent=2)
    return {"name": name, "files": files if files is not None else {card_name: text, "tpsr_x4_int8.tflite": "TFL3"}}


def _card_cases():
    def drop(*path):
        def f(c):
            for k in path[:-1]:
                c = c[k]
            del c[path[-1]]
        return f

    def put(value, *path):
        def f(c):
            for k in path[:-1]:
                c = c[k]
            c[path[-1]] = value
        return f

    text = json.dumps(SAMPLE_CARD)
    cases = [
        _case("valid"),
        _case("valid float model", edit=lambda c: [c[io].update(dtype="float32", quantization=None)
                                                   for io in ("input", "output")]),
        _case("no card", files={"tpsr_x4_int8.tflite": "TFL3"}),
        _case("empty folder", files={}),
        _case("two cards", files={"a.json": text, "b.json": text, "tpsr_x4_int8.tflite": "TFL3"}),
        _case("not json", card="{\"format\": \"tinysr.model-card/1\","),
        _case("NaN is not json", card=text.replace("143193600.0", "NaN")),
        _case("old format", edit=put("tinysr.model-card/0", "format")),
        _case("no format", edit=drop("format")),
        _case("not an object", card="[1, 2]"),
        _case("missing scale", edit=drop("scale")),
        _case("scale as a string", edit=put("4", "scale")),
        _case("unknown layout", edit=put("nhcw", "layout")),
        _case("int for a number", edit=put(143193600, "mult_adds")),
        _case("number for an int", edit=put(4.0, "scale")),
        _case("quantization without zero point", edit=drop("input", "quantization", "zero_point")),
        _case("input not an object", edit=put([1, 2], "input")),
        _case("shape with a string", edit=put([1, "48", 48, 3], "input", "shape")),
        _case("dynamic shape", edit=put([1, None, None, 3], "input", "shape")),
        _case("onnx model", edit=put("onnx", "target")),
        _case("no tflite section", edit=put(None, "tflite")),
        _case("artifact missing", files={"tpsr_x4_int8.json": text}),
    ]
    return cases


def _app_message(tmp_path, files):
    folder = tmp_path / "models"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    try:
        read_app_card(folder, CONTRACT)
    except AppCardError as e:
        return str(e)
    return None


def test_card_cases_fixture_gives_the_apps_messages(tmp_path):
    cases = _card_cases()
    for case in cases:
        case["error"] = _app_message(tmp_path, case["files"])
    _fixture("card_cases.json", {"about": "model folders and the message the app shows for each (null: the card "
                                          "is read), by tests/test_android_demo.py from tinysr.android_demo",
                                 "cases": cases})
    by_name = {c["name"]: c["error"] for c in cases}
    assert by_name["valid"] is None and by_name["valid float model"] is None and by_name["no tflite section"] is None
    assert by_name["no card"] == by_name["empty folder"] == CONTRACT["messages"]["no_model"]
    assert by_name["old format"] == ('tpsr_x4_int8.json: model card format "tinysr.model-card/0", this app reads '
                                     'tinysr.model-card/1: export the model again with `tinysr android-demo prepare`.')
    assert "scale: missing" in by_name["missing scale"]
    assert "mult_adds: expected number, got an int" in by_name["int for a number"]
    assert "input.quantization.zero_point: missing" in by_name["quantization without zero point"]
    assert "input.shape[1]: expected int, got a string" in by_name["shape with a string"]
    assert "not a fixed" in by_name["dynamic shape"]
    assert "not in assets/models" in by_name["artifact missing"]
    assert all(e is None or len(e.splitlines()) == 1 for e in by_name.values())


def test_an_old_card_is_refused_by_the_python_reader_too(tmp_path):
    card = dict(SAMPLE_CARD, format="tinysr.model-card/0")
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(cards.CardError, match="model card format 'tinysr.model-card/0'"):
        cards.read_card(tmp_path / "m.json")


def test_a_failed_prepare_keeps_the_apps_model(tmp_path, capsys):
    app = _app_copy(tmp_path)
    models = app / "src" / "main" / "assets" / "models"
    models.mkdir(parents=True)
    (models / "old.json").write_text("{}")
    assert main(["android-demo", "prepare", "--model", "no_such_model", "--app", str(app)]) == 2
    assert main(["android-demo", "prepare", "--model", "tpsr_x4", "--precision", "fp16", "--float-io",
                 "--app", str(app)]) == 2
    assert main(["android-demo", "prepare", "--model", "tpsr_x4", "--preset", "onnx-fp32", "--app", str(app)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("tinysr: error: ") for line in err), err
    assert "--float-io applies to --precision int8 only" in err[1] and "runs .tflite" in err[2]
    assert sorted(p.name for p in models.parent.iterdir()) == ["models"]
    assert [p.name for p in models.iterdir()] == ["old.json"]


def test_prepare_refuses_a_folder_that_is_not_the_app(tmp_path, capsys):
    assert main(["android-demo", "prepare", "--model", "tpsr_x4", "--app", str(tmp_path)]) == 2
    assert "not the android_demo app module" in capsys.readouterr().err


def _golden_case(name, layout, scale, window, inp, out, output_tensor):
    h, w = window
    i = np.arange(h * w)
    pixels = np.stack([i % 256, 255 - i % 256, (i * 91) % 256], axis=1).astype(np.uint8).reshape(h, w, 3)
    shape = (lambda hh, ww: [1, hh, ww, 3] if layout == "nhwc" else [1, 3, hh, ww])
    card = {"artifact": "golden.tflite", "layout": layout, "scale": scale,
            "input": dict(inp, shape=shape(h, w)), "output": dict(out, shape=shape(h * scale, w * scale))}
    tensor = output_tensor(int(np.prod(card["output"]["shape"])))
    tensor = tensor.reshape(card["output"]["shape"]).astype(np.int8 if out["dtype"] == "int8" else np.float32)
    feed, sr = codec_io(card, pixels, tensor)
    return dict(card, name=name, pixels=pixels.reshape(-1, 3).tolist(), input_tensor=feed.reshape(-1).tolist(),
                output_tensor=tensor.reshape(-1).tolist(), output_pixels=sr.reshape(-1, 3).tolist())


def _codec_golden():
    def q(scale, zero):
        return {"scale": scale, "zero_point": zero}

    every_int8 = (lambda n: (np.arange(n) * 53) % 256 - 128)  # each of the 256 values, shuffled
    near_edges = (lambda n: (np.arange(n) % 300 - 20) / 256.0 + np.tile([0.0, 0.5 / 255, -0.5 / 255, 1e-7], n)[:n])
    cases = [
        _golden_case("int8 nhwc 0..1 (the exported tpsr_x4's parameters)", "nhwc", 1, (16, 16),
                     {"dtype": "int8", "range": [0.0, 1.0], "quantization": q(0.003921568859368563, -128)},
                     {"dtype": "int8", "range": [0.0, 1.0], "quantization": q(0.004468172322958708, -121)},
                     every_int8),
        _golden_case("int8 nchw -1..1, x2 (ties at every input value)", "nchw", 2, (16, 16),
                     {"dtype": "int8", "range": [-1.0, 1.0], "quantization": q(0.007843137718737125, 0)},
                     {"dtype": "int8", "range": [-1.0, 1.0], "quantization": q(0.0091, 3)}, every_int8),
        _golden_case("int8 nhwc 0..255", "nhwc", 1, (16, 16),
                     {"dtype": "int8", "range": [0.0, 255.0], "quantization": q(1.0, -128)},
                     {"dtype": "int8", "range": [0.0, 255.0], "quantization": q(1.0, -128)}, every_int8),
        _golden_case("float32 nhwc 0..1, x2", "nhwc", 2, (8, 8),
                     {"dtype": "float32", "range": [0.0, 1.0], "quantization": None},
                     {"dtype": "float32", "range": [0.0, 1.0], "quantization": None}, near_edges),
    ]
    return {"about": "pixels in, the model's input tensor out; a model output tensor in, 8-bit pixels out: "
                     "tinysr.android_demo.codec_io (the LiteRT runner's I/O and tinysr.imageio.quantize), by "
                     "tests/test_android_demo.py; pixels and tensors are flat, in the case's layout",
            "cases": cases}


def test_codec_golden_fixture_matches_tinysrs_runner_io():
    golden = _codec_golden()
    path = TEST_RESOURCES / "codec_golden.json"
    text = "{\"about\": " + json.dumps(golden["about"]) + ",\n \"cases\": [\n" + ",\n".join(
        json.dumps(c, separators=(",", ":")) for c in golden["cases"]) + "\n]}\n"
    if os.environ.get("TINYSR_UPDATE_FIXTURES"):
        path.write_text(text)
    assert path.is_file(), f"{path} missing: run with TINYSR_UPDATE_FIXTURES=1"
    assert json.loads(path.read_text()) == json.loads(text), f"{path} is stale: run with TINYSR_UPDATE_FIXTURES=1"
    first = golden["cases"][0]
    # the SAMPLE_CARD's int8 parameters: a grey of 128 is 0 after the zero point of -128
    assert first["input_tensor"][128 * 3] == 0 and first["input_tensor"][0] == -128
    assert len({v for c in golden["cases"][:3] for v in c["output_tensor"]}) == 256


def test_codec_io_quantizes_as_the_litert_runner():
    card = {"artifact": "m.tflite", "layout": "nchw", "scale": 1,
            "input": {"shape": [1, 3, 1, 2], "dtype": "int8", "range": [0.0, 1.0], "quantization": {"scale": 0.5, "zero_point": 1}},
            "output": {"shape": [1, 3, 1, 2], "dtype": "int8", "range": [0.0, 1.0], "quantization": {"scale": 0.5, "zero_point": 1}}}
    feed, out = codec_io(card, np.array([[[0, 255, 128], [255, 0, 64]]], np.uint8), np.array([[[[1, 3]], [[2, 2]], [[0, 1]]]], np.int8))
    assert feed.dtype == np.int8 and feed[0, :, 0, 0].tolist() == [1, 3, 2]  # 128/255 / 0.5 = 1.004 -> 1, + 1
    assert out.tolist() == [[[0, 128, 0], [255, 128, 0]]]


# The Kotlin unit tests on the JVM ------------------------------------------------------------------

ANDROID_DEMO = ROOT / "android_demo"
MODEL_SOURCES = APP / "src" / "main" / "java" / "dev" / "tinysr" / "demo" / "model"
TEST_SOURCES = APP / "src" / "test" / "java"
TOOLCHAIN = Path(os.environ.get("TINYSR_JVM_TOOLCHAIN")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinysr" / "jvm-toolchain")
SETUP = "android_demo/jvm-tests/setup.sh"


def _jvm_toolchain() -> tuple[Path, list[Path]]:
    """kotlinc and the test classpath's JARs, installed by setup.sh; skip (fail on CI) without them."""
    kotlinc = TOOLCHAIN / "kotlinc" / "bin" / "kotlinc"
    jars = sorted((TOOLCHAIN / "lib").glob("*.jar"))
    if not (TOOLCHAIN / "VERSIONS").is_file() or not kotlinc.is_file() or shutil.which("java") is None:
        reason = f"the Android demo's JVM test toolchain is not installed in {TOOLCHAIN}: run bash {SETUP}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return kotlinc, jars + [TOOLCHAIN / "kotlinc" / "lib" / "kotlin-stdlib.jar"]


def _kotlin_sources() -> list[Path]:
    return sorted(MODEL_SOURCES.glob("*.kt")) + sorted(TEST_SOURCES.rglob("*.kt"))


def test_model_classes_are_free_of_android():
    for src in sorted(MODEL_SOURCES.glob("*.kt")):
        imports = re.findall(r"^import\s+(\S+)", src.read_text(), re.M)
        assert not [i for i in imports if i.startswith(("android.", "androidx.", "com.google."))], src.name


def test_kotlin_unit_tests_pass_on_the_jvm():
    """app/src/test/**.kt on model/*.kt: compiled with kotlinc (cached by the sources' hash) and run with JUnit."""
    kotlinc, jars = _jvm_toolchain()
    sources = _kotlin_sources()
    key = hashlib.sha256((TOOLCHAIN / "VERSIONS").read_bytes())
    for src in sources:
        key.update(str(src.relative_to(APP)).encode() + b"\0" + src.read_bytes() + b"\0")
    build = TOOLCHAIN / "build"
    classes = build / key.hexdigest()[:20]
    if not (classes / ".complete").is_file():
        if build.is_dir():
            shutil.rmtree(build)  # one cached build: that of the current sources
        done = subprocess.run([str(kotlinc), "-jvm-target", "17", "-nowarn", "-cp", os.pathsep.join(map(str, jars)),
                               "-d", str(classes), *map(str, sources)], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"kotlinc failed:\n{done.stdout}\n{done.stderr}"
        (classes / ".complete").write_text("")
    tests = [".".join(p.relative_to(TEST_SOURCES).with_suffix("").parts) for p in sorted(TEST_SOURCES.rglob("*Test.kt"))]
    classpath = [classes, APP / "src" / "test" / "resources", ANDROID_DEMO / "contract", *jars]
    run = subprocess.run(["java", "-Xshare:auto", "-cp", os.pathsep.join(map(str, classpath)),
                          "org.junit.runner.JUnitCore", *tests], capture_output=True, text=True, timeout=300)
    report = run.stdout + run.stderr
    assert run.returncode == 0 and re.search(r"^OK \((\d+) tests?\)", report, re.M), report
    ran = int(re.search(r"^OK \((\d+) tests?\)", report, re.M).group(1))
    assert ran >= 9 and len(tests) >= 4, report
