"""``tinysr android-demo prepare``: export a model into the Android demo app's assets.

The app (``android_demo/``) runs the one ``.tflite`` in ``app/src/main/assets/models/`` and learns
everything about it from the model card beside it. ``android_demo/contract/card_contract.json`` is
the contract both sides read: the card format the app accepts, every card field it reads with its
type (types as in :data:`tinysr.export.card.FIELDS`), the overlap its tile plan asks for, and the
messages it shows. The Kotlin reader is packaged with the file (an asset and a test resource); here
:func:`read_app_card` checks a card exactly as the app does, with the same messages.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

ANDROID_DEMO = Path(__file__).resolve().parents[1] / "android_demo"
DEFAULT_INPUT_SIZE = (256, 256)  # square: the tile plan cuts square tiles of the window's shorter side


class AppCardError(ValueError):
    pass


def default_app_dir() -> Path:
    return ANDROID_DEMO / "app" if ANDROID_DEMO.is_dir() else Path("android_demo") / "app"


def contract_path(app_dir: str | Path) -> Path:
    return Path(app_dir).resolve().parent / "contract" / "card_contract.json"


def load_contract(app_dir: str | Path | None = None) -> dict:
    path = contract_path(app_dir or default_app_dir())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no card contract (is {path.parent.parent} the android_demo project?)")
    return json.loads(path.read_text())


def _text(value) -> str:
    """A JSON value as compact JSON text, the way the app prints it."""
    return json.dumps(value, separators=(",", ":"))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def message(contract: dict, key: str, **values) -> str:
    text = contract["messages"][key]
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a bool", int: "an int", float: "a number",
            type(None): "null"}[type(value)]


def _type_problem(value, typ: str, where: str) -> str | None:
    if typ.endswith("?"):
        if value is None:
            return None
        typ = typ[:-1]
    if typ.startswith("enum<"):
        allowed = typ[5:-1].split("|")
        return None if value in allowed else f"{where}: expected one of {', '.join(allowed)}, got {_text(value)}"
    if typ.startswith("list<"):
        if not isinstance(value, list):
            return f"{where}: expected {typ}, got {_kind(value)}"
        for i, v in enumerate(value):
            bad = _type_problem(v, typ[5:-1], f"{where}[{i}]")
            if bad:
                return bad
        return None
    ok = {"object": lambda v: isinstance(v, dict), "string": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool), "int": lambda v: type(v) is int,
          "number": lambda v: type(v) is float}[typ](value)
    return None if ok else f"{where}: expected {typ}, got {_kind(value)}"


def field_problem(card: dict, fields: dict[str, str]) -> str | None:
    """The first way ``card`` breaks the contract's ``fields`` (in their order), as the app words it."""
    for path, typ in fields.items():
        value, skip = card, False
        parts = path.split(".")
        for i, key in enumerate(parts):
            parent = ".".join(parts[:i])
            if value is None and fields.get(parent, "").endswith("?"):
                skip = True  # a null optional object: its fields are absent
                break
            if not isinstance(value, dict):
                return f"{parent}: expected object, got {_kind(value)}"
            if key not in value:
                return f"{path}: missing"
            value = value[key]
        if not skip:
            bad = _type_problem(value, typ, path)
            if bad:
                return bad
    return None


def fixed_shape(shape: list, layout: str) -> bool:
    """Whether ``shape`` is one fixed-size RGB image: 1 x H x W x 3 (nhwc) or 1 x 3 x H x W (nchw)."""
    if len(shape) != 4 or not all(isinstance(v, int) and v > 0 for v in shape):
        return False
    return shape[0] == 1 and (shape[3] if layout == "nhwc" else shape[1]) == 3


