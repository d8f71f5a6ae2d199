"""Which ops of a .tflite model TFLite's GPU delegate would reject.

The op set is the delegate's parser table (``tensorflow/lite/delegates/gpu/common/model_builder.cc``,
TensorFlow 2.16); shape limits: RESHAPE / TRANSPOSE / others are handled on tensors of rank <= 4
(older converters turned PixelShuffle into a 6-D reshape, which it rejects). The delegate computes in
float16 / float32 only: an int8 model runs on it by dequantizing its weights to float (its quantized
mode, on by default in LiteRT), so it gets none of int8's speed there (TensorFlow Lite's "GPU delegate,
quantized models" guide); int8 pays on the CPU (XNNPACK) or an NPU.
"""
from __future__ import annotations

from pathlib import Path

from .flatbuffer import opcode_names, reader, schema

GPU_OPS = frozenset("""
ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CAST CEIL CONCATENATION CONV_2D COS CUMSUM DENSIFY DEPTH_TO_SPACE
DEPTHWISE_CONV_2D DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GREATER
GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN
MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL ONE_HOT PACK PAD PADV2 POW PRELU QUANTIZE REDUCE_MAX REDUCE_MIN
REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT_V2 SIN
SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TILE
TRANSPOSE TRANSPOSE_CONV
""".split())
MAX_RANK = 4


def gpu_delegate_issues(tflite: bytes | str | Path) -> list[str]:
    """One line per op type the GPU delegate cannot run (unsupported type, or tensors above rank 4)."""
    m = reader(tflite)
    names = opcode_names(m)
    issues: dict[str, set[str]] = {}
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            oc = m.OperatorCodes(op.OpcodeIndex())
            name = names[op.OpcodeIndex()]
            if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) == schema().BuiltinOperator.CUSTOM:
                name = f"CUSTOM:{name}"
            if name not in GPU_OPS:
                issues.setdefault(name, set()).add("not supported by the GPU delegate")
                continue
            ranks = [sg.Tensors(op.Outputs(i)).ShapeLength() for i in range(op.OutputsLength())]
            ranks += [sg.Tensors(op.Inputs(i)).ShapeLength() for i in range(op.InputsLength()) if op.Inputs(i) >= 0]
            if max(ranks, default=0) > MAX_RANK:
                issues.setdefault(name, set()).add(f"rank-{max(ranks)} tensors (the GPU delegate handles rank <= {MAX_RANK})")
    return [f"{name}: {', '.join(sorted(why))}" for name, why in sorted(issues.items())]
