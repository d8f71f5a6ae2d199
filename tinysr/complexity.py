"""Parameter and Mult-Adds counting for any module at a given input size.

Every ATen operation the forward pass runs is counted (``TorchDispatchMode``), not only
layers that hooks can see: convolutions and matrix products as multiply-accumulates, and
every other arithmetic element-wise or reduction operation as half a Mult-Add per output
element (bias adds included), which is how TFLite's converter turns its operation count
into "equivalently N MACs". Data movement (reshape, permute, pixel shuffle, concat, pad,
copies) costs nothing.

The count needs only shapes: :func:`measure` runs the forward pass on the ``meta`` device by
default (parameters, buffers and input as meta tensors: no arithmetic, no memory), so counting
a large network at 720p takes milliseconds; a network whose forward pass needs values (data-
dependent control flow, ``.item()``) is counted on real tensors instead, with the same figures.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Operations that move or view data: no arithmetic.
_FREE = {
    "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "clone", "contiguous", "cat",
    "pixel_shuffle", "pixel_unshuffle", "constant_pad_nd", "slice", "select", "unsqueeze", "squeeze",
    "detach", "alias", "_to_copy", "copy_", "empty", "zeros", "ones", "full", "fill_", "zero_", "split",
    "split_with_sizes", "stack", "flatten", "lift_fresh", "new_empty", "new_zeros", "unbind", "as_strided",
    "upsample_nearest2d", "_reshape_alias", "index", "repeat", "expand_copy", "view_copy", "permute_copy",
    "empty_like", "zeros_like", "ones_like", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset",
    "max_pool2d_with_indices", "is_same_size", "_native_batch_norm_legit_no_training", "scalar_tensor",
}
_OPS_PER_ELEMENT = {"upsample_bicubic2d": 16, "upsample_bilinear2d": 4}


# Pointwise operations whose result is not of their inputs' dtype (booleans): run as they are.
_BOOL_RESULT = {"eq", "ne", "lt", "le", "gt", "ge", "eq_", "ne_", "lt_", "le_", "gt_", "ge_", "isnan", "isinf",
                "isfinite", "isposinf", "isneginf", "isreal", "signbit", "logical_and", "logical_or", "logical_xor",
                "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not"}


# Element-wise activations without ATen's pointwise tag (their result: the input's shape).
_ACTIVATIONS = {"leaky_relu", "leaky_relu_", "hardtanh", "hardtanh_", "_prelu_kernel", "elu", "elu_", "gelu",
                "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "softplus", "mish",
                "relu6", "threshold"}


def _cat_on_meta(tensors, dim=0):
    if not tensors or any(t.device.type != "meta" or t.dtype != tensors[0].dtype or t.dim() != tensors[0].dim()
                          for t in tensors) or tensors[0].dim() == 0:
        return None
    dim = dim % tensors[0].dim()
    shape = list(tensors[0].shape)
    if any(t.shape[:dim] != tensors[0].shape[:dim] or t.shape[dim + 1:] != tensors[0].shape[dim + 1:]
           for t in tensors):
        return None
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return torch.empty(shape, dtype=tensors[0].dtype, device="meta")


def _result_on_meta(func, args, kwargs):
    """The result of a pointwise operation (or a concatenation, an inference batch norm) on meta tensors of one floating dtype, made directly
    (an empty tensor of the broadcast shape, laid out like the input of that shape) instead of by
    the operation's meta kernel, which for most pointwise operations is Python (a reference
    implementation checking types, shapes and strides: most of the time of a count on meta
    tensors). ``None`` where this does not apply: the operation then runs as usual."""
    name = _name(func)
    if name == "cat":
        return _cat_on_meta(*args, **kwargs)
    if name == "native_batch_norm":  # inference: the normalised input, no saved statistics
        x, training = args[0], args[5] if len(args) > 5 else kwargs.get("training")
        if x.device.type != "meta" or training is not False:
            return None
        return torch.empty_like(x), x.new_empty((0,)), x.new_empty((0,))
    if (torch.Tag.pointwise not in func.tags and name not in _ACTIVATIONS) or len(func._schema.returns) != 1 \
            or kwargs.get("out") is not None or name in _BOOL_RESULT:
        return None
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    if not tensors or not tensors[0].is_floating_point() or any(
            t.device.type != "meta" or t.dtype != tensors[0].dtype for t in tensors):
        return None
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    except RuntimeError:
        return None
    if func._schema.is_mutable:  # in place: the result is its first argument
        return args[0] if isinstance(args[0], torch.Tensor) and args[0].shape == shape else None
    same = next((t for t in tensors if t.shape == shape), None)
    return None if same is None else torch.empty_like(same)


def _name(func) -> str:
    return func.__name__.split(".")[0]


def _numel(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (list, tuple)):
        return sum(_numel(t) for t in x)
    return 0


@dataclass
class Complexity:
    params: int
    mult_adds: float
    macs: float  # convolution / matmul multiply-accumulates alone
    other_ops: float  # all other arithmetic operations (each counted as half a Mult-Add)
    by_op: Counter = field(default_factory=Counter)  # Mult-Adds per ATen op name

    def summary(self) -> str:
        return f"{self.params / 1e3:.1f} K params, {self.mult_adds / 1e9:.3f} G Mult-Adds"


class _Counter(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Not wrapped in dynamo's disable (never compiled): its first call would import torch._dynamo,
        # as long as importing torch itself, for a count that takes a fraction of that.
        return False

    def __init__(self, shapes_only: bool = False):
        super().__init__()
        self.shapes_only = shapes_only  # meta tensors: pointwise results made without their meta kernels
        self.macs = 0.0
        self.other = 0.0
        self.by_op: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = _result_on_meta(func, args, kwargs) if self.shapes_only else None
        if out is None:
            out = func(*args, **kwargs)
        name = _name(func)
        if name in ("convolution", "conv2d", "_convolution", "conv_transpose1d", "conv_transpose2d",
                    "conv_transpose3d"):
            x, w = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            transposed = name.startswith("conv_transpose") or (
                name != "conv2d" and bool(args[6] if len(args) > 6 else kwargs.get("transposed", False)))
            if transposed:  # weight C_in x (C_out / groups) x k...: each input element feeds (C_out / groups) * k...
                macs = x.numel() * w[0].numel()
            else:  # weight C_out x (C_in / groups) x k...: per output element (C_in / groups) * k...
                macs = out.numel() * w[0].numel()
            self.macs += macs
            self.by_op[name] += macs
            if bias is not None:
                self.other += out.numel()
                self.by_op[name] += out.numel() / 2
        elif name in ("mm", "bmm", "addmm", "matmul", "linear"):
            a, b = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
            k = a.shape[-1]
            macs = out.numel() * k
            self.macs += macs
            self.by_op[name] += macs
            if name == "addmm":
                self.other += out.numel()
                self.by_op[name] += out.numel() / 2
        elif name in _FREE or name.startswith(("_foreach", "sym_")):
            pass
        elif name in ("mean", "sum", "amax", "amin", "var_mean", "var", "std"):
            n = _numel(args[0])
            self.other += n
            self.by_op[name] += n / 2
        elif name == "native_batch_norm" or name == "_native_batch_norm_legit":
            n = _numel(args[0]) * 2
            self.other += n
            self.by_op[name] += n / 2
        else:
            n = _numel(out) * _OPS_PER_ELEMENT.get(name, 1)
            self.other += n
            self.by_op[name] += n / 2
        return out


class _SkipInPlaceOnMeta(TorchDispatchMode):
    """In-place operations on meta tensors (weight initialisation: ``normal_``, ``uniform_``,
    ``zero_``, ...) return their tensor at once: there are no values to write."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # as _Counter's

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.is_mutable and args and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta" \
                and len(func._schema.returns) == 1:
            return args[0]
        return func(*args, **(kwargs or {}))


