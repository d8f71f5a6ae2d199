"""``tinysr export``: model -> verified .tflite / .onnx with a model card.

Stages (each with progress): trace (load and wrap the model), convert, simplify (ONNX),
quantize (fp16 / int8), verify (run the artifact in its own runtime on real images against
PyTorch; for quantized artifacts also the Y-PSNR loss on an evaluation set), card.

An artifact that misses a verification threshold is not written under its name: it is kept
as ``NAME.rejected.EXT`` (with its card) for inspection, and :class:`ExportVerificationError`
reports the numbers.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..imageio import atomic_write
from ..provenance import file_sha256, state_sha256, tool_versions

TARGETS = ("tflite", "onnx")
PRECISIONS = ("fp32", "fp16", "int8")
FP32_MAX_ABS = 1e-3  # on a 0-255 scale
DEFAULT_MAX_LOSS_DB = {"fp16": 0.05, "int8": 0.3}


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
    calib: str | None = None  # folder of images for int8 calibration (default: bundled sample)
    calib_count: int = 32
    verify_data: str | None = None  # HR images / benchmark folder for the quantized Y-PSNR check
    max_loss_db: float | None = None
    opset: int = 17
    simplify: bool = True
    random_init: bool = False  # registry models without weights: export the architecture (for latency work)

    def resolved(self) -> "ExportOptions":
        o = ExportOptions(**asdict(self))
        if o.target not in TARGETS:
            raise ValueError(f"--target must be one of {', '.join(TARGETS)}, got {o.target!r}")
        if o.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {o.precision!r}")
        if o.value_range not in ("0-1", "0-255"):
            raise ValueError(f"--range must be 0-1 or 0-255, got {o.value_range!r}")
        o.layout = o.layout or ("nhwc" if o.target == "tflite" else "nchw")
        if o.layout not in ("nhwc", "nchw"):
            raise ValueError(f"--layout must be nhwc or nchw, got {o.layout!r}")
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
    info = {"model": spec, **model_record(model), "state_sha256": state_sha256(model)}
    if spec in list_models() and not (get_entry(spec).weights and bundled_weights_path(get_entry(spec).weights).is_file()):
        info["weights"] = "random initialisation (architecture only)"
    if path.is_file():
        info["file_sha256"] = file_sha256(path)
    elif spec in list_models() and get_entry(spec).weights:
        info["file_sha256"] = file_sha256(bundled_weights_path(get_entry(spec).weights))
    return info


def _default_images(folder: str | None) -> list[Path]:
    from ..bundled import sample_photo
    from ..imageio import list_images

    if folder:
        files = list_images([folder])
        if not files:
            raise FileNotFoundError(f"{folder}: no images")
        return files
    return [sample_photo()]


def _parity_inputs(files: list[Path], input_size, scale: int, count: int = 3, seed: int = 1) -> list[np.ndarray]:
    """Real-image LR crops (N=1 x 3 x H x W, [0, 1]) at the artifact's input size."""
    from .quantize import calibration_samples

    return calibration_samples(files, input_size, count=count, scale=scale, seed=seed)


def _artifact_runner(path: Path):
    from ..runtimes import LiteRTRunner, OnnxRunner

    return LiteRTRunner(path) if path.suffix == ".tflite" else OnnxRunner(path)


