"""``tinysr export``: model -> verified .tflite / .onnx with a model card.

Stages (each with progress): trace (load and wrap the model), convert, simplify (ONNX),
quantize (fp16 / int8), verify (run the artifact in its own runtime on real images against
PyTorch; for quantized artifacts also the Y-PSNR loss on the verification set), card.

The verification set never overlaps the calibration data: without ``verify_data`` the image
source (``calib``, else the bundled photo) is split by
:func:`~tinysr.export.quantize.held_out_split` into a calibration part and a held-out part that
verifies; a ``verify_data`` set sharing a file with the calibration crops is refused. The model
card (format :data:`tinysr.export.card.FORMAT`, documented in ``export/README.md``) records both.

An artifact that misses a verification threshold is not written under its name: it is kept
as ``NAME.rejected.EXT`` (with its card) for inspection, and :class:`ExportVerificationError`
reports the numbers.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..imageio import atomic_write
from ..provenance import file_sha256, state_sha256, tool_versions
from . import card as cards

TARGETS = ("tflite", "onnx")
PRECISIONS = ("fp32", "fp16", "int8")
CHOICES = {"target": TARGETS, "precision": PRECISIONS, "layout": ("nhwc", "nchw"), "value_range": ("0-1", "0-255"),
           "mode": ("mobile", "plain")}
_FLAGS = {"target": "--target", "precision": "--precision", "layout": "--layout", "value_range": "--range",
          "mode": "--mode"}
FP32_MAX_ABS = 1e-3  # on a 0-255 scale
DEFAULT_MAX_LOSS_DB = {"fp16": 0.05, "int8": 0.3}
TFLITE_CALIBRATION = "mse"  # tflite_int8's default; onnx_int8 calibrates with min / max


class ExportVerificationError(RuntimeError):
    pass


@dataclass
class ExportOptions:
    target: str = "tflite"
    precision: str = "fp32"
    input_size: tuple[int, int] = (180, 320)
    dynamic: bool = False
    layout: str | None = None  # default: nhwc for tflite, nchw for onnx
    value_range: str = "0-1"  # or 0-255
    mode: str = "mobile"  # tflite graph: mobile (native ops) | plain
    int8_io: bool = False  # tflite int8: int8 input/output tensors instead of float
    calib: str | None = None  # images for int8 calibration and the held-out verification part (default: bundled photo)
    calib_count: int = 32
    verify_data: str | None = None  # HR images / benchmark folder verifying instead of the held-out part
    max_loss_db: float | None = None
    opset: int = 17
    simplify: bool = True
    random_init: bool = False  # registry models without weights: export the architecture (for latency work)

    def resolved(self) -> "ExportOptions":
        o = ExportOptions(**asdict(self))
        o.layout = o.layout or ("nhwc" if o.target == "tflite" else "nchw")
        for key, allowed in CHOICES.items():
            if getattr(o, key) not in allowed:
                raise ValueError(f"{_FLAGS[key]} must be one of {', '.join(allowed)}, got {getattr(o, key)!r}")
        if o.target == "onnx" and o.precision == "fp16":
            raise ValueError("ONNX export supports fp32 and int8 (QDQ); use --target tflite for fp16")
        if o.dynamic and o.target == "tflite":
            raise ValueError("--dynamic-shape is an ONNX option: TFLite models are converted at a fixed "
                             "--input-size (TPSR-family .tflite models can still be resized at run time)")
        if o.int8_io and not (o.target == "tflite" and o.precision == "int8"):
            raise ValueError("--int8-io applies to --target tflite --precision int8 only")
        o.input_size = tuple(int(v) for v in o.input_size)
        if o.max_loss_db is None:
            o.max_loss_db = DEFAULT_MAX_LOSS_DB.get(o.precision)
        return o


def _source_info(spec: str, model) -> dict:
    from ..checkpoint import bundled_weights_path, get_entry, list_models, model_record

    path = Path(spec)
    if path.is_file():
        weights, file_hash = "checkpoint", file_sha256(path)
    elif spec in list_models() and get_entry(spec).weights and bundled_weights_path(get_entry(spec).weights).is_file():
        weights, file_hash = "bundled", file_sha256(bundled_weights_path(get_entry(spec).weights))
    else:
        weights, file_hash = "random-init", None
    return {"model": path.name if path.is_file() else spec, "weights": weights, **model_record(model),
            "state_sha256": state_sha256(model), "file_sha256": file_hash}


def _describe(where: str | None) -> str:
    """An image source as the card names it: a folder / file name (a glob: folder/pattern), never a full path."""
    if where is None:
        from ..bundled import sample_photo

        return f"tinysr/samples/{sample_photo().name}"
    p = Path(where).expanduser().resolve()
    return f"{p.parent.name}/{p.name}" if any(c in p.name for c in "*?[") else p.name


def _source_images(folder: str | None) -> list[Path]:
    from ..bundled import sample_photo
    from ..imageio import list_images

    if folder:
        files = list_images([folder])
        if not files:
            raise FileNotFoundError(f"{folder}: no images")
        return files
    return [sample_photo()]


def _data_sets(o: ExportOptions, scale: int, work: Path):
    """``(calibration parts, verification files, verification folder, verification_set record)``."""
    from .quantize import ImagePart, held_out_split, part_files

    files = _source_images(o.calib)
    if o.verify_data:
        from ..data.datasets import benchmark_dataset

        verify = [Path(n) for n in benchmark_dataset(o.verify_data, scale).names]
        record = {"source": _describe(o.verify_data), "split": "separate",
                  "parts": [ImagePart(f).record() for f in verify]}
        return [ImagePart(f) for f in files], verify, o.verify_data, record
    calib, held, split = held_out_split(files)
    pairs = part_files(held, work / "verify", copy_whole=True)
    if not pairs:
        raise ValueError(f"{_describe(o.calib)}: none of the images held out for verification can be read")
    record = {"source": _describe(o.calib), "split": split, "parts": [part.record() for _, part in pairs]}
    return calib, [f for f, _ in pairs], work / "verify", record


def _calibration(o: ExportOptions, parts, verify_files, scale: int, work: Path, method: str):
    """Calibration crops (NCHW, [0, 1]) of the calibration parts, and the card's ``calibration`` record."""
    from .quantize import calibration_samples, part_files

    by_file = dict(part_files(parts, work / "calib", copy_whole=False))
    samples, used = calibration_samples(list(by_file), o.input_size, count=o.calib_count, scale=scale,
                                        return_files=True)
    if o.verify_data:  # a separate verification set must not share an image with the calibration crops
        seen = {file_sha256(f): f for f in used}
        shared = sorted({seen[h].name for h in map(file_sha256, verify_files) if h in seen})
        if shared:
            raise ValueError(f"--verify-data {_describe(o.verify_data)} shares {len(shared)} image(s) with the "
                             f"calibration crops from {_describe(o.calib)} ({', '.join(shared[:3])}): the quality "
                             "check would measure on calibration data; verify on other images")
    record = {"source": _describe(o.calib), "parts": [by_file[f].record() for f in used], "crops": len(samples),
              "crop_size": list(o.input_size), "method": method}
    return samples, record