def build_on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with every tensor on the ``meta`` device: the network's shapes without its
    weights (no memory, no initialisation), e.g. for :func:`measure`."""
    with torch.device("meta"), _SkipInPlaceOnMeta():
        return build()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    return t if t.device.type == "meta" else torch.empty_like(t, device="meta")


def _count(model: nn.Module, x: torch.Tensor, meta: bool) -> _Counter:
    counter = _Counter(shapes_only=meta)
    if not meta:
        with counter:
            model(x)
        return counter
    from torch.func import functional_call

    # The model is left as it is: its parameters and buffers are stood in for by meta tensors of
    # the same shapes for this one call; tensors made during the pass are meta too.
    state = {n: _meta_like(t) for n, t in [*model.named_parameters(), *model.named_buffers()]}
    with torch.device("meta"), counter:
        functional_call(model, state, (x.to("meta"),))
    return counter


@torch.no_grad()
def measure(model: nn.Module, input_size: tuple[int, int] = (180, 320), batch: int = 1,
            device: str | None = None) -> Complexity:
    """Mult-Adds of one forward pass on a ``batch x 3 x H x W`` input (H, W = ``input_size``).

    ``device``: ``None`` (default) counts on ``meta`` tensors (shapes only) and falls back to real
    tensors when the forward pass needs values; ``"meta"`` counts on meta tensors only (raises if
    the network cannot run on them); ``"cpu"`` runs the pass on real tensors. The model itself is
    never moved or changed (a meta-device model is counted as it is).
    """
    if device not in (None, "meta", "cpu"):
        raise ValueError(f"device {device!r}: expected None, 'meta' or 'cpu'")
    was_training = model.training
    model.eval()
    on_meta = any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
    try:
        if device == "cpu" and not on_meta:
            counter = _count(model, torch.zeros(batch, 3, *input_size), meta=False)
        elif device == "meta" or on_meta:
            counter = _count(model, torch.zeros(batch, 3, *input_size, device="meta"), meta=True)
        else:
            try:
                counter = _count(model, torch.zeros(batch, 3, *input_size, device="meta"), meta=True)
            except (NotImplementedError, RuntimeError):  # the pass needs values (e.g. .item())
                counter = _count(model, torch.zeros(batch, 3, *input_size), meta=False)
    finally:
        model.train(was_training)
    mult_adds = counter.macs + counter.other / 2
    return Complexity(count_params(model), mult_adds, counter.macs, counter.other, counter.by_op)