def _parity(model, runner, inputs: list[np.ndarray], value_max: float) -> dict:
    errs, psnrs = [], []
    for x in inputs:
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = runner(x)
        d = (got - ref) * 255.0
        errs.append(float(np.abs(d).max()))
        mse = float(np.mean(d ** 2))
        psnrs.append(float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    return {"max_abs_err_255": max(errs), "psnr_vs_torch_db": min(psnrs), "images": len(inputs),
            "input_range": f"0-{value_max:g}"}


def _quality_psnrs(model, runner, data) -> tuple[float, float]:
    from ..evaluate import evaluate, mean_row
    from ..runtimes import TorchRunner

    ref = mean_row(evaluate(TorchRunner(model), data, lpips=False, progress=False)).psnr
    return ref, mean_row(evaluate(runner, data, lpips=False, progress=False)).psnr


def _quality(model, runner, data: str | None, scale: int) -> dict:
    """Y-PSNR (shave = scale) of the artifact and of the fp32 PyTorch model on the same LR inputs."""
    if data is None:  # the bundled photo as the HR image (LR made by MATLAB-compatible bicubic)
        from PIL import Image

        from ..bundled import sample_photo

        with tempfile.TemporaryDirectory(prefix="tinysr-verify-") as tmp:
            Image.open(sample_photo()).convert("RGB").save(Path(tmp) / "grace_hopper.png")
            ref, got = _quality_psnrs(model, runner, tmp)
        data = f"bundled sample ({sample_photo().name})"
    else:
        ref, got = _quality_psnrs(model, runner, data)
    return {"data": str(data), "psnr_fp32_torch_db": ref, "psnr_artifact_db": got, "loss_db": ref - got}


def export_model(spec: str, out: str | Path, options: ExportOptions, progress: bool = True) -> dict:
    """Export ``spec`` (registry name, checkpoint) to ``out``; returns the model card (also written)."""
    from tqdm.auto import tqdm

    from ..checkpoint import load_model
    from ..complexity import measure

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
    model = load_model(spec, allow_random=o.random_init).float().eval()
    value_max = 255.0 if o.value_range == "0-255" else 1.0
    scale = model.scale
    cx = measure(model, o.input_size)
    source = _source_info(spec, model)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tinysr-export-", dir=out.parent))
    try:
        card = _export(model, scale, value_max, o, work, stage, cx, source)
    finally:
        bar.close()
    return _finish(card, work, out, o)


def _export(model, scale, value_max, o: ExportOptions, work: Path, stage, cx, source) -> dict:
    from .adapters import IOAdapter

    h, w = o.input_size
    extra: dict = {}
    if o.target == "tflite":
        from .tflite_convert import convert_tflite, op_histogram

        stage("convert")
        wrapped = IOAdapter(model, value_max) if value_max != 1.0 else model
        flat = convert_tflite(wrapped, o.input_size, mode=o.mode, layout=o.layout)
        fp32_path = work / "fp32.tflite"
        fp32_path.write_bytes(flat)
        if o.precision != "fp32":
            stage("quantize")
            from .quantize import calibration_samples, tflite_fp16, tflite_int8

            if o.precision == "fp16":
                flat = tflite_fp16(flat)
            else:
                samples = calibration_samples(_default_images(o.calib), o.input_size, count=o.calib_count, scale=scale)
                samples = [s * value_max for s in samples]
                flat = tflite_int8(flat, samples, layout=o.layout, io="int8" if o.int8_io else "float")
                extra["calibration"] = {"images": o.calib or "bundled sample (grace_hopper.jpg)", "crops": len(samples)}
        art = work / "model.tflite"
        art.write_bytes(flat)
        hist = op_histogram(flat)
        from .gpu_support import gpu_delegate_issues

        extra["gpu_delegate_unsupported"] = gpu_delegate_issues(flat)
        extra["tflite_mode"] = o.mode
    else:
        from .onnx_export import export_onnx, op_histogram_onnx

        stage("convert")
        wrapped = IOAdapter(model, value_max, nhwc=o.layout == "nhwc")
        fp32_path = work / "fp32.onnx"
        stats = export_onnx(wrapped, o.input_size, fp32_path, o.opset, o.dynamic, o.layout, simplify=False)
        if o.simplify:
            stage("simplify")
            stats = export_onnx(wrapped, o.input_size, fp32_path, o.opset, o.dynamic, o.layout, simplify=True)
        art = fp32_path
        hist = stats["op_histogram"]
        extra["onnx"] = {k: v for k, v in stats.items() if k != "op_histogram"}
        if o.precision == "int8":
            stage("quantize")
            import onnx

            from .quantize import calibration_samples, onnx_int8

            samples = calibration_samples(_default_images(o.calib), o.input_size, count=o.calib_count, scale=scale)
            samples = [(s * value_max).transpose(0, 2, 3, 1).copy() if o.layout == "nhwc" else s * value_max
                       for s in samples]
            art = work / "model.onnx"
            onnx_int8(fp32_path, art, samples)
            extra["calibration"] = {"images": o.calib or "bundled sample (grace_hopper.jpg)", "crops": len(samples)}
            hist = op_histogram_onnx(onnx.load(str(art)))

    io_dtype = "int8" if o.int8_io else "float32"
    shape_in = [1, h, w, 3] if o.layout == "nhwc" else [1, 3, h, w]
    shape_out = [1, h * scale, w * scale, 3] if o.layout == "nhwc" else [1, 3, h * scale, w * scale]
    card = {
        "format": "tinysr-model-card-v1", "target": o.target, "precision": o.precision,
        "source": source, "scale": scale, "layout": o.layout, "value_max": value_max, "io_dtype": io_dtype,
        "dynamic_shape": bool(o.dynamic),
        "input": {"shape": ["N", "H", "W", 3] if o.dynamic and o.layout == "nhwc" else
                  (["N", 3, "H", "W"] if o.dynamic else shape_in),
                  "dtype": io_dtype, "range": [0, value_max], "color": "RGB"},
        "output": {"shape": shape_out if not o.dynamic else "input x scale", "dtype": io_dtype,
                   "range": [0, value_max], "clamp": "not clamped: clip to the range"},
        "params": cx.params, "mult_adds": cx.mult_adds, "mult_adds_at": [h, w],
        "op_histogram": hist, **extra,
    }
    (work / "model.json").write_text(json.dumps(card))
    art_named = art.with_name("model" + art.suffix)
    if art != art_named:
        os.replace(art, art_named)
    stage("verify")
    runner = _artifact_runner(art_named)  # reads the card: presents [0, 1] NCHW I/O whatever the artifact's
    inputs = _parity_inputs(_default_images(o.calib), o.input_size, scale)
    card["parity"] = _parity(model, runner, inputs, value_max)
    if o.precision != "fp32":
        card["quality"] = _quality(model, runner, o.verify_data, scale)
    card["file_size"] = art_named.stat().st_size
    card["sha256"] = file_sha256(art_named)
    card["tools"] = tool_versions()
    stage("card")
    card["_artifact"] = str(art_named)
    return card


def _finish(card: dict, work: Path, out: Path, o: ExportOptions) -> dict:
    import shutil

    art = Path(card.pop("_artifact"))
    failures = []
    par = card["parity"]
    if o.precision == "fp32" and par["max_abs_err_255"] > FP32_MAX_ABS:
        failures.append(f"fp32 parity: max abs error {par['max_abs_err_255']:.2e} > {FP32_MAX_ABS:.0e} (0-255 scale)")
    q = card.get("quality")
    if q is not None and o.max_loss_db is not None and q["loss_db"] > o.max_loss_db:
        failures.append(f"{o.precision} quality: Y-PSNR {q['psnr_artifact_db']:.3f} dB vs fp32 "
                        f"{q['psnr_fp32_torch_db']:.3f} dB, loss {q['loss_db']:.3f} dB > {o.max_loss_db} dB")
    card["verification"] = {"passed": not failures, "failures": failures,
                            "thresholds": {"fp32_max_abs_err_255": FP32_MAX_ABS, "max_loss_db": o.max_loss_db}}
    dest = out if not failures else out.with_name(out.stem + ".rejected" + out.suffix)
    card["artifact"] = dest.name
    try:
        atomic_write(dest, lambda tmp: shutil.copyfile(art, tmp))
        atomic_write(dest.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2) + "\n"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise ExportVerificationError(f"{out.name}: verification failed: " + "; ".join(failures)
                                      + f" (artifact kept as {dest} for inspection)")
    return card


PRESET_DIRS = [Path("export") / "presets", Path(__file__).resolve().parents[2] / "export" / "presets"]


def load_preset(name: str) -> dict:
    """A preset by name (``export/presets/NAME.yaml``, here or in the source tree) or a YAML path."""
    import yaml

    candidates = [Path(name)] if name.endswith((".yaml", ".yml")) else [d / f"{name}.yaml" for d in PRESET_DIRS]
    for p in candidates:
        if p.is_file():
            data = yaml.safe_load(p.read_text()) or {}
            known = set(ExportOptions.__dataclass_fields__)
            unknown = sorted(set(data) - known)
            if unknown:
                raise ValueError(f"preset {p}: unknown key(s) {', '.join(unknown)}")
            return data
    avail = sorted({p.stem for d in PRESET_DIRS if d.is_dir() for p in d.glob("*.yaml")})
    raise ValueError(f"no preset {name!r}; available: {', '.join(avail) or 'none'}")


def format_card(card: dict) -> str:
    par = card["parity"]
    lines = [f"{card['artifact']}: {card['target']} {card['precision']}, {card['layout'].upper()} "
             f"{card['input']['shape']} -> {card['output']['shape']}, range 0-{card['value_max']:g}, "
             f"{card['file_size'] / 1024:.1f} KiB",
             f"  params {card['params']:,}, Mult-Adds {card['mult_adds'] / 1e9:.3f} G at "
             f"{card['mult_adds_at'][0]}x{card['mult_adds_at'][1]}",
             "  ops: " + ", ".join(f"{k} {v}" for k, v in card["op_histogram"].items()),
             f"  parity vs PyTorch: max abs err {par['max_abs_err_255']:.2e} (0-255), "
             f"PSNR {par['psnr_vs_torch_db']:.1f} dB on {par['images']} real crops"]
    if "onnx" in card:
        b, a = card["onnx"]["before"], card["onnx"]["after"]
        lines.append(f"  onnxsim: nodes {b['nodes']} -> {a['nodes']}, initializers {b['initializers']} -> {a['initializers']}")
    if "quality" in card:
        q = card["quality"]
        lines.append(f"  Y-PSNR: artifact {q['psnr_artifact_db']:.3f} dB vs fp32 {q['psnr_fp32_torch_db']:.3f} dB "
                     f"(loss {q['loss_db']:.3f} dB) on {q['data']}")
    if card.get("gpu_delegate_unsupported"):
        lines.append("  GPU delegate would not run: " + "; ".join(card["gpu_delegate_unsupported"]))
    elif card["target"] == "tflite":
        lines.append("  GPU delegate: every op supported")
    return "\n".join(lines)