def _artifact_runner(path: Path, card: dict):
    from ..runtimes import LiteRTRunner, OnnxRunner

    return LiteRTRunner(path, card=card) if path.suffix == ".tflite" else OnnxRunner(path, card=card)


def _parity(model, runner, inputs: list[np.ndarray]) -> dict:
    errs, psnrs = [], []
    for x in inputs:
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = runner(x)
        d = (got - ref) * 255.0
        errs.append(float(np.abs(d).max()))
        mse = float(np.mean(d ** 2))
        psnrs.append(float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    return {"max_abs_err_255": max(errs), "psnr_vs_torch_db": min(psnrs), "crops": len(inputs),
            "crop_size": [int(v) for v in inputs[0].shape[2:]]}


def _quality(model, runner, data) -> dict:
    """Y-PSNR (shave = scale) of the artifact and of the fp32 PyTorch model on the same LR inputs.

    The PyTorch model is run as the artifact is (in the same tiles when the artifact's input size
    is fixed), so that the loss is the precision's alone.
    """
    from ..evaluate import evaluate, mean_row
    from ..runtimes import TorchRunner

    ref_runner = TorchRunner(model)
    ref_runner.fixed_size = runner.fixed_size
    ref_rows = evaluate(ref_runner, data, lpips=False, progress=False)
    got = mean_row(evaluate(runner, data, lpips=False, progress=False)).psnr
    ref = mean_row(ref_rows).psnr
    return {"psnr_fp32_torch_db": ref, "psnr_artifact_db": got, "loss_db": 0.0 if ref == got else ref - got,
            "images": len(ref_rows)}


def export_model(spec: str, out: str | Path, options: ExportOptions, progress: bool = True) -> dict:
    """Export ``spec`` (registry name, checkpoint) to ``out``; returns the model card (also written)."""
    from tqdm.auto import tqdm

    from ..checkpoint import load_model, qat_record
    from ..complexity import measure
    from ..models.mobile import deploy

    o = options.resolved()
    out = Path(out)
    ext = "." + o.target
    if out.suffix != ext:
        raise ValueError(f"output {out} must end in {ext} for --target {o.target}")
    stages = ["trace", "convert"] + (["simplify"] if o.target == "onnx" else []) + \
             (["quantize"] if o.precision != "fp32" else []) + ["verify", "card"]
    bar = tqdm(total=len(stages), desc="export", disable=not progress, leave=False)
    done: list[str] = []

    def stage(name):
        if done:
            bar.update(1)
        done.append(name)
        bar.set_description(f"export: {name}")

    stage("trace")
    model = deploy(load_model(spec, allow_random=o.random_init)).float().eval()
    qat = qat_record(spec) if o.target == "tflite" and o.precision == "int8" else None
    if qat is not None and o.value_range != "0-1":
        raise ValueError(f"{spec} holds int8 ranges learnt for inputs in [0, 1] (quantization-aware training): "
                         "export it with --range 0-1")
    cx = measure(model, o.input_size)
    source = _source_info(spec, model)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tinysr-export-", dir=out.parent))
    try:
        card, art = _export(model, o, work, stage, cx, source, qat)
        return _finish(card, art, out, o)
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)


