"""Post-training quantization of exported tinysr generators (TFLite and ONNX).

``calibration_samples``
    Random crops of real images (LR versions when ``scale`` is given), the data every
    calibrated quantizer here is fed.
``held_out_split`` / ``part_files``
    A deterministic split of the calibration images into a calibration part and a disjoint,
    held-out verification part (whole files, or the two halves of a single image).
``tflite_fp16``
    float16 weights of CONV_2D / DEPTHWISE_CONV_2D (with ``ai_edge_quantizer``'s float-casting
    algorithm): half the size, float32 compute (the runtime dequantizes the weights once).
``tflite_int8``
    Full-integer post-training quantization of a float .tflite: int8 activations, int8
    weights (symmetric, per output channel by default), int32 biases. Every op the tinysr
    ``mobile`` conversion emits has an int8 TFLite kernel, PRELU and DEPTH_TO_SPACE included;
    ``ai_edge_quantizer``'s int8 recipes leave those two in float (a DEQUANTIZE / QUANTIZE
    pair around each of the 13 PReLUs of TPSR) and calibrate with plain min / max ranges,
    so the graph is quantized here directly on the flatbuffer: the float model is
    run on the calibration samples (all tensors kept), each activation gets an asymmetric
    int8 range (by default the clip range of least int8 error), and every supported op is
    rewritten to its integer form. LiteRT's int8 PRELU is a slow reference kernel outside the
    XNNPACK graph (6.5-8.4 ms per 16-channel 180x320 tensor on a 2-core AMD EPYC, ten times the
    3x3 convolution before it), so a PRELU is written as int8 ops XNNPACK runs: one slope, the
    equivalent LEAKY_RELU; per-channel slopes, ``x + (slopes - 1) * MINIMUM(x, 0)`` (MINIMUM,
    MUL, ADD; see :func:`prelu_product_params`). Ops without an int8 form (or listed in
    ``float_ops``) stay float with DEQUANTIZE / QUANTIZE only where an int8 tensor meets them.
``onnx_int8``
    ONNX Runtime static quantization (QDQ format, int8, per-channel weights) calibrated on the
    same samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from . import flatbuffer as fb

__all__ = ["calibration_samples", "ImagePart", "held_out_split", "part_files", "tflite_fp16", "tflite_int8",
           "int8_tensor_plan", "prelu_product_params", "onnx_int8", "INT8_OPS"]

IO_KINDS = ("float", "int8")
CALIBRATIONS = ("minmax", "mse")

# Ops rewritten to int8. Output keeps the input's quantization (TFLite requires it):
_SAME_PARAMS_OPS = {"DEPTH_TO_SPACE", "RESIZE_NEAREST_NEIGHBOR", "PAD", "GATHER", "RESHAPE",
                    "MAX_POOL_2D"}
# Output requantized to its own calibrated range:
_REQUANT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "LEAKY_RELU", "RELU", "ADD", "SUB", "MUL",
                "CONCATENATION", "MEAN", "AVERAGE_POOL_2D"}
# Output range fixed by the int8 kernel: (scale, zero point).
_FIXED_OUTPUT_OPS = {"LOGISTIC": (1.0 / 256.0, -128), "TANH": (1.0 / 128.0, 0)}
INT8_OPS = frozenset(_SAME_PARAMS_OPS | _REQUANT_OPS | set(_FIXED_OUTPUT_OPS))
# Op versions of the int8 kernels (as the TFLite converter writes them).
_INT8_VERSION = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "ADD": 2, "SUB": 2, "MUL": 2, "MINIMUM": 2, "DEPTH_TO_SPACE": 2,
                 "RESIZE_NEAREST_NEIGHBOR": 2, "PAD": 2, "GATHER": 2, "CONCATENATION": 2, "MEAN": 2,
                 "LOGISTIC": 2, "TANH": 2, "LEAKY_RELU": 2, "RELU": 2, "QUANTIZE": 2, "DEQUANTIZE": 2,
                 "MAX_POOL_2D": 2, "AVERAGE_POOL_2D": 2}


# --------------------------------------------------------------------------------------------
# Calibration data
# --------------------------------------------------------------------------------------------

def calibration_samples(folder_or_files, input_size: tuple[int, int], count: int = 16, scale: int | None = None,
                        seed: int = 0, return_files: bool = False):
    """Random crops of real images, for calibrating a quantized model.

    Args:
        folder_or_files: a folder, an image file, a glob pattern, or a list of those.
        input_size: (H, W) of each crop (the model's input size).
        count: number of crops. Files are drawn in random order, one crop each; when there
            are fewer usable images than ``count``, further crops are taken from the same images.
        scale: if given, crops come from the bicubic-downscaled (x 1/scale) images, the LR
            images an SR network sees; if None, from the images as they are. Images smaller than
            the input size are extended by mirroring.
        seed: seed of the file order and crop positions.
        return_files: also return the files the crops come from.

    Returns:
        ``count`` float32 arrays of shape 1 x 3 x H x W (NCHW, RGB in [0, 1]); with
        ``return_files``, ``(arrays, files)``: the files used, in the order they were drawn.

    Raises:
        ValueError: when no file is a readable image (of at least ``scale`` pixels); the message
            names the folder / files given.
    """
    from ..data.bicubic import downscale
    from ..imageio import list_images, load_rgb_uint8

    h, w = (int(v) for v in input_size)
    if h < 1 or w < 1 or count < 1:
        raise ValueError(f"input_size must be positive (H, W) and count >= 1, got {input_size!r}, {count}")
    where = folder_or_files if isinstance(folder_or_files, (str, Path)) else list(folder_or_files)
    try:
        files = list_images(folder_or_files)
    except FileNotFoundError as e:
        raise ValueError(f"no calibration images in {where}: {e}") from None
    rng = np.random.default_rng(seed)
    usable: list[np.ndarray] = []
    used: list[Path] = []
    unreadable = too_small = 0
    for i in rng.permutation(len(files)):
        if len(usable) >= count:
            break
        try:
            img = load_rgb_uint8(files[i])
        except Exception:  # noqa: BLE001  (any unreadable / corrupt file is skipped)
            unreadable += 1
            continue
        if scale:
            if min(img.shape[:2]) < int(scale):
                too_small += 1
                continue
            img = downscale(img, int(scale))
        if img.shape[0] < h or img.shape[1] < w:
            # smaller than the model's input (e.g. LR of a small photo at 180x320): mirror it out to
            # the input size, which keeps real image statistics at every position
            ph, pw = max(0, h - img.shape[0]), max(0, w - img.shape[1])
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
        usable.append(img)
        used.append(Path(files[i]))
    if not usable:
        raise ValueError(f"no calibration images in {where}: {len(files)} image file(s), {unreadable} unreadable, "
                         f"{too_small} too small to downscale x1/{scale}")
    out = []
    for k in range(count):
        img = usable[k % len(usable)]
        y = int(rng.integers(0, img.shape[0] - h + 1))
        x = int(rng.integers(0, img.shape[1] - w + 1))
        crop = img[y:y + h, x:x + w].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out.append(np.ascontiguousarray(crop))
    return (out, used) if return_files else out


@dataclass(frozen=True)
class ImagePart:
    """An image file, or a box of it: ``(top, left, height, width)`` in pixels; None: the whole image."""
    file: Path
    box: tuple[int, int, int, int] | None = None

    def record(self) -> dict:
        return {"file": Path(self.file).name, "box": list(self.box) if self.box else None}


HOLD_OUT_EVERY = 5
HOLD_OUT_MAX = 8


def held_out_split(files) -> tuple[list[ImagePart], list[ImagePart], str]:
    """Split calibration images into a calibration part and a disjoint, held-out verification part.

    Several files (sorted by name): every ``HOLD_OUT_EVERY``-th file (the 5th, 10th, ...; the last
    one when there are fewer than five), at most ``HOLD_OUT_MAX`` of them, is held out for
    verification and the others calibrate: split ``"held-out-files"``. One file: its two halves
    along the longer side (top / bottom, or left / right); the first calibrates, the second
    verifies: split ``"held-out-region"``. Deterministic: the same files give the same split.

    Returns:
        ``(calibration parts, verification parts, split name)``.
    """
    files = sorted((Path(f) for f in files), key=lambda p: (p.name, str(p)))
    if not files:
        raise ValueError("no images to split into calibration and verification parts")
    if len(files) > 1:
        held = set(list(range(HOLD_OUT_EVERY - 1, len(files), HOLD_OUT_EVERY))[:HOLD_OUT_MAX] or [len(files) - 1])
        return ([ImagePart(f) for i, f in enumerate(files) if i not in held],
                [ImagePart(f) for i, f in enumerate(files) if i in held], "held-out-files")
    from PIL import Image

    with Image.open(files[0]) as im:
        w, h = im.size
    if min(h, w) < 2:
        raise ValueError(f"{files[0].name}: {w}x{h} is too small to split into calibration and verification halves")
    if h >= w:
        first, second = (0, 0, h // 2, w), (h // 2, 0, h - h // 2, w)
    else:
        first, second = (0, 0, h, w // 2), (0, w // 2, h, w - w // 2)
    return [ImagePart(files[0], first)], [ImagePart(files[0], second)], "held-out-region"


def part_files(parts: list[ImagePart], folder: str | Path, copy_whole: bool) -> list[tuple[Path, ImagePart]]:
    """Each part as a file: boxes (and, with ``copy_whole``, whole images) written as PNG into ``folder``.

    A whole image is otherwise used where it is. Parts that cannot be read are left out (with
    ``copy_whole``); returns ``[(file, part)]``.
    """
    from PIL import Image

    from ..imageio import load_rgb_uint8

    folder = Path(folder)
    out = []
    for k, part in enumerate(parts):
        if part.box is None and not copy_whole:
            out.append((Path(part.file), part))
            continue
        try:
            img = load_rgb_uint8(part.file)
        except Exception:  # noqa: BLE001  (an unreadable file is skipped, as calibration_samples does)
            continue
        if part.box is not None:
            top, left, h, w = part.box
            img = img[top:top + h, left:left + w]
        dst = folder / f"{k:03d}_{Path(part.file).stem}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img)).save(dst)
        out.append((dst, part))
    return out


# --------------------------------------------------------------------------------------------
# TFLite float16
# --------------------------------------------------------------------------------------------

def tflite_fp16(float_tflite: bytes) -> bytes:
    """float16 weights for every CONV_2D / DEPTHWISE_CONV_2D of a float32 .tflite.

    Uses ``ai_edge_quantizer``'s ``float_casting`` algorithm (weight-only, compute in float):
    the weights are stored as float16 and a DEQUANTIZE op turns each into float32, which
    LiteRT's CPU kernels (XNNPACK) fold once at load time; GPU delegates can run in fp16
    directly. Biases, PReLU slopes and the input / output stay float32.
    """
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(bytearray(float_tflite))
    cfg = qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)
    for op in (qtyping.TFLOperationName.CONV_2D, qtyping.TFLOperationName.DEPTHWISE_CONV_2D):
        q.update_quantization_recipe(regex=".*", operation_name=op, op_config=cfg,
                                     algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING)
    return bytes(q.quantize(enable_progress_report=False).quantized_model)


# --------------------------------------------------------------------------------------------
# TFLite full integer
# --------------------------------------------------------------------------------------------

def _asym_params(lo: float, hi: float, bits: int = 8) -> tuple[float, int]:
    """Asymmetric (scale, zero point) of a signed ``bits`` integer covering [lo, hi] and 0."""
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 1e-12:
        return 1.0, 0
    s = (hi - lo) / (qmax - qmin)
    zp = int(np.clip(round(qmin - lo / s), qmin, qmax))
    return s, zp


def prelu_product_params(x_params: tuple[float, int], slopes_minus_1: np.ndarray) -> tuple[float, int]:
    """int8 (scale, zero point) of ``(slopes - 1) * min(x, 0)``, the product in the int8 form of a per-channel PRELU
    (``x + (slopes - 1) * min(x, 0)``): the range it spans for every value on x's int8 grid ``x_params``, with the
    int8 constants ``slopes_minus_1`` (dequantized). Derived, not calibrated (the tensor is not in the float graph),
    so quantization-aware training rounds the product on the same grid (:mod:`tinysr.export.qat`)."""
    scale, zero_point = x_params
    lowest = min((-128 - int(zero_point)) * float(scale), 0.0)
    span = np.asarray(slopes_minus_1, np.float64) * lowest
    return _asym_params(float(span.min()), float(span.max()))


def _fake_quant_mse(v: np.ndarray, lo: float, hi: float) -> float:
    s, zp = _asym_params(lo, hi)
    q = np.clip(np.round(v / s) + zp, -128, 127)
    return float(np.mean(((q - zp) * s - v) ** 2))


def _mse_range(v: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Clip range within [lo, hi] minimizing the int8 quantization MSE of the values ``v``."""
    best = (lo, hi)
    best_err = _fake_quant_mse(v, lo, hi)
    fracs = np.linspace(0.2, 1.0, 41)
    for _ in range(2):
        for side in (1, 0):
            for f in fracs:
                cand = (best[0], hi * f) if side else (lo * f, best[1])
                err = _fake_quant_mse(v, *cand)
                if err < best_err:
                    best, best_err = cand, err
    return best


class _Calibration:
    """min / max (and a value subsample for ``mse``) of every float activation tensor."""

    def __init__(self, keep: int = 1 << 18, seed: int = 0):
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}
        self.values: dict[int, list[np.ndarray]] = {}
        self.keep = keep
        self.rng = np.random.default_rng(seed)

    def add(self, idx: int, arr: np.ndarray, n_samples: int, subsample: bool) -> None:
        a = arr.ravel()
        self.lo[idx] = min(self.lo.get(idx, np.inf), float(a.min()))
        self.hi[idx] = max(self.hi.get(idx, -np.inf), float(a.max()))
        if subsample:
            per = max(1, self.keep // n_samples)
            pick = a if a.size <= per else a[self.rng.integers(0, a.size, per)]
            self.values.setdefault(idx, []).append(pick.astype(np.float32))

    def range(self, idx: int, method: str) -> tuple[float, float]:
        lo, hi = self.lo[idx], self.hi[idx]
        if method == "mse" and idx in self.values:
            return _mse_range(np.concatenate(self.values[idx]), lo, hi)
        return lo, hi


def _calibrate(float_tflite: bytes, feeds: list[np.ndarray], method: str) -> _Calibration:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=bytes(float_tflite), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp = interp.get_input_details()
    if len(inp) != 1:
        raise ValueError(f"tflite_int8 handles models with one input, this one has {len(inp)}")
    inp = inp[0]
    if inp["dtype"] != np.float32:
        raise ValueError(f"the model to quantize must have a float32 input, got {inp['dtype'].__name__}")
    shape = tuple(int(v) for v in inp["shape"])
    interp.allocate_tensors()
    ops = interp._get_ops_details()  # noqa: SLF001  (the only way to list op outputs from Python)
    act_ids = sorted({int(inp["index"])} | {int(t) for op in ops for t in op["outputs"] if t >= 0})
    details = {d["index"]: d for d in interp.get_tensor_details()}
    act_ids = [i for i in act_ids if details[i]["dtype"] == np.float32]
    cal = _Calibration()
    for feed in feeds:
        if tuple(feed.shape) != shape:
            try:
                interp.resize_tensor_input(inp["index"], list(feed.shape), strict=False)
                interp.allocate_tensors()
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"calibration sample of shape {tuple(feed.shape)} does not fit the model's input "
                                 f"{shape} ({e})") from None
            shape = tuple(feed.shape)
        interp.set_tensor(inp["index"], np.ascontiguousarray(feed, dtype=np.float32))
        interp.invoke()
        for i in act_ids:
            cal.add(i, interp.get_tensor(i), len(feeds), method == "mse")
    return cal