def read_app_card(models_dir: str | Path, contract: dict) -> dict:
    """The card the app would run from ``models_dir``, or :class:`AppCardError` with the app's message."""
    models_dir = Path(models_dir)
    cards = sorted(p.name for p in models_dir.glob("*.json")) if models_dir.is_dir() else []
    if not cards:
        raise AppCardError(message(contract, "no_model"))
    if len(cards) > 1:
        raise AppCardError(message(contract, "several_models", count=len(cards), names=", ".join(cards)))
    name = cards[0]
    try:
        card = json.loads((models_dir / name).read_text(), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise AppCardError(message(contract, "bad_json", file=name)) from None
    found = card.get("format") if isinstance(card, dict) else None
    if found != contract["card_format"]:
        raise AppCardError(message(contract, "wrong_format", file=name, found=_text(found),
                                   expected=contract["card_format"]))
    bad = field_problem(card, contract["fields"])
    if bad:
        raise AppCardError(message(contract, "bad_field", file=name, expected=contract["card_format"], detail=bad))
    if card["target"] != "tflite":
        raise AppCardError(message(contract, "not_tflite", file=name, target=card["target"]))
    if not fixed_shape(card["input"]["shape"], card["layout"]):
        raise AppCardError(message(contract, "not_fixed", file=name, shape=_text(card["input"]["shape"])))
    if not (models_dir / card["artifact"]).is_file():
        raise AppCardError(message(contract, "missing_artifact", file=name, artifact=card["artifact"]))
    return card


def codec_io(card: dict, pixels, output) -> tuple:
    """What tinysr feeds a model with ``card`` for ``pixels`` and makes of its ``output``, as the app's
    ``TensorCodec`` must: ``pixels`` is the input window (H x W x 3 uint8), read as ``tinysr.imageio``
    reads an 8-bit image; ``output`` is the model's output tensor (the card's dtype and layout).
    Returns (the input tensor, the output as uint8 sH x sW x 3 pixels), through the LiteRT runner's own
    I/O conversion (value range, layout, int8 quantization with the card's parameters) and
    ``tinysr.imageio.quantize``, the path of ``tinysr upscale``.
    """
    import numpy as np

    from .imageio import quantize
    from .runtimes import LiteRTRunner

    runner = LiteRTRunner.__new__(LiteRTRunner)  # its I/O conversion, without a model to load
    runner._setup_io(card, card["input"]["shape"], "nchw", card["input"]["dtype"], Path(card["artifact"]))
    rgb = np.asarray(pixels, np.uint8).astype(np.float32) / 255.0
    feed = runner._to_input(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]))
    no_params = (0.0, 0)  # the card's parameters are used; the interpreter's would be the fallback
    if card["input"]["dtype"] == "int8":
        feed = runner._quant(feed, {"dtype": np.int8, "quantization": no_params})
    output = np.asarray(output)
    sr = runner._from_output(runner._dequant(output, {"dtype": output.dtype.type, "quantization": no_params}))
    return feed, quantize(np.clip(sr[0].transpose(1, 2, 0), 0.0, 1.0))


def export_options(precision: str, input_size=None, int8_io: bool | None = None, calib: str | None = None,
                   preset: str | None = None):
    """The export options of ``prepare``: the ``tflite-PRECISION`` preset (or ``preset``) with the overrides."""
    from .export.pipeline import ExportOptions, load_preset

    opts = dict(load_preset(preset or f"tflite-{precision}"))
    opts["precision"] = precision
    opts["input_size"] = tuple(input_size or DEFAULT_INPUT_SIZE)
    if opts.get("target", "tflite") != "tflite":
        raise ValueError(f"preset {preset}: target {opts['target']}; the app runs .tflite models")
    if int8_io is None:
        int8_io = precision == "int8"  # int8 tensors in and out, quantized with the card's parameters
    opts["int8_io"] = int8_io
    if calib:
        opts["calib"] = calib
    return ExportOptions(**opts).resolved()


def _swap_in(staging: Path, models: Path) -> None:
    """Replace ``models`` by ``staging`` (both folders in one parent): two renames, the old one then removed."""
    old = None
    if models.exists():
        old = Path(tempfile.mkdtemp(prefix=".tinysr-old-", dir=models.parent))
        os.replace(models, old / models.name)
    os.replace(staging, models)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare(spec: str, precision: str = "fp32", app_dir: str | Path | None = None, input_size=None,
            int8_io: bool | None = None, calib: str | None = None, preset: str | None = None,
            progress: bool = True) -> tuple[dict, Path]:
    """Export ``spec`` with ``tinysr export``'s pipeline into the app's ``assets/models/`` (replacing the
    model there); returns (card, path of the .tflite)."""
    from .export.pipeline import ExportVerificationError, export_model

    app_dir = Path(app_dir) if app_dir else default_app_dir()
    if not (app_dir / "src" / "main" / "AndroidManifest.xml").is_file():
        raise FileNotFoundError(f"{app_dir}: not the android_demo app module (no src/main/AndroidManifest.xml)")
    contract = load_contract(app_dir)
    options = export_options(precision, input_size, int8_io, calib, preset)
    assets = app_dir / "src" / "main" / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    models = assets / contract["models_dir"]
    name = Path(spec).stem if Path(spec).suffix else spec
    staging = Path(tempfile.mkdtemp(prefix=".tinysr-prepare-", dir=assets))
    try:
        art = staging / f"{name}_{options.precision}.tflite"
        try:
            export_model(spec, art, options, progress=progress)
        except ExportVerificationError as e:  # the rejected artifact goes with the staging folder
            raise ExportVerificationError(str(e).split(" (artifact kept")[0] + "; the app's model is unchanged") from None
        read_app_card(staging, contract)  # the app accepts it, or a one-line error and the old model stays
        _swap_in(staging, models)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    card = read_app_card(models, contract)
    return card, models / card["artifact"]
