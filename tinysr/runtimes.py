"""Running a model in PyTorch, ONNX Runtime or LiteRT behind one interface.

A runner maps an ``N x 3 x H x W`` float32 array in [0, 1] to the ``N x 3 x sH x sW``
output. Exported artifacts describe their layout, value range, I/O dtype and quantization, scale
and input shape in the model card next to them (``NAME.json``, format
:data:`tinysr.export.card.FORMAT`); without a card, NCHW float in [0, 1] is assumed and the
fixed size (if any) is read from the artifact's input shape.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

RUNTIMES = ("auto", "torch", "onnxruntime", "litert")


class RuntimeError_(ValueError):
    pass


def _card(path: Path, card: dict | None) -> dict | None:
    """The model card given, else the one next to the artifact (checked), else None."""
    from .export.card import read_card

    if card is not None:
        return card
    card_path = path.with_suffix(".json")
    return read_card(card_path) if card_path.is_file() else None


class TorchRunner:
    name = "torch"

    def __init__(self, model: torch.nn.Module, threads: int = 0):
        self.model = model.eval()
        self.scale = model.scale
        self.fixed_size = None
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(x)).numpy()


class _ArtifactRunner:
    def _setup_io(self, card: dict | None, shape, default_layout: str, dtype: str, path: Path):
        if card is not None and card["input"]["dtype"] != dtype:
            raise RuntimeError_(f"{path.with_suffix('.json')}: the card says {card['input']['dtype']} input, "
                                f"{path.name} has {dtype}: the card belongs to another export")
        if card is None:
            self.layout, dims = default_layout, list(shape)
            self.in_range = self.out_range = (0.0, 1.0)
            self.in_quant = self.out_quant = None
            self.scale = None
        else:
            inp, out = card["input"], card["output"]
            self.layout, dims = card["layout"], inp["shape"]
            self.in_range, self.out_range = tuple(inp["range"]), tuple(out["range"])
            self.in_quant, self.out_quant = inp["quantization"], out["quantization"]
            self.scale = card["scale"]
        h, w = (dims[1], dims[2]) if self.layout == "nhwc" else (dims[2], dims[3])
        fixed = all(isinstance(v, (int, np.integer)) and v > 0 for v in (h, w))
        self.fixed_size = (int(h), int(w)) if fixed else None

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.in_range
        x = x * (hi - lo) + lo
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if self.layout == "nhwc" else x, dtype=np.float32)

    def _from_output(self, y: np.ndarray) -> np.ndarray:
        lo, hi = self.out_range
        y = y.transpose(0, 3, 1, 2) if self.layout == "nhwc" else y
        return (np.asarray(y, dtype=np.float32) - lo) / (hi - lo)


class OnnxRunner(_ArtifactRunner):
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 0, card: dict | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise RuntimeError_(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: {e})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        dtype = {"tensor(float)": "float32", "tensor(int8)": "int8"}.get(inp.type, inp.type)
        self._setup_io(_card(path, card), inp.shape, "nchw", dtype, path)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: self._to_input(x)})[0]
        return self._from_output(out)


class LiteRTRunner(_ArtifactRunner):
    name = "litert"

    def __init__(self, path: Path, threads: int = 0, card: dict | None = None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interp = Interpreter(model_path=str(path), num_threads=threads or None)
        except Exception as e:
            raise RuntimeError_(f"{path}: LiteRT cannot load it ({type(e).__name__}: {e})") from None
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self._setup_io(_card(path, card), self.inp["shape"], "nchw", np.dtype(self.inp["dtype"]).name, path)
        self.interp.allocate_tensors()
        self._allocated_shape = tuple(self.inp["shape"])

    @staticmethod
    def _params(card_quant: dict | None, details) -> tuple[float, int]:
        """(scale, zero point): the card's, else the interpreter's."""
        if card_quant is not None:
            return card_quant["scale"], card_quant["zero_point"]
        return details["quantization"]

    def _quant(self, x, details):
        scale, zero = self._params(self.in_quant, details)
        if details["dtype"] in (np.int8, np.uint8) and scale:
            info = np.iinfo(details["dtype"])
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(details["dtype"])
        return x.astype(details["dtype"])

    def _dequant(self, y, details):
        scale, zero = self._params(self.out_quant, details)
        if details["dtype"] in (np.int8, np.uint8) and scale:
            return (y.astype(np.float32) - zero) * scale
        return y

    def __call__(self, x: np.ndarray) -> np.ndarray:
        feed = self._to_input(x)
        if tuple(feed.shape) != self._allocated_shape:
            self.interp.resize_tensor_input(self.inp["index"], list(feed.shape))
            self.interp.allocate_tensors()
            self._allocated_shape = tuple(feed.shape)
            self.out = self.interp.get_output_details()[0]
        self.interp.set_tensor(self.inp["index"], self._quant(feed, self.inp))
        self.interp.invoke()
        return self._from_output(self._dequant(self.interp.get_tensor(self.out["index"]), self.out))


def make_runner(model_spec: str, runtime: str = "auto", threads: int = 0):
    """A runner for a registry name, checkpoint, ``.onnx`` or ``.tflite``."""
    if runtime not in RUNTIMES:
        raise RuntimeError_(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    path = Path(model_spec)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if runtime not in ("auto", "onnxruntime"):
            raise RuntimeError_(f"{path}: an ONNX model runs with --runtime onnxruntime, not {runtime}")
        if not path.is_file():
            raise RuntimeError_(f"{path}: no such file")
        return OnnxRunner(path, threads)
    if suffix == ".tflite":
        if runtime not in ("auto", "litert"):
            raise RuntimeError_(f"{path}: a .tflite model runs with --runtime litert, not {runtime}")
        if not path.is_file():
            raise RuntimeError_(f"{path}: no such file")
        return LiteRTRunner(path, threads)
    from .checkpoint import load_model

    model = load_model(model_spec)
    if runtime in ("auto", "torch"):
        return TorchRunner(model, threads)
    raise RuntimeError_(f"--runtime {runtime} needs an exported model (.onnx / .tflite); "
                        f"export {model_spec} first with `tinysr export`")
