"""Parameter and Mult-Adds counting for any module at a given input size.

Every ATen operation the forward pass runs is counted (``TorchDispatchMode``), not only
layers that hooks can see: convolutions and matrix products as multiply-accumulates, and
every other arithmetic element-wise or reduction operation as half a Mult-Add per output
element (bias adds included), which is how TFLite's converter turns its operation count
into "equivalently N MACs". Data movement (reshape, permute, pixel shuffle, concat, pad,
copies) costs nothing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

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
    "max_pool2d_with_indices", "is_same_size", "_native_batch_norm_legit_no_training",
}
_OPS_PER_ELEMENT = {"upsample_bicubic2d": 16, "upsample_bilinear2d": 4}


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
    def __init__(self):
        super().__init__()
        self.macs = 0.0
        self.other = 0.0
        self.by_op: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = _name(func)
        if name in ("convolution", "conv2d", "_convolution"):
            w = args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            macs = out.numel() * w[0].numel()  # per output element: (C_in / groups) * kh * kw
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


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def measure(model: nn.Module, input_size: tuple[int, int] = (180, 320), batch: int = 1) -> Complexity:
    """Mult-Adds of one forward pass on a ``batch x 3 x H x W`` input (H, W = ``input_size``)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(batch, 3, *input_size)
    counter = _Counter()
    try:
        with counter:
            model(x)
    finally:
        model.train(was_training)
    mult_adds = counter.macs + counter.other / 2
    return Complexity(count_params(model), mult_adds, counter.macs, counter.other, counter.by_op)