def _io(card_io: dict, value_max: float) -> dict:
    return {"shape": card_io["shape"], "dtype": card_io["dtype"], "range": [0.0, value_max], "color": "RGB",
            "quantization": card_io["quantization"]}


def _export(model, o: ExportOptions, work: Path, stage, cx, source, qat: dict | None = None) -> tuple[dict, Path]:
    from .adapters import IOAdapter

    scale = model.scale
    value_max = 255.0 if o.value_range == "0-255" else 1.0
    calib_parts, verify_files, verify_folder, verify_record = _data_sets(o, scale, work)
    calibration = tflite = onnx_stats = None
    if o.target == "tflite":
        from .flatbuffer import io_tensors, op_histogram
        from .gpu_support import gpu_delegate_issues
        from .tflite_convert import convert_tflite

        stage("convert")
        wrapped = IOAdapter(model, value_max) if value_max != 1.0 else model
        flat = convert_tflite(wrapped, o.input_size, mode=o.mode, layout=o.layout)
        if o.precision != "fp32":
            stage("quantize")
            from .quantize import tflite_fp16, tflite_int8

            if o.precision == "fp16":
                flat = tflite_fp16(flat)
            elif qat is not None:  # the ranges quantization-aware training learnt, no calibration
                from .qat import QATModel, learnt_tensor_params

                trained = QATModel(model)
                trained.load_record(qat, source["model"])
                flat = tflite_int8(flat, [], layout=o.layout, io="int8" if o.int8_io else "float",
                                   learnt=learnt_tensor_params(trained, flat))
                calibration = {"source": "quantization-aware training (the learnt ranges)", "parts": [], "crops": 0,
                               "crop_size": list(o.input_size), "method": "qat"}
            else:
                samples, calibration = _calibration(o, calib_parts, verify_files, scale, work, TFLITE_CALIBRATION)
                flat = tflite_int8(flat, [s * value_max for s in samples], layout=o.layout,
                                   io="int8" if o.int8_io else "float", calibration=TFLITE_CALIBRATION)
        art = work / "model.tflite"
        art.write_bytes(flat)
        hist, io = op_histogram(flat), io_tensors(flat)
        tflite = {"mode": o.mode, "gpu_delegate_unsupported": gpu_delegate_issues(flat)}
    else:
        import onnx

        from .onnx_export import export_onnx, io_tensors_onnx, op_histogram_onnx

        stage("convert")
        wrapped = IOAdapter(model, value_max, nhwc=o.layout == "nhwc")
        art = work / "model.onnx"
        stats = export_onnx(wrapped, o.input_size, art, o.opset, o.dynamic, o.layout, simplify=False)
        if o.simplify:
            stage("simplify")
            stats = export_onnx(wrapped, o.input_size, art, o.opset, o.dynamic, o.layout, simplify=True)
        hist = stats["op_histogram"]
        onnx_stats = {k: v for k, v in stats.items() if k != "op_histogram"}
        if o.precision == "int8":
            stage("quantize")
            from .quantize import onnx_int8

            samples, calibration = _calibration(o, calib_parts, verify_files, scale, work, "minmax")
            samples = [(s * value_max).transpose(0, 2, 3, 1).copy() if o.layout == "nhwc" else s * value_max
                       for s in samples]
            fp32_path, art = art, work / "model.int8.onnx"
            onnx_int8(fp32_path, art, samples)
            hist = op_histogram_onnx(onnx.load(str(art)))
        io = io_tensors_onnx(onnx.load(str(art)))
    card = {
        "format": cards.FORMAT, "name": f"{_display_name(source)} {o.precision}", "artifact": "",
        "target": o.target, "precision": o.precision, "scale": scale, "layout": o.layout,
        "dynamic_shape": bool(o.dynamic),
        "input": _io(io["inputs"][0], value_max),
        "output": {**_io(io["outputs"][0], value_max), "clamped": False},
        "source": source, "params": int(cx.params), "mult_adds": float(cx.mult_adds),
        "mult_adds_at": list(o.input_size),
        "op_histogram": hist, "tflite": tflite, "onnx": onnx_stats,
        "calibration": calibration, "verification_set": verify_record,
    }
    stage("verify")
    runner = _artifact_runner(art, card)  # presents [0, 1] NCHW I/O whatever the artifact's, as the card says
    from .quantize import calibration_samples

    inputs = calibration_samples(verify_files, o.input_size, count=3, scale=scale, seed=1)
    card["parity"] = _parity(model, runner, inputs)
    card["quality"] = _quality(model, runner, verify_folder) if o.precision != "fp32" else None
    card["file_size"] = art.stat().st_size
    card["sha256"] = file_sha256(art)
    card["tools"] = tool_versions()
    stage("card")
    return card, art


