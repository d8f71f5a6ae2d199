"""The generator search space's operations.

Each operation is defined once: how to build it (``build(n)`` -> ``nn.Module``
mapping n channels to n channels at the same resolution), its Mult-Adds at a
given feature-map size, and the key under which a latency table stores it.

Mult-Adds follow the convention of TFLite's converter ("equivalently N MACs"):
multiply-accumulates of convolutions and linear layers, plus half an operation
for every other arithmetic element (bias adds, PReLU, sums, scaling). The
generic counter in :mod:`tinysr.complexity` measures the same quantity on any
module, and the tests check that both agree for every operation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

# Element-wise operation costs, in arithmetic operations per output element.
PRELU_OPS = 1  # one multiply-select per element (TFLite PRELU; counted as 1)
ADD_OPS = 1
MUL_OPS = 1


def conv_macs(cin: int, cout: int, k: int, h: int, w: int, groups: int = 1, bias: bool = True) -> float:
    """Mult-Adds of a stride-1 'same' convolution on an h x w map (bias add = half an op)."""
    macs = h * w * cout * (cin // groups) * k * k
    return macs + (h * w * cout * 0.5 if bias else 0.0)


def elementwise(n_elements: float, ops_per_element: float = 1.0) -> float:
    return n_elements * ops_per_element * 0.5


#: Expansion of a linear (collapsible) block in a searched network's ``linear`` skeleton (SESR's 256).
LINEAR_EXPAND = 256


class ConvOp(nn.Module):
    """An n -> n k x k convolution. ``expand`` > 0: trained as a residual :class:`CollapsibleConv` (a k x k
    conv to ``expand`` channels, a 1x1 back, plus the input), the same function class as one convolution,
    which it collapses into for export (the ``linear`` skeleton option of a searched network)."""

    def __init__(self, n: int, k: int, groups: int = 1, expand: int = 0):
        super().__init__()
        if expand and groups != 1:
            raise ValueError("only a full convolution (groups=1) has a collapsible training form")
        self.conv = (CollapsibleConv(n, n, k, expand, residual=True) if expand
                     else nn.Conv2d(n, n, k, padding=k // 2, groups=groups, bias=True))

    def forward(self, x):
        return self.conv(x)


class CollapsibleConv(nn.Module):
    """A collapsible linear block (SESR): k x k conv to ``expand`` channels (no bias), then 1x1 conv to
    ``cout`` (+ the input when ``residual``), with nothing non-linear between, so it equals one k x k
    convolution. Training uses the expanded parameters; the forward pass runs the collapsed kernel
    (the paper's efficient training: the same function and gradients, one convolution's cost), and
    :meth:`expanded_forward` runs the two convolutions as written for the exactness test.

    ``expand=0`` is the collapsed, deployed form: one plain convolution.
    """

    def __init__(self, cin: int, cout: int, k: int, expand: int = 256, residual: bool = False):
        super().__init__()
        self.cin, self.cout, self.k, self.expand, self.residual = cin, cout, k, expand, residual
        if residual and cin != cout:
            raise ValueError("a residual collapsible block maps n channels to n")
        if expand:
            self.expand_weight = nn.Parameter(torch.empty(expand, cin, k, k))
            self.squeeze_weight = nn.Parameter(torch.empty(cout, expand, 1, 1))
            nn.init.kaiming_uniform_(self.expand_weight, a=math.sqrt(5))
            nn.init.kaiming_uniform_(self.squeeze_weight, a=math.sqrt(5))
        else:
            self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(cout))

    def kernel(self) -> torch.Tensor:
        """The one k x k kernel this block equals."""
        if not self.expand:
            return self.weight
        w = torch.einsum("oe,eikl->oikl", self.squeeze_weight[:, :, 0, 0], self.expand_weight)
        if self.residual:
            eye = torch.zeros_like(w)
            eye[range(self.cout), range(self.cin), self.k // 2, self.k // 2] = 1.0
            w = w + eye
        return w

    def forward(self, x):
        return F.conv2d(x, self.kernel(), self.bias, padding=self.k // 2)

    def expanded_forward(self, x):
        if not self.expand:
            return self.forward(x)
        y = F.conv2d(F.conv2d(x, self.expand_weight, padding=self.k // 2), self.squeeze_weight, self.bias)
        return y + x if self.residual else y


def collapsed_state_dict(model: nn.Module) -> dict:
    """``model``'s state dict with every :class:`CollapsibleConv` in its collapsed form (``weight``: the one
    kernel it equals, ``bias``), i.e. the state dict of the same network built with ``expand=0``."""
    state = {}
    collapsible = {}
    for name, m in model.named_modules():
        if isinstance(m, CollapsibleConv):
            collapsible[name] = m
            state[f"{name}.weight"], state[f"{name}.bias"] = m.kernel(), m.bias
    for key, value in model.state_dict().items():
        if key.rpartition(".")[0] not in collapsible:
            state[key] = value
    return state


class DSepOp(nn.Module):
    """Depthwise k x k (no bias) -> PReLU -> pointwise 1 x 1, as in the published TPSR."""

    def __init__(self, n: int, k: int):
        super().__init__()
        self.dw = nn.Conv2d(n, n, k, padding=k // 2, groups=n, bias=False)
        self.act = nn.PReLU()
        self.pw = nn.Conv2d(n, n, 1, bias=True)

    def forward(self, x):
        return self.pw(self.act(self.dw(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: 1x1 expand (x e) -> PReLU -> k x k depthwise -> PReLU -> 1x1 project, + input."""

    def __init__(self, n: int, k: int, expand: int = 2, act: Callable[[int], nn.Module] | None = None):
        super().__init__()
        hidden = n * expand
        act = act or (lambda c: nn.PReLU())
        self.expand = nn.Conv2d(n, hidden, 1, bias=True)
        self.act1 = act(hidden)
        self.dw = nn.Conv2d(hidden, hidden, k, padding=k // 2, groups=hidden, bias=True)
        self.act2 = act(hidden)
        self.project = nn.Conv2d(hidden, n, 1, bias=True)

    def forward(self, x):
        return x + self.project(self.act2(self.dw(self.act1(self.expand(x)))))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global average -> FC (n/r) -> ReLU -> FC (n) -> sigmoid -> scale."""

    def __init__(self, n: int, reduction: int = 4):
        super().__init__()
        mid = max(1, n // reduction)
        self.fc1 = nn.Conv2d(n, mid, 1, bias=True)
        self.fc2 = nn.Conv2d(mid, n, 1, bias=True)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s


class ChannelAttentionBlock(nn.Module):
    """RCAN's residual channel attention block: conv3 -> ReLU -> conv3 -> channel attention, + input."""

    def __init__(self, n: int, reduction: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(n, n, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(n, n, 3, padding=1, bias=True)
        self.attention = SqueezeExcite(n, reduction)

    def forward(self, x):
        return x + self.attention(self.conv2(torch.relu(self.conv1(x))))


def _se_macs(n: int, h: int, w: int, reduction: int = 4) -> float:
    mid = max(1, n // reduction)
    pool = elementwise(h * w * n)  # the sum behind the average
    fcs = conv_macs(n, mid, 1, 1, 1) + conv_macs(mid, n, 1, 1, 1) + elementwise(mid + n)  # relu, sigmoid
    return pool + fcs + elementwise(h * w * n, MUL_OPS)


@dataclass(frozen=True)
class OpSpec:
    """One candidate operation of the cell: constructor, cost formula and latency key."""

    name: str
    kind: str  # conv | gconv | dsep | inv | se | ca | identity
    kernel: int | None
    build: Callable[[int], nn.Module]
    macs: Callable[[int, int, int], float]  # (n, h, w) -> Mult-Adds, without the node's PReLU

    def latency_key(self, n: int, h: int, w: int) -> str:
        """Key of this op (followed by its PReLU) in a latency table, e.g. ``conv3_n16_180x320``."""
        return f"{self.name}_n{n}_{h}x{w}"


GROUPS = 4
EXPAND = 2
SE_REDUCTION = 4


def _make_specs() -> dict[str, OpSpec]:
    specs: dict[str, OpSpec] = {}

    def add(spec: OpSpec):
        specs[spec.name] = spec

    for k in (1, 3, 5, 7):
        add(OpSpec(f"conv{k}", "conv", k, lambda n, k=k: ConvOp(n, k),
                   lambda n, h, w, k=k: conv_macs(n, n, k, h, w)))
    for k in (3, 5, 7):
        add(OpSpec(f"gconv{k}", "gconv", k, lambda n, k=k: ConvOp(n, k, groups=GROUPS),
                   lambda n, h, w, k=k: conv_macs(n, n, k, h, w, groups=GROUPS)))
    for k in (3, 5, 7):
        add(OpSpec(f"dsep{k}", "dsep", k, lambda n, k=k: DSepOp(n, k),
                   lambda n, h, w, k=k: conv_macs(n, n, k, h, w, groups=n, bias=False)
                   + elementwise(h * w * n, PRELU_OPS) + conv_macs(n, n, 1, h, w)))
    for k in (3, 5, 7):
        def inv_macs(n, h, w, k=k):
            e = n * EXPAND
            return (conv_macs(n, e, 1, h, w) + elementwise(h * w * e, PRELU_OPS)
                    + conv_macs(e, e, k, h, w, groups=e) + elementwise(h * w * e, PRELU_OPS)
                    + conv_macs(e, n, 1, h, w) + elementwise(h * w * n, ADD_OPS))
        add(OpSpec(f"inv{k}", "inv", k, lambda n, k=k: InvertedResidual(n, k, EXPAND), inv_macs))
    add(OpSpec("se", "se", None, lambda n: SqueezeExcite(n, SE_REDUCTION),
               lambda n, h, w: _se_macs(n, h, w, SE_REDUCTION)))
    add(OpSpec("ca", "ca", None, lambda n: ChannelAttentionBlock(n, SE_REDUCTION),
               lambda n, h, w: 2 * conv_macs(n, n, 3, h, w) + elementwise(h * w * n)
               + _se_macs(n, h, w, SE_REDUCTION) + elementwise(h * w * n, ADD_OPS)))
    add(OpSpec("identity", "identity", None, lambda n: nn.Identity(), lambda n, h, w: 0.0))
    return specs


OPS: dict[str, OpSpec] = _make_specs()
OP_NAMES: tuple[str, ...] = tuple(OPS)


def get_op(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown operation {name!r}; known: {', '.join(OP_NAMES)}") from None


def prelu_macs(n: int, h: int, w: int) -> float:
    return elementwise(h * w * n, PRELU_OPS)


def sum_macs(n: int, h: int, w: int) -> float:
    """Mult-Adds of one element-wise sum of two n-channel maps (one per extra leaf of a cell)."""
    return elementwise(h * w * n, ADD_OPS)
