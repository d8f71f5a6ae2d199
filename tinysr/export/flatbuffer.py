"""TFLite flatbuffer utilities: reading, op-code names, packing, single-op slicing.

Every module that looks inside a ``.tflite`` (the converter's checks, the int8 quantizer, the
GPU-delegate check, the host profiler, the latency table) goes through here. The schema is the
one that ships with ai-edge-litert (``ai_edge_litert/schema_py_generated.py``): ``Model`` is the
zero-copy reader, ``ModelT`` the mutable object API.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np


def schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


@lru_cache(maxsize=1)
def builtin_names() -> dict[int, str]:
    """``{builtin code: name}``, e.g. ``{3: "CONV_2D", ...}``."""
    return {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}


def as_bytes(tflite: bytes | bytearray | str | Path) -> bytes:
    """The flatbuffer of a .tflite given as bytes or a path."""
    return bytes(tflite) if isinstance(tflite, (bytes, bytearray)) else Path(tflite).read_bytes()


def reader(tflite):
    """The zero-copy ``schema.Model`` reader of a .tflite (bytes or path)."""
    return schema().Model.GetRootAs(as_bytes(tflite), 0)


def unpack(tflite):
    """The mutable object-API ``schema.ModelT`` of a .tflite (bytes or path)."""
    return schema().ModelT.InitFromPackedBuf(as_bytes(tflite), 0)


def code_name(builtin: int, deprecated: int, custom: bytes | str | None) -> str:
    """An operator code's name: the builtin's schema name, or the custom op's code."""
    code = max(int(builtin), int(deprecated))
    if code == schema().BuiltinOperator.CUSTOM:
        return custom.decode() if isinstance(custom, bytes) else str(custom or "CUSTOM")
    return builtin_names().get(code, f"BUILTIN_{code}")


def opcode_names(model) -> list[str]:
    """Names of a model's operator codes, by opcode index (``ModelT`` or ``Model`` reader)."""
    if hasattr(model, "operatorCodes"):
        return [code_name(oc.builtinCode, oc.deprecatedBuiltinCode, oc.customCode) for oc in model.operatorCodes]
    return [code_name(oc.BuiltinCode(), oc.DeprecatedBuiltinCode(), oc.CustomCode() or b"CUSTOM")
            for oc in (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))]