def _display_name(source: dict) -> str:
    return Path(source["model"]).stem if source["weights"] == "checkpoint" else source["model"]


def _finish(card: dict, art: Path, out: Path, o: ExportOptions) -> dict:
    failures = []
    par, q = card["parity"], card["quality"]
    if o.precision == "fp32" and not par["max_abs_err_255"] <= FP32_MAX_ABS:
        failures.append(f"fp32 parity: max abs error {par['max_abs_err_255']:.2e} > {FP32_MAX_ABS:.0e} (0-255 scale)")
    if q is not None and o.max_loss_db is not None and not q["loss_db"] <= o.max_loss_db:
        failures.append(f"{o.precision} quality: Y-PSNR {q['psnr_artifact_db']:.3f} dB vs fp32 "
                        f"{q['psnr_fp32_torch_db']:.3f} dB, loss {q['loss_db']:.3f} dB > {o.max_loss_db} dB")
    for key in ("max_abs_err_255", "psnr_vs_torch_db"):
        par[key] = cards.finite(par[key])
    if q is not None:
        for key in ("psnr_fp32_torch_db", "psnr_artifact_db", "loss_db"):
            q[key] = cards.finite(q[key])
    card["verification"] = {"passed": not failures, "failures": failures,
                            "max_abs_err_255": FP32_MAX_ABS if o.precision == "fp32" else None,
                            "max_loss_db": None if o.max_loss_db is None else float(o.max_loss_db)}
    dest = out if not failures else out.with_name(out.stem + ".rejected" + out.suffix)
    card["artifact"] = dest.name
    text = cards.dumps(card)
    atomic_write(dest, lambda tmp: shutil.copyfile(art, tmp))
    atomic_write(dest.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    if failures:
        raise ExportVerificationError(f"{out.name}: verification failed: " + "; ".join(failures)
                                      + f" (artifact kept as {dest} for inspection)")
    return card


PRESET_DIRS = [Path("export") / "presets", Path(__file__).resolve().parents[2] / "export" / "presets"]


def _expected_type(hint) -> tuple[str, object]:
    """(description, checker) of an :class:`ExportOptions` field's type, for preset values."""
    import types
    import typing

    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        n = len(typing.get_args(hint))
        what = f"a list of {n} ints (e.g. [180, 320])"
        ok = lambda v: isinstance(v, list) and len(v) == n and all(type(x) is int for x in v)  # noqa: E731
    else:
        what = {str: "a string", int: "an int", float: "a number", bool: "true or false"}[hint]
        ok = {str: lambda v: isinstance(v, str), int: lambda v: type(v) is int,
              float: lambda v: type(v) in (int, float), bool: lambda v: isinstance(v, bool)}[hint]
    return (what + " or null", lambda v: v is None or ok(v)) if optional else (what, ok)


def _check_preset(p: Path, data) -> dict:
    import typing

    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {p}: expected a mapping of option: value, got {type(data).__name__} "
                         f"({'a list' if isinstance(data, list) else repr(data)[:40]})")
    hints = typing.get_type_hints(ExportOptions)
    unknown = sorted(str(k) for k in data if k not in hints)
    if unknown:
        raise ValueError(f"preset {p}: unknown key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(ExportOptions.__dataclass_fields__)})")
    for key, value in data.items():
        what, ok = _expected_type(hints[key])
        if not ok(value):
            raise ValueError(f"preset {p}: {key} must be {what}, got {value!r} ({type(value).__name__})")
        if key in CHOICES and value is not None and value not in CHOICES[key]:
            raise ValueError(f"preset {p}: {key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    return data


def load_preset(name: str) -> dict:
    """A preset by name (``export/presets/NAME.yaml``, here or in the source tree) or a YAML path.

    Raises ValueError (one line naming the file) for a missing preset, invalid YAML, a document
    that is not a mapping, unknown keys or values of the wrong type.
    """
    import yaml

    is_path = name.endswith((".yaml", ".yml")) or os.sep in name
    candidates = [Path(name)] if is_path else [d / f"{name}.yaml" for d in PRESET_DIRS]
    for p in candidates:
        if p.is_file():
            try:
                data = yaml.safe_load(p.read_text())
            except UnicodeDecodeError:
                raise ValueError(f"preset {p}: not a UTF-8 text file") from None
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                why = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise ValueError(f"preset {p}: invalid YAML{where}: {why}") from None
            return _check_preset(p, data)
    if is_path:
        raise ValueError(f"preset file {name}: not found")
    avail = sorted({p.stem for d in PRESET_DIRS if d.is_dir() for p in d.glob("*.yaml")})
    raise ValueError(f"no preset {name!r}; available: {', '.join(avail) or 'none'}")


def format_card(card: dict) -> str:
    par = card["parity"]
    inp = card["input"]
    err = "n/a" if par["max_abs_err_255"] is None else f"{par['max_abs_err_255']:.2e}"
    psnr = "inf" if par["psnr_vs_torch_db"] is None else f"{par['psnr_vs_torch_db']:.1f}"
    lines = [f"{card['artifact']} ({card['name']}): {card['target']}, {card['layout'].upper()} {inp['dtype']} "
             f"{inp['shape']} -> {card['output']['shape']}, range {inp['range'][0]:g}-{inp['range'][1]:g}, "
             f"{card['file_size'] / 1024:.1f} KiB",
             f"  params {card['params']:,}, Mult-Adds {card['mult_adds'] / 1e9:.3f} G at "
             f"{card['mult_adds_at'][0]}x{card['mult_adds_at'][1]}",
             "  ops: " + ", ".join(f"{k} {v}" for k, v in card["op_histogram"].items()),
             f"  parity vs PyTorch: max abs err {err} (0-255), PSNR {psnr} dB on {par['crops']} real crops"]
    if inp["quantization"]:
        iq, oq = inp["quantization"], card["output"]["quantization"]
        lines.append(f"  int8 I/O: input scale {iq['scale']:.6g} zero point {iq['zero_point']}, "
                     f"output scale {oq['scale']:.6g} zero point {oq['zero_point']}")
    if card["onnx"]:
        b, a = card["onnx"]["before"], card["onnx"]["after"]
        lines.append(f"  onnxsim: nodes {b['nodes']} -> {a['nodes']}, "
                     f"initializers {b['initializers']} -> {a['initializers']}")
    vs = card["verification_set"]
    if card["calibration"]:
        c = card["calibration"]
        lines.append(f"  calibration: {c['crops']} crops of {c['crop_size'][0]}x{c['crop_size'][1]} from "
                     f"{len(c['parts'])} image part(s) of {c['source']}")
    lines.append(f"  verification set: {len(vs['parts'])} image part(s) of {vs['source']} ({vs['split']})")
    q = card["quality"]
    if q:
        fmt = lambda v: "inf" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"  Y-PSNR: artifact {fmt(q['psnr_artifact_db'])} dB vs fp32 {fmt(q['psnr_fp32_torch_db'])} dB "
                     f"(loss {fmt(q['loss_db'])} dB) on {q['images']} image(s)")
    if card["tflite"] and card["tflite"]["gpu_delegate_unsupported"]:
        lines.append("  GPU delegate would not run: " + "; ".join(card["tflite"]["gpu_delegate_unsupported"]))
    elif card["tflite"]:
        lines.append("  GPU delegate: every op supported")
    return "\n".join(lines)