class _Int8Rewriter:
    """Rewrites subgraph 0 of a float TFLite model (object API) to int8 ops."""

    def __init__(self, model, cal: _Calibration | None, method: str, io: str, per_channel: bool,
                 float_ops: set, input_range: tuple[float, float] | None, raw: bytes, fast_prelu: bool,
                 learnt: dict[int, tuple[float, int]] | None = None):
        self.s = fb.schema()
        self.learnt = learnt
        self.m = model
        self.sg = model.subgraphs[0]
        self.cal = cal
        self.method = method
        self.io = io
        self.per_channel = per_channel
        self.input_range = input_range
        self.raw = raw
        self.fast_prelu = fast_prelu
        self.op_names = fb.opcode_names(model)
        self.producer: dict[int, int] = {}
        for k, op in enumerate(self.sg.operators):
            for t in op.outputs:
                self.producer[int(t)] = k
        self.graph_inputs = [int(t) for t in self.sg.inputs]
        self.acts = set(self.producer) | set(self.graph_inputs)
        self.quantized_op = [self._quantizable(k, op, float_ops) for k, op in enumerate(self.sg.operators)]
        # decided on the float slopes, before quantize_constants rewrites them to int8
        self.prelu_forms = {id(op): self._prelu_form(op) for op in self.sg.operators if self.name(op) == "PRELU"}
        self.params: dict[int, tuple[float, int]] = {}

    # -- helpers ------------------------------------------------------------------------------
    def name(self, op) -> str:
        return self.op_names[op.opcodeIndex]

    def is_activation(self, t: int) -> bool:
        return t >= 0 and t in self.acts

    def const(self, t: int) -> np.ndarray:
        tensor = self.sg.tensors[t]
        data = fb.buffer_data(self.m, tensor.buffer, self.raw)
        dtype = {self.s.TensorType.FLOAT32: np.float32, self.s.TensorType.INT32: np.int32}.get(tensor.type)
        if dtype is None:
            raise ValueError(f"unexpected constant type {tensor.type} for tensor {tensor.name!r}")
        shape = [int(v) for v in tensor.shape] if tensor.shape is not None else []
        return np.frombuffer(data.tobytes(), dtype).reshape(shape)

    def _prelu_form(self, op) -> str:
        """How a quantized PRELU is written: ``"leaky"`` (one slope: LEAKY_RELU), ``"sum"`` (per-channel slopes:
        ``x + (slopes - 1) * MINIMUM(x, 0)``) or ``"prelu"`` (the int8 PRELU kernel, ``fast_prelu=False``)."""
        if not self.fast_prelu:
            return "prelu"
        alpha = self.const(int(op.inputs[1]))
        return "leaky" if np.all(alpha == alpha.flat[0]) else "sum"

    def const_int8(self, t: int) -> np.ndarray:
        return np.frombuffer(fb.buffer_data(self.m, self.sg.tensors[t].buffer, self.raw).tobytes(), np.int8)

    def opcode(self, builtin_name: str) -> int:
        index = fb.opcode_index(self.m, builtin_name, _INT8_VERSION.get(builtin_name, 1))
        if index == len(self.op_names):
            self.op_names.append(builtin_name)
        return index

    def qparams(self, scale, zero_point, dim: int = 0):
        q = self.s.QuantizationParametersT()
        q.scale = [float(v) for v in np.atleast_1d(scale)]
        q.zeroPoint = [int(v) for v in np.atleast_1d(zero_point)]
        q.quantizedDimension = int(dim)
        return q

    def new_tensor(self, like: int | None, ttype: int, name: str, shape=None, data: np.ndarray | None = None,
                   quant=None) -> int:
        t = self.s.TensorT()
        src = self.sg.tensors[like] if like is not None else None
        t.shape = list(shape) if shape is not None else list(src.shape)
        if src is not None and src.shapeSignature is not None and shape is None:
            t.shapeSignature = list(src.shapeSignature)
        t.type = ttype
        t.name = name
        buf = self.s.BufferT()
        if data is not None:
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        self.m.buffers.append(buf)
        t.buffer = len(self.m.buffers) - 1
        t.quantization = quant
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def tname(self, t: int) -> str:
        n = self.sg.tensors[t].name
        return n.decode() if isinstance(n, bytes) else str(n)

    # -- which ops, which ranges ------------------------------------------------------------
    def _quantizable(self, k: int, op, float_ops: set) -> bool:
        name = self.name(op)
        if k in float_ops or name in float_ops or name not in INT8_OPS:
            return False
        ins = [int(t) for t in op.inputs if t >= 0]
        outs = [int(t) for t in op.outputs]
        if any(self.sg.tensors[t].type != self.s.TensorType.FLOAT32 for t in outs):
            return False
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU"):
            return self.is_activation(ins[0]) and not any(self.is_activation(t) for t in ins[1:])
        if name in ("ADD", "SUB", "MUL", "CONCATENATION"):
            return any(self.is_activation(t) for t in ins) and all(
                self.is_activation(t) or self.sg.tensors[t].type == self.s.TensorType.FLOAT32 for t in ins)
        # Remaining ops: the first input is the activation, other inputs int32 constants (shape, size...).
        return self.is_activation(ins[0]) and all(
            not self.is_activation(t) and self.sg.tensors[t].type != self.s.TensorType.FLOAT32 for t in ins[1:])

    def act_params(self, t: int) -> tuple[float, int]:
        """int8 (scale, zero point) of activation tensor ``t``."""
        if t in self.params:
            return self.params[t]
        if t in self.graph_inputs and self.input_range is not None:
            p = _asym_params(*self.input_range)
        else:
            k = self.producer.get(t)
            op = self.sg.operators[k] if k is not None else None
            if op is not None and self.quantized_op[k] and self.name(op) in _SAME_PARAMS_OPS:
                p = self.act_params(int(op.inputs[0]))
            elif op is not None and self.quantized_op[k] and self.name(op) in _FIXED_OUTPUT_OPS:
                p = _FIXED_OUTPUT_OPS[self.name(op)]
            elif self.learnt is not None:
                if t not in self.learnt:
                    raise ValueError(f"no learnt int8 range for tensor {t} ({self.tname(t)!r}): the learnt ranges do not "
                                     "belong to this model")
                p = tuple(self.learnt[t])
            else:
                p = _asym_params(*self.cal.range(t, self.method))
        self.params[t] = p
        return p

    def plan(self) -> dict[int, tuple]:
        """Every activation tensor the int8 graph holds as int8, with where its (scale, zero point) comes from:
        ``("input", scale, zp)`` (the graph input's fixed range), ``("own",)`` (its own calibrated or learnt
        range), ``("same", t)`` (tensor ``t``'s, an op that cannot requantize), ``("fixed", scale, zp)`` (the
        kernel's fixed output range)."""
        out: dict[int, tuple] = {}

        def own_or_input(t: int) -> tuple:
            if t in self.graph_inputs and self.input_range is not None:
                return ("input", *_asym_params(*self.input_range))
            return ("own",)

        for t in self.graph_inputs:
            if self.io == "int8":
                out[t] = own_or_input(t)
        for k, op in enumerate(self.sg.operators):
            if not self.quantized_op[k]:
                continue
            for t in op.inputs:
                t = int(t)
                if self.is_activation(t) and t not in out:
                    out[t] = own_or_input(t)  # quantized where it enters (a QUANTIZE after the input or a float op)
            name = self.name(op)
            for t in op.outputs:
                if name in _SAME_PARAMS_OPS:
                    out[int(t)] = ("same", int(op.inputs[0]))
                elif name in _FIXED_OUTPUT_OPS:
                    out[int(t)] = ("fixed", *_FIXED_OUTPUT_OPS[name])
                else:
                    out[int(t)] = ("own",)
        return out

    # -- rewriting --------------------------------------------------------------------------
    def run(self) -> None:
        s = self.s
        int8, f32 = s.TensorType.INT8, s.TensorType.FLOAT32
        # Representation of each activation: "int8" when its producer is quantized.
        kind: dict[int, str] = {}
        for t in self.graph_inputs:
            kind[t] = "int8" if self.io == "int8" else "float"
        for k, op in enumerate(self.sg.operators):
            for t in op.outputs:
                kind[int(t)] = "int8" if self.quantized_op[k] else "float"
        converted: dict[tuple[int, str], int] = {}
        new_ops = []

        def as_kind(t: int, want: str) -> int:
            if kind.get(t, "float") == want:
                return t
            if (t, want) not in converted:
                if want == "int8":
                    sc, zp = self.act_params(t)
                    nt = self.new_tensor(t, int8, self.tname(t) + "_int8", quant=self.qparams(sc, zp))
                    self.params[nt] = (sc, zp)
                    new_ops.append(self.make_op("QUANTIZE", [t], [nt]))
                else:
                    nt = self.new_tensor(t, f32, self.tname(t) + "_float")
                    new_ops.append(self.make_op("DEQUANTIZE", [t], [nt]))
                converted[(t, want)] = nt
                self.acts.add(nt)
            return converted[(t, want)]

        # Input tensors that become int8.
        for t in self.graph_inputs:
            if kind[t] == "int8":
                self.set_int8(t)
        for k, op in enumerate(self.sg.operators):
            if not self.quantized_op[k]:
                op.inputs = [as_kind(int(t), "float") if self.is_activation(int(t)) else int(t) for t in op.inputs]
                new_ops.append(op)
                continue
            op.inputs = [as_kind(int(t), "int8") if self.is_activation(int(t)) else int(t) for t in op.inputs]
            for t in op.outputs:
                self.set_int8(int(t))
            self.quantize_constants(op)
            name = self.name(op)
            oc = self.m.operatorCodes[op.opcodeIndex]
            oc.version = max(oc.version, _INT8_VERSION.get(name, 1))
            if name == "PRELU" and self.prelu_forms[id(op)] == "sum":
                new_ops.extend(self.prelu_as_sum(op))
            else:
                new_ops.append(op)
        want_out = "int8" if self.io == "int8" else "float"
        outputs = [as_kind(int(t), want_out) for t in self.sg.outputs]
        remap = {int(a): b for a, b in zip(self.sg.outputs, outputs)}
        self.sg.outputs = outputs
        for sig in self.m.signatureDefs or []:
            if sig.subgraphIndex == 0:
                for tm in sig.outputs or []:
                    tm.tensorIndex = remap.get(int(tm.tensorIndex), tm.tensorIndex)
        self.sg.operators = new_ops

    def prelu_as_sum(self, op) -> list:
        """An int8 PRELU (its input 1 already the int8 ``slopes - 1``) as ``ADD(x, MUL(MINIMUM(x, 0), slopes - 1))``:
        MINIMUM on x's grid (exact), the product on the range :func:`prelu_product_params` gives it, the sum on the
        PRELU output's own range."""
        x, c = int(op.inputs[0]), int(op.inputs[1])
        name = self.tname(int(op.outputs[0]))
        xq = self.act_params(x)
        zero = self.new_tensor(None, self.s.TensorType.INT8, name + "_zero", shape=[1],
                               data=np.array([xq[1]], np.int8), quant=self.qparams(*xq))
        neg = self.new_tensor(x, self.s.TensorType.INT8, name + "_negative_part", quant=self.qparams(*xq))
        cq = self.sg.tensors[c].quantization
        cvals = self.const_int8(c).astype(np.float64) * float(cq.scale[0])
        pq = prelu_product_params(xq, cvals)
        prod = self.new_tensor(x, self.s.TensorType.INT8, name + "_negative_part_x_slope_minus_1",
                               quant=self.qparams(*pq))
        self.params[neg], self.params[prod] = xq, pq
        self.acts.update((neg, prod))
        return [self.make_op("MINIMUM", [x, zero], [neg]), self.make_op("MUL", [neg, c], [prod]),
                self.make_op("ADD", [x, prod], list(op.outputs))]

    _OPTIONS = {"QUANTIZE": "QuantizeOptions", "DEQUANTIZE": "DequantizeOptions", "MUL": "MulOptions",
                "ADD": "AddOptions", "MINIMUM": "MaximumMinimumOptions"}

    def make_op(self, builtin_name: str, inputs, outputs):
        op = self.s.OperatorT()
        op.opcodeIndex = self.opcode(builtin_name)
        op.inputs = list(inputs)
        op.outputs = list(outputs)
        options = self._OPTIONS[builtin_name]
        op.builtinOptionsType = getattr(self.s.BuiltinOptions, options)
        op.builtinOptions = getattr(self.s, options + "T")()
        return op

    def set_int8(self, t: int) -> None:
        sc, zp = self.act_params(t)
        tensor = self.sg.tensors[t]
        tensor.type = self.s.TensorType.INT8
        tensor.quantization = self.qparams(sc, zp)

    def replace_input(self, op, pos: int, new: int) -> None:
        ins = list(op.inputs)
        ins[pos] = new
        op.inputs = ins

    def quantize_constants(self, op) -> None:
        """Weights, biases, PReLU slopes and float constant operands of a quantized op."""
        name = self.name(op)
        ins = [int(t) for t in op.inputs]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            in_scale = float(self.sg.tensors[int(op.inputs[0])].quantization.scale[0])
            w = self.const(ins[1]).astype(np.float64)
            axis = 0 if name == "CONV_2D" else 3
            moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
            amax = np.abs(moved).max(axis=1) if self.per_channel else np.full(1, np.abs(w).max())
            w_scale = np.where(amax > 0, amax / 127.0, 1.0)
            bshape = [1] * w.ndim
            bshape[axis] = -1
            wq = np.clip(np.round(w / (w_scale.reshape(bshape) if self.per_channel else w_scale[0])), -127, 127)
            zeros = np.zeros(len(w_scale), np.int64)
            nw = self.new_tensor(ins[1], self.s.TensorType.INT8, self.tname(ins[1]) + "_int8",
                                 data=wq.astype(np.int8), quant=self.qparams(w_scale, zeros, axis))
            self.replace_input(op, 1, nw)
            if len(ins) > 2 and ins[2] >= 0:
                b = self.const(ins[2]).astype(np.float64)
                b_scale = in_scale * (w_scale if self.per_channel else np.full(b.shape[0], w_scale[0]))
                bq = np.clip(np.round(b / b_scale), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
                nb = self.new_tensor(ins[2], self.s.TensorType.INT32, self.tname(ins[2]) + "_int32",
                                     data=bq, quant=self.qparams(b_scale if self.per_channel else b_scale[:1],
                                                                 np.zeros(len(b_scale) if self.per_channel else 1,
                                                                          np.int64)))
                self.replace_input(op, 2, nb)
        elif name == "PRELU":
            alpha = self.const(ins[1]).astype(np.float64)
            if self.prelu_forms[id(op)] == "leaky":
                # One slope for all channels: exactly LEAKY_RELU, whose int8 kernel XNNPACK runs.
                op.opcodeIndex = self.opcode("LEAKY_RELU")
                op.inputs = [ins[0]]
                op.builtinOptionsType = self.s.BuiltinOptions.LeakyReluOptions
                op.builtinOptions = self.s.LeakyReluOptionsT()
                op.builtinOptions.alpha = float(alpha.flat[0])
                return
            if self.prelu_forms[id(op)] == "sum":
                alpha = alpha - 1.0  # the MUL constant of x + (slopes - 1) * min(x, 0)
            amax = float(np.abs(alpha).max())
            a_scale = amax / 127.0 if amax > 0 else 1.0
            aq = np.clip(np.round(alpha / a_scale), -127, 127).astype(np.int8)
            na = self.new_tensor(ins[1], self.s.TensorType.INT8, self.tname(ins[1]) + "_int8", data=aq,
                                 quant=self.qparams(a_scale, 0))
            self.replace_input(op, 1, na)
        elif name in ("ADD", "SUB", "MUL", "CONCATENATION"):
            for pos, t in enumerate(ins):
                if t < 0 or self.is_activation(t):
                    continue
                c = self.const(t).astype(np.float64)
                lo, hi = float(c.min()), float(c.max())
                if np.all(c == c.flat[0]) and c.flat[0] != 0:
                    sc, zp = abs(float(c.flat[0])) / 127.0, 0  # a single value: exact
                else:
                    sc, zp = _asym_params(lo, hi)
                cq = np.clip(np.round(c / sc) + zp, -128, 127).astype(np.int8)
                nc = self.new_tensor(t, self.s.TensorType.INT8, self.tname(t) + "_int8", data=cq,
                                     quant=self.qparams(sc, zp))
                self.replace_input(op, pos, nc)


def _compact(model) -> None:
    """Drop tensors and buffers no longer referenced (the float weights that were replaced)."""
    sg = model.subgraphs[0]
    used = sorted({int(t) for op in sg.operators for t in list(op.inputs) + list(op.outputs) if t >= 0}
                  | {int(t) for t in sg.inputs} | {int(t) for t in sg.outputs})
    tmap = {old: new for new, old in enumerate(used)}
    sg.tensors = [sg.tensors[i] for i in used]
    for op in sg.operators:
        op.inputs = [tmap[int(t)] if t >= 0 else -1 for t in op.inputs]
        op.outputs = [tmap[int(t)] for t in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = [tmap[int(t)] for t in op.intermediates if int(t) in tmap]
    sg.inputs = [tmap[int(t)] for t in sg.inputs]
    sg.outputs = [tmap[int(t)] for t in sg.outputs]
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == 0:
            for tm in list(sig.inputs or []) + list(sig.outputs or []):
                tm.tensorIndex = tmap[int(tm.tensorIndex)]
    used_bufs = {0} | {int(t.buffer) for s in model.subgraphs for t in s.tensors}
    used_bufs |= {int(md.buffer) for md in model.metadata or []}
    order = sorted(used_bufs)
    bmap = {old: new for new, old in enumerate(order)}
    model.buffers = [model.buffers[i] for i in order]
    for s in model.subgraphs:
        for t in s.tensors:
            t.buffer = bmap[int(t.buffer)]
    for md in model.metadata or []:
        md.buffer = bmap[int(md.buffer)]


def int8_tensor_plan(float_tflite: bytes, io: str = "float", float_ops: Iterable[int | str] = (),
                     input_range: tuple[float, float] | None = (0.0, 1.0)) -> dict[int, tuple]:
    """Which activation tensors of a float .tflite :func:`tflite_int8` (same options) makes int8, and where
    each one's (scale, zero point) comes from (see ``_Int8Rewriter.plan``): the fake-quantization points
    of quantization-aware training (:mod:`tinysr.export.qat`). Tensor indices are the float model's."""
    raw = bytes(float_tflite)
    model = fb.unpack(raw)
    if len(model.subgraphs) != 1:
        raise ValueError(f"int8_tensor_plan handles single-subgraph models, this one has {len(model.subgraphs)}")
    return _Int8Rewriter(model, None, "minmax", io, True, set(float_ops), input_range, raw, True).plan()


def tflite_int8(float_tflite: bytes, samples: list[np.ndarray], layout: str = "nhwc", io: str = "float", *,
                per_channel: bool = True, calibration: str = "mse", float_ops: Iterable[int | str] = (),
                input_range: tuple[float, float] | None = (0.0, 1.0), fast_prelu: bool = True,
                learnt: dict[int, tuple[float, int]] | None = None) -> bytes:
    """Full-integer post-training quantization of a float32 .tflite, calibrated on ``samples``.

    Activations become int8 (asymmetric, per tensor), CONV_2D / DEPTHWISE_CONV_2D weights int8
    (symmetric; per output channel unless ``per_channel=False``) with int32 biases, PReLU slopes
    and float constant operands of ADD / SUB / MUL int8. PRELU, DEPTH_TO_SPACE, ADD, SUB, MUL,
    RESIZE_NEAREST_NEIGHBOR, PAD, CONCATENATION, ... run their int8 TFLite kernels (see
    ``INT8_OPS``); an op with no int8 form (or listed in ``float_ops``) stays float32, with a
    DEQUANTIZE before it and a QUANTIZE after it. On the bundled TPSR x4 (96 x 96 input, 16 T91
    LR crops) this loses 0.07 dB Set5 Y-PSNR with ``calibration="mse"`` and 0.11 dB with
    ``"minmax"`` (measured by ``tests/test_quantize.py``, which bounds the loss at 0.15 dB and
    checks that ``"mse"`` loses less).

    Args:
        float_tflite: the float32 model (e.g. from :func:`~tinysr.export.tflite_convert.convert_tflite`).
        samples: calibration inputs, each 1 x 3 x H x W float32 (NCHW, as
            :func:`calibration_samples` returns them) at the model's input size.
        layout: the model's input layout: ``"nhwc"`` (samples are transposed to 1 x H x W x 3)
            or ``"nchw"``.
        io: ``"float"``: float32 input and output (a QUANTIZE after the input, a DEQUANTIZE before
            the output); ``"int8"``: int8 input and output tensors, nothing at the edges (the
            caller quantizes with the tensors' scale / zero point).
        per_channel: per-output-channel weight scales (True) or one scale per weight tensor.
        calibration: ``"mse"`` (the clip range minimizing each activation's int8 rounding +
            clipping error on a subsample of the calibration values) or ``"minmax"`` (the
            observed range of each activation).
        float_ops: ops kept in float32: indices into the float graph's operator list, or op
            names such as ``"DEPTH_TO_SPACE"``.
        input_range: the value range the input is quantized over, (0, 1) by default: the
            model's contract, which makes 8-bit pixel values exact (scale 1/255, zero point
            -128). None: the calibrated range.
        fast_prelu: write each PRELU as int8 ops LiteRT's XNNPACK delegate runs (one slope: the
            exactly equivalent LEAKY_RELU; per-channel slopes: ``x + (slopes - 1) * MINIMUM(x, 0)``,
            see :func:`prelu_product_params`) rather than LiteRT's int8 PRELU, a reference kernel
            outside the XNNPACK graph; False keeps every PRELU.
        learnt: (scale, zero point) per activation tensor (indices of the float model) whose plan
            (:func:`int8_tensor_plan`) is ``("own",)``, e.g. the ranges a quantization-aware training
            learnt (:func:`tinysr.export.qat.learnt_tensor_params`): used instead of calibrating, so
            ``samples`` may be empty; a tensor without one is a ``ValueError``.

    Returns:
        The quantized .tflite flatbuffer.

    Raises:
        ValueError: for a bad argument, no samples, a sample that does not fit the input, or a
            model that is not a single-subgraph float32 model with one input.
    """
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
    if io not in IO_KINDS:
        raise ValueError(f"io must be one of {IO_KINDS}, got {io!r}")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    samples = list(samples)
    if not samples and learnt is None:
        raise ValueError("tflite_int8 needs at least one calibration sample")
    feeds = []
    for x in samples:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"calibration samples must be N x C x H x W, got shape {x.shape}")
        feeds.append(np.ascontiguousarray(x.transpose(0, 2, 3, 1) if layout == "nhwc" else x))
    raw = bytes(float_tflite)
    cal = _calibrate(raw, feeds, calibration) if learnt is None else None
    model = fb.unpack(raw)
    if len(model.subgraphs) != 1:
        raise ValueError(f"tflite_int8 handles single-subgraph models, this one has {len(model.subgraphs)}")
    rw = _Int8Rewriter(model, cal, calibration, io, per_channel, set(float_ops), input_range, raw,
                       fast_prelu, learnt)
    rw.run()
    _compact(model)
    return fb.pack(model, raw)


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------

def onnx_int8(float_onnx_path, out_path, samples: list[np.ndarray]) -> None:
    """ONNX Runtime static int8 quantization (QDQ format) of a float ONNX model.

    Activations int8 (asymmetric, MinMax-calibrated on ``samples``), weights int8 symmetric per
    output channel. The model is first run through ONNX Runtime's pre-processing (shape
    inference and graph optimization), as its documentation recommends.

    Args:
        float_onnx_path: the float32 .onnx (one input, N x 3 x H x W).
        out_path: where the quantized .onnx is written.
        samples: calibration inputs, each 1 x 3 x H x W float32 in [0, 1] matching the input.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    samples = [np.ascontiguousarray(np.asarray(x, dtype=np.float32)) for x in samples]
    if not samples:
        raise ValueError("onnx_int8 needs at least one calibration sample")
    graph = onnx.load(str(float_onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"onnx_int8 handles models with one input, {float_onnx_path} has {inputs}")

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(samples)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {inputs[0]: x}

        def rewind(self):
            self._it = iter(samples)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(float_onnx_path), str(pre), skip_symbolic_shape=True)
            src = pre
        except Exception:  # noqa: BLE001  (pre-processing is an optimization; quantize the original)
            src = Path(float_onnx_path)
        quantize_static(str(src), str(out_path), _Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax)
