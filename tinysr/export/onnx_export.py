"""PyTorch -> ONNX: ``torch.onnx`` export, ``onnx.checker``, ``onnxsim`` simplification."""
from __future__ import annotations

import io
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch import nn


def graph_stats(model) -> dict:
    return {"nodes": len(model.graph.node), "initializers": len(model.graph.initializer)}


def op_histogram_onnx(model) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def io_tensors_onnx(model) -> dict[str, list[dict]]:
    """Graph inputs (initializers excluded) and outputs, each ``{"shape": [...], "dtype": "float32",
    "quantization": None}`` with ``None`` for a symbolic axis (as :func:`tinysr.export.flatbuffer.io_tensors`
    describes TFLite's; ONNX QDQ models keep float I/O)."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}

    def describe(v) -> dict:
        t = v.type.tensor_type
        dims = [int(d.dim_value) if d.HasField("dim_value") else None for d in t.shape.dim]
        return {"shape": dims, "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name, "quantization": None}

    return {"inputs": [describe(v) for v in model.graph.input if v.name not in inits],
            "outputs": [describe(v) for v in model.graph.output]}


def export_onnx(model: nn.Module, input_size: tuple[int, int], out_path: str | Path, opset: int = 17,
                dynamic: bool = False, layout: str = "nchw", simplify: bool = True) -> dict:
    """Export, check and simplify; returns node/initializer counts before and after simplification.

    The input is named ``input`` (N x 3 x H x W, or N x H x W x 3 with ``layout="nhwc"``), the
    output ``output``; with ``dynamic`` the height and width (and batch) are symbolic.
    """
    import onnx

    h, w = input_size
    sample = torch.rand(1, h, w, 3) if layout == "nhwc" else torch.rand(1, 3, h, w)
    axes = {0: "batch", 1: "height", 2: "width"} if layout == "nhwc" else {0: "batch", 2: "height", 3: "width"}
    out_axes = axes
    buf = io.BytesIO()
    try:
        # The TorchScript exporter on purpose (dynamo=False): the torch.export-based one needs onnxscript,
        # which tinysr does not depend on. Its deprecation notices are about that choice: not shown.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
            torch.onnx.export(model.eval(), (sample,), buf, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamo=False,
                              dynamic_axes={"input": axes, "output": out_axes} if dynamic else None)
    except Exception as e:  # torch.onnx raises many kinds; report the first line, not the stack
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"ONNX export (opset {opset}) failed: {first}") from None
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    stats = {"opset": opset, "before": graph_stats(proto)}
    if simplify:
        import onnxsim

        simplified, ok = onnxsim.simplify(proto)
        if not ok:
            raise ValueError("onnxsim could not validate the simplified model")
        onnx.checker.check_model(simplified, full_check=True)
        proto = simplified
    stats["after"] = graph_stats(proto)
    stats["op_histogram"] = op_histogram_onnx(proto)
    Path(out_path).write_bytes(proto.SerializeToString())
    return stats