def opcode_index(model, builtin_name: str, version: int = 1) -> int:
    """Index of ``builtin_name``'s operator code in a ``ModelT``, added (with ``version``) if absent."""
    code = getattr(schema().BuiltinOperator, builtin_name)
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            return i
    oc = schema().OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def op_histogram(tflite) -> dict[str, int]:
    """Count the operators of every subgraph, e.g. ``{"CONV_2D": 13, ...}``, most frequent first.

    Builtins are named as in TFLite's schema, custom ops by their custom code.
    """
    m = reader(tflite)
    names = opcode_names(m)
    hist: dict[str, int] = {}
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for k in range(sg.OperatorsLength()):
            name = names[sg.Operators(k).OpcodeIndex()]
            hist[name] = hist.get(name, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def num_ops(tflite) -> int:
    """Operators in subgraph 0."""
    return reader(tflite).Subgraphs(0).OperatorsLength()


def num_outputs(tflite) -> int:
    """Outputs of subgraph 0."""
    return reader(tflite).Subgraphs(0).OutputsLength()


@lru_cache(maxsize=1)
def tensor_type_names() -> dict[int, str]:
    """``{TensorType code: numpy-style name}``, e.g. ``{0: "float32", 9: "int8", ...}``."""
    return {v: k.lower() for k, v in vars(schema().TensorType).items() if not k.startswith("_")}


def io_tensors(tflite) -> dict[str, list[dict]]:
    """The graph inputs and outputs of subgraph 0, as ``{"inputs": [...], "outputs": [...]}``.

    Each tensor is ``{"shape": [...], "dtype": "float32", "quantization": None}``: the shape with
    ``None`` for a dynamic axis (``-1`` in the shape signature), and for a quantized tensor
    ``"quantization": {"scale": float, "zero_point": int}`` (per-tensor parameters, the ones a
    caller quantizes its input and dequantizes the output with).
    """
    sg = reader(tflite).Subgraphs(0)

    def describe(index: int) -> dict:
        t = sg.Tensors(index)
        dims = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
        if t.ShapeSignatureLength():
            dims = [None if int(d) < 0 else int(d) for d in t.ShapeSignatureAsNumpy()]
        q = t.Quantization()
        quant = None
        if q is not None and q.ScaleLength() > 0:
            if q.ScaleLength() != 1:
                raise ValueError(f"tensor {t.Name()!r} has {q.ScaleLength()} quantization scales; "
                                 "graph inputs / outputs are expected to be quantized per tensor")
            quant = {"scale": float(q.Scale(0)), "zero_point": int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0}
        return {"shape": dims, "dtype": tensor_type_names()[t.Type()], "quantization": quant}

    return {"inputs": [describe(sg.Inputs(i)) for i in range(sg.InputsLength())],
            "outputs": [describe(sg.Outputs(i)) for i in range(sg.OutputsLength())]}


def buffer_data(model, index: int, raw: bytes) -> np.ndarray:
    """Buffer ``index`` of a ``ModelT`` as uint8, whether stored inline or after the flatbuffer."""
    buf = model.buffers[index]
    if buf.offset and buf.offset > 1:
        return np.frombuffer(raw[buf.offset:buf.offset + buf.size], np.uint8)
    return np.asarray(buf.data if buf.data is not None else [], np.uint8)


def buffer_has_data(buf) -> bool:
    return buf is not None and ((buf.data is not None and len(buf.data) > 0) or (buf.offset or 0) > 1)


def inline_buffers(model, raw: bytes) -> None:
    """Move buffers stored after the flatbuffer (``offset`` / ``size``, as large models have) inline."""
    for buf in model.buffers:
        if buf.offset and buf.offset > 1:
            buf.data = np.frombuffer(raw[buf.offset:buf.offset + buf.size], np.uint8)
        buf.offset, buf.size = 0, 0


def pack(model, raw: bytes) -> bytes:
    """Serialize a ``ModelT`` read from ``raw`` back to .tflite bytes (its external buffers inlined)."""
    import flatbuffers

    inline_buffers(model, raw)
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def slice_op(tflite, index: int) -> bytes:
    """A single-op model: operator ``index`` of subgraph 0 on its own.

    The operator's non-constant inputs become the graph inputs, its outputs the graph outputs;
    its constant inputs keep their buffers. Other tensors, buffers, signatures and metadata are
    dropped. Models with several subgraphs (control flow) are refused.
    """
    raw = as_bytes(tflite)
    model = unpack(raw)
    if len(model.subgraphs) != 1:
        raise ValueError(f"per-op slicing handles single-subgraph models; this one has {len(model.subgraphs)}")
    sg = model.subgraphs[0]
    if not 0 <= index < len(sg.operators):
        raise IndexError(f"operator {index} out of range (0..{len(sg.operators) - 1})")
    op = sg.operators[index]
    ins = [int(t) for t in op.inputs if int(t) >= 0]
    outs = [int(t) for t in op.outputs]
    inter = [int(t) for t in (op.intermediates if op.intermediates is not None else [])]
    graph_inputs = []
    for t in ins:
        tensor = sg.tensors[t]
        if not buffer_has_data(model.buffers[tensor.buffer]) and t not in graph_inputs and not tensor.isVariable:
            graph_inputs.append(t)
    used = sorted(set(ins) | set(outs) | set(inter))
    tmap = {old: new for new, old in enumerate(used)}
    sg.tensors = [sg.tensors[i] for i in used]
    op.inputs = [tmap[int(t)] if int(t) >= 0 else -1 for t in op.inputs]
    op.outputs = [tmap[t] for t in outs]
    if inter:
        op.intermediates = [tmap[t] for t in inter]
    sg.operators = [op]
    sg.inputs = [tmap[t] for t in graph_inputs]
    sg.outputs = [tmap[t] for t in outs]
    model.signatureDefs = []
    model.metadata = []
    model.metadataBuffer = []
    order = sorted({0} | {int(t.buffer) for t in sg.tensors})
    bmap = {old: new for new, old in enumerate(order)}
    model.buffers = [model.buffers[i] for i in order]
    for t in sg.tensors:
        t.buffer = bmap[int(t.buffer)]
    return pack(model, raw)


def tensor_name(tensor) -> str:
    name = tensor.name.decode(errors="replace") if isinstance(tensor.name, bytes) else str(tensor.name or "")
    if "<locals>" in name:  # litert-torch's generated names: keep the informative tail
        name = name.rsplit(".", 1)[-1]
    return name


def op_rows(tflite) -> list:
    """``[(type, output tensor name, output shape "AxBxC")]`` for every operator of subgraph 0, in run order."""
    model = unpack(tflite)
    names = opcode_names(model)
    sg = model.subgraphs[0]
    rows = []
    for op in sg.operators:
        out = sg.tensors[int(op.outputs[0])] if len(op.outputs) else None
        name = tensor_name(out) if out is not None else ""
        shape = "x".join(str(int(d)) for d in out.shape) if out is not None and out.shape is not None else ""
        rows.append((names[op.opcodeIndex], name, shape))
    return rows
