"""The model card ``NAME.json`` written next to every exported artifact: format ``tinysr.model-card/1``.

:data:`FIELDS` is the format: every field's dotted path and type. The writer (:func:`dumps`), the
reader (:func:`read_card`, what :mod:`tinysr.runtimes` runs artifacts with) and the tests all use
it; ``export/README.md`` documents each field. Every field is always present.

Types:
    ``string``, ``int``, ``number`` (a finite float), ``bool``; ``scalar``: any of these;
    ``enum<a|b>``: one of the strings listed; ``T?``: T or ``null`` (the README says what null means);
    ``list<T>``: an array of T; ``map<T>``: an object with free keys and values of type T;
    ``object``: an object whose fields are exactly the ``PATH.NAME`` entries;
    ``list<object>``: an array of such objects, their fields listed as ``PATH[].NAME``.

Any change to a field's name, type or meaning, or a new field, makes a new format version.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

FORMAT = "tinysr.model-card/1"

_QUANT = {"scale": "number", "zero_point": "int"}
_TENSOR = {"shape": "list<int?>", "dtype": "enum<float32|int8>", "range": "list<number>", "color": "enum<RGB>",
           "quantization": "object?"}
_PART = {"file": "string", "box": "list<int>?"}


def _nest(prefix: str, fields: dict) -> dict:
    return {f"{prefix}.{k}": v for k, v in fields.items()}


FIELDS: dict[str, str] = {
    "format": f"enum<{FORMAT}>",
    "name": "string",
    "artifact": "string",
    "target": "enum<tflite|onnx>",
    "precision": "enum<fp32|fp16|int8>",
    "scale": "int",
    "layout": "enum<nhwc|nchw>",
    "dynamic_shape": "bool",
    "input": "object",
    **_nest("input", _TENSOR),
    **_nest("input.quantization", _QUANT),
    "output": "object",
    **_nest("output", _TENSOR),
    "output.clamped": "bool",
    **_nest("output.quantization", _QUANT),
    "source": "object",
    "source.model": "string",
    "source.weights": "enum<bundled|checkpoint|random-init>",
    "source.family": "string",
    "source.config": "map<scalar>",
    "source.state_sha256": "string",
    "source.file_sha256": "string?",
    "params": "int",
    "mult_adds": "number",
    "mult_adds_at": "list<int>",
    "op_histogram": "map<int>",
    "tflite": "object?",
    "tflite.mode": "enum<mobile|plain>",
    "tflite.gpu_delegate_unsupported": "list<string>",
    "onnx": "object?",
    "onnx.opset": "int",
    "onnx.before": "object",
    "onnx.before.nodes": "int",
    "onnx.before.initializers": "int",
    "onnx.after": "object",
    "onnx.after.nodes": "int",
    "onnx.after.initializers": "int",
    "calibration": "object?",
    "calibration.source": "string",
    "calibration.parts": "list<object>",
    **_nest("calibration.parts[]", _PART),
    "calibration.crops": "int",
    "calibration.crop_size": "list<int>",
    "calibration.method": "enum<mse|minmax|qat>",
    "verification_set": "object",
    "verification_set.source": "string",
    "verification_set.split": "enum<held-out-files|held-out-region|separate>",
    "verification_set.parts": "list<object>",
    **_nest("verification_set.parts[]", _PART),
    "parity": "object",
    "parity.max_abs_err_255": "number?",
    "parity.psnr_vs_torch_db": "number?",
    "parity.crops": "int",
    "parity.crop_size": "list<int>",
    "quality": "object?",
    "quality.psnr_fp32_torch_db": "number?",
    "quality.psnr_artifact_db": "number?",
    "quality.loss_db": "number?",
    "quality.images": "int",
    "verification": "object",
    "verification.passed": "bool",
    "verification.failures": "list<string>",
    "verification.max_abs_err_255": "number?",
    "verification.max_loss_db": "number?",
    "file_size": "int",
    "sha256": "string",
    "tools": "map<string?>",
}


class CardError(ValueError):
    pass


def finite(value) -> float | None:
    """``value`` as a float, or None when it is not finite (how the card writes inf / NaN)."""
    v = float(value)
    return v if math.isfinite(v) else None


def _children(path: str) -> dict[str, str]:
    prefix = path + "." if path else ""
    return {k[len(prefix):]: t for k, t in FIELDS.items()
            if k.startswith(prefix) and "." not in k[len(prefix):]}


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a bool", int: "an int", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _check(value, typ: str, spath: str, where: str, out: list[str]) -> None:
    if typ.endswith("?"):
        if value is None:
            return
        typ = typ[:-1]
    bad = f"{where}: expected {typ}, got {_kind(value)}"
    if typ == "object":
        if not isinstance(value, dict):
            out.append(bad)
            return
        want = _children(spath)
        for key in sorted(set(want) - set(value)):
            out.append(f"{where}.{key}: missing" if where else f"{key}: missing")
        for key in sorted(set(value) - set(want)):
            out.append(f"{where}.{key}: not a field of {FORMAT}" if where else f"{key}: not a field of {FORMAT}")
        for key in sorted(set(want) & set(value)):
            sub = f"{spath}.{key}" if spath else key
            _check(value[key], want[key], sub, f"{where}.{key}" if where else key, out)
    elif typ.startswith("list<"):
        if not isinstance(value, list):
            out.append(bad)
            return
        inner = typ[5:-1]
        for i, v in enumerate(value):
            _check(v, inner, spath + "[]" if inner == "object" else spath, f"{where}[{i}]", out)
    elif typ.startswith("map<"):
        if not isinstance(value, dict):
            out.append(bad)
            return
        for k, v in value.items():
            _check(v, typ[4:-1], spath, f"{where}[{k!r}]", out)
    elif typ.startswith("enum<"):
        allowed = typ[5:-1].split("|")
        if value not in allowed:
            out.append(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
    elif not _scalar_ok(value, typ):
        out.append(bad)


def _scalar_ok(value, typ: str) -> bool:
    if typ == "scalar":
        return any(_scalar_ok(value, t) for t in ("string", "int", "number", "bool"))
    if typ == "string":
        return isinstance(value, str)
    if typ == "bool":
        return isinstance(value, bool)
    if typ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "number":
        return isinstance(value, float) and math.isfinite(value)
    raise ValueError(f"unknown card type {typ!r}")


def problems(card) -> list[str]:
    """Every way ``card`` differs from :data:`FIELDS` (missing / unknown fields, wrong types); [] if none."""
    out: list[str] = []
    _check(card, "object", "", "", out)
    return out


def dumps(card: dict) -> str:
    """The card as strict JSON text (no NaN / Infinity), after checking it against :data:`FIELDS`."""
    bad = problems(card)
    if bad:
        raise CardError(f"model card does not follow {FORMAT}: " + "; ".join(bad[:5]))
    return json.dumps(card, indent=2, allow_nan=False) + "\n"


def _reject_constant(name: str):
    raise CardError(f"{name} is not JSON")


def read_card(path: str | Path) -> dict:
    """Read and check a model card; :class:`CardError` (one line, naming the file) if it is not one."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise CardError(f"{path}: not a model card (invalid JSON: {e})") from None
    fmt = card.get("format") if isinstance(card, dict) else None
    if fmt != FORMAT:
        raise CardError(f"{path}: model card format {fmt!r}, this tinysr reads {FORMAT!r}; "
                        "re-export the model with `tinysr export`")
    bad = problems(card)
    if bad:
        raise CardError(f"{path}: not a valid {FORMAT} card: " + "; ".join(bad[:3]))
    return card
