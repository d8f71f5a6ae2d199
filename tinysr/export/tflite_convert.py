"""Convert a tinysr generator to a TFLite flatbuffer with litert-torch.

Two modes:

``plain``
    ``litert_torch.convert(model, (sample,))`` as is. The converter decomposes
    PReLU into RELU/NEG/MUL/SUB and PixelShuffle into RESHAPE/TRANSPOSE chains.

``mobile`` (default)
    The network is exported with :func:`torch.export.export`, then rewritten
    op by op into an NHWC graph whose layout-sensitive ops are custom torch ops
    that litert-torch lowers one to one onto TFLite builtins:
    convolutions become ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` (weights stored
    OHWI / 1HWO), each PReLU one ``PRELU``, each PixelShuffle one
    ``DEPTH_TO_SPACE`` (the output channels of the convolution feeding it are
    permuted from PyTorch's CRR order to TFLite's RRC order; a ``GATHER`` on the
    channel axis does it when no such convolution exists), LeakyReLU
    ``LEAKY_RELU``, nearest upsampling ``RESIZE_NEAREST_NEIGHBOR``.
    Element-wise ops, channel concatenation and spatial means stay ATen ops on
    NHWC tensors (ADD, MUL, SUB, LOGISTIC, RELU, CONCATENATION, MEAN, ...).
    No TRANSPOSE is left inside the network. With ``layout="nhwc"`` the
    model's input and output are 1 x H x W x 3 (what Android bitmaps give);
    ``layout="nchw"`` keeps PyTorch's 1 x 3 x H x W and adds one TRANSPOSE at
    the input and one per output.

Either way the model maps RGB in [0, 1] to the same range as the PyTorch model;
the caller handles other value ranges.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable

import numpy as np
import torch
from torch import fx, nn
from torch.nn import functional as F

from .flatbuffer import num_outputs, op_histogram

__all__ = ["UnsupportedOpError", "convert_tflite", "op_histogram", "quiet_fds"]

MODES = ("mobile", "plain")
LAYOUTS = ("nhwc", "nchw")


class UnsupportedOpError(ValueError):
    """An operation of the model has no TFLite-native NHWC form in ``mobile`` mode.

    The message names the ATen op and the layer (module path and type) it comes from.
    """


# --------------------------------------------------------------------------------------------
# Custom ops: one torch op per TFLite builtin, on NHWC tensors, lowered by litert-torch.
# --------------------------------------------------------------------------------------------

_NS = "tinysr_tfl"


def _conv_out(size: int, k: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "SAME":
        return -(-size // stride)
    return (size - dilation * (k - 1) - 1) // stride + 1


def _conv_eager(x, w_nchw, b, stride_h, stride_w, dilation_h, dilation_w, padding, groups):
    xc = x.permute(0, 3, 1, 2)
    pad: Any = "same" if padding == "SAME" else 0
    y = F.conv2d(xc, w_nchw, b, (stride_h, stride_w), pad, (dilation_h, dilation_w), groups)
    return y.permute(0, 2, 3, 1).contiguous()


def _conv_fake_shape(x, w, stride_h, stride_w, dilation_h, dilation_w, padding, cout):
    n, h, wd, _ = x.shape
    kh, kw = w.shape[1], w.shape[2]
    return (n, _conv_out(h, kh, stride_h, dilation_h, padding), _conv_out(wd, kw, stride_w, dilation_w, padding), cout)


def _define_ops() -> None:
    """Register the ``tinysr_tfl`` torch ops and their litert-torch lowerings (once per process)."""
    try:
        torch.ops.tinysr_tfl.conv_2d  # noqa: B018  (already registered)
        return
    except (AttributeError, RuntimeError):
        pass

    lib = torch.library

    # conv_2d: x NHWC, w OHWI (I = Cin / groups), b [O]; grouped when I < Cin.
    @lib.custom_op(f"{_NS}::conv_2d", mutates_args=())
    def conv_2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride_h: int, stride_w: int,
                dilation_h: int, dilation_w: int, padding: str) -> torch.Tensor:
        groups = x.shape[3] // w.shape[3]
        return _conv_eager(x, w.permute(0, 3, 1, 2), b, stride_h, stride_w, dilation_h, dilation_w, padding, groups)

    @conv_2d.register_fake
    def _(x, w, b, stride_h, stride_w, dilation_h, dilation_w, padding):
        return x.new_empty(_conv_fake_shape(x, w, stride_h, stride_w, dilation_h, dilation_w, padding, w.shape[0]))

    # depthwise_conv_2d: w [1, kh, kw, Cin * depth_multiplier].
    @lib.custom_op(f"{_NS}::depthwise_conv_2d", mutates_args=())
    def depthwise_conv_2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride_h: int, stride_w: int,
                          dilation_h: int, dilation_w: int, padding: str, depth_multiplier: int) -> torch.Tensor:
        return _conv_eager(x, w.permute(3, 0, 1, 2), b, stride_h, stride_w, dilation_h, dilation_w, padding,
                           x.shape[3])

    @depthwise_conv_2d.register_fake
    def _(x, w, b, stride_h, stride_w, dilation_h, dilation_w, padding, depth_multiplier):
        return x.new_empty(_conv_fake_shape(x, w, stride_h, stride_w, dilation_h, dilation_w, padding, w.shape[3]))

    @lib.custom_op(f"{_NS}::prelu", mutates_args=())
    def prelu(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, x * alpha)

    @prelu.register_fake
    def _(x, alpha):
        return torch.empty_like(x)

    @lib.custom_op(f"{_NS}::leaky_relu", mutates_args=())
    def leaky_relu(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return F.leaky_relu(x, alpha)

    @leaky_relu.register_fake
    def _(x, alpha):
        return torch.empty_like(x)

    # depth_to_space: NHWC, DCR order (input channel (i * r + j) * C + c -> output (c, offset i, j)).
    @lib.custom_op(f"{_NS}::depth_to_space", mutates_args=())
    def depth_to_space(x: torch.Tensor, block_size: int) -> torch.Tensor:
        n, h, w, c = x.shape
        r = block_size
        y = x.reshape(n, h, w, r, r, c // (r * r)).permute(0, 1, 3, 2, 4, 5)
        return y.reshape(n, h * r, w * r, c // (r * r)).contiguous()

    @depth_to_space.register_fake
    def _(x, block_size):
        n, h, w, c = x.shape
        r = block_size
        return x.new_empty((n, h * r, w * r, c // (r * r)))

    @lib.custom_op(f"{_NS}::resize_nearest_neighbor", mutates_args=())
    def resize_nearest_neighbor(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
        y = F.interpolate(x.permute(0, 3, 1, 2), size=(out_h, out_w), mode="nearest")
        return y.permute(0, 2, 3, 1).contiguous()

    @resize_nearest_neighbor.register_fake
    def _(x, out_h, out_w):
        return x.new_empty((x.shape[0], out_h, out_w, x.shape[3]))

    # pad: zero padding, paddings = [top, bottom, left, right] on H and W of an NHWC tensor.
    @lib.custom_op(f"{_NS}::pad", mutates_args=())
    def pad(x: torch.Tensor, paddings: list[int]) -> torch.Tensor:
        t, b, l, r = paddings
        return F.pad(x, (0, 0, l, r, t, b))

    @pad.register_fake
    def _(x, paddings):
        t, b, l, r = paddings
        return x.new_empty((x.shape[0], x.shape[1] + t + b, x.shape[2] + l + r, x.shape[3]))

    # gather_channels: y[..., k] = x[..., indices[k]].
    @lib.custom_op(f"{_NS}::gather_channels", mutates_args=())
    def gather_channels(x: torch.Tensor, indices: list[int]) -> torch.Tensor:
        return x[..., list(indices)].contiguous()

    @gather_channels.register_fake
    def _(x, indices):
        return x.new_empty((*x.shape[:-1], len(indices)))

    _register_lowerings()


def _register_lowerings() -> None:
    from litert_converter.mlir import ir
    from litert_converter.mlir.dialects import stablehlo
    from litert_torch.backend.lowerings import registry
    from litert_torch.backend.lowerings import utils as lutils

    ops = torch.ops.tinysr_tfl

    def tfl(name, lctx, operands, attributes):
        # litert-torch's carrier for TFLite ops (as in litert_torch.backend.experimental.torch_tfl).
        return stablehlo.custom_call(
            result=lutils.node_meta_to_ir_types(lctx.node),
            inputs=list(operands),
            call_target_name=ir.StringAttr.get(name),
            has_side_effect=ir.BoolAttr.get(False),
            backend_config=ir.StringAttr.get(str(ir.DictAttr.get(attributes))),
        )

    def i32(v):
        return ir.IntegerAttr.get(ir.IntegerType.get_signless(32), int(v))

    def conv_attrs(stride_h, stride_w, dilation_h, dilation_w, padding):
        return {"dilation_h_factor": i32(dilation_h), "dilation_w_factor": i32(dilation_w),
                "fused_activation_function": ir.StringAttr.get("NONE"), "padding": ir.StringAttr.get(padding),
                "stride_h": i32(stride_h), "stride_w": i32(stride_w)}

    def const_i32(values, shape=None):
        arr = np.asarray(values, dtype=np.int32)
        return lutils.numpy_array_constant(arr.reshape(shape) if shape else arr)

    @registry.lower(ops.conv_2d.default)
    def _(lctx, x, w, b, stride_h, stride_w, dilation_h, dilation_w, padding):
        return tfl("tfl.conv_2d", lctx, [x, w, b], conv_attrs(stride_h, stride_w, dilation_h, dilation_w, padding))

    @registry.lower(ops.depthwise_conv_2d.default)
    def _(lctx, x, w, b, stride_h, stride_w, dilation_h, dilation_w, padding, depth_multiplier):
        attrs = conv_attrs(stride_h, stride_w, dilation_h, dilation_w, padding)
        attrs["depth_multiplier"] = i32(depth_multiplier)
        return tfl("tfl.depthwise_conv_2d", lctx, [x, w, b], attrs)

    @registry.lower(ops.prelu.default)
    def _(lctx, x, alpha):
        return tfl("tfl.prelu", lctx, [x, alpha], {})

    @registry.lower(ops.leaky_relu.default)
    def _(lctx, x, alpha):
        return tfl("tfl.leaky_relu", lctx, [x], {"alpha": ir.FloatAttr.get(ir.F32Type.get(), float(alpha))})

    @registry.lower(ops.depth_to_space.default)
    def _(lctx, x, block_size):
        return tfl("tfl.depth_to_space", lctx, [x], {"block_size": i32(block_size)})

    @registry.lower(ops.resize_nearest_neighbor.default)
    def _(lctx, x, out_h, out_w):
        return tfl("tfl.resize_nearest_neighbor", lctx, [x, const_i32([out_h, out_w])],
                   {"align_corners": ir.BoolAttr.get(False), "half_pixel_centers": ir.BoolAttr.get(False)})

    @registry.lower(ops.pad.default)
    def _(lctx, x, paddings):
        t, b, l, r = paddings
        return tfl("tfl.pad", lctx, [x, const_i32([[0, 0], [t, b], [l, r], [0, 0]])], {})

    @registry.lower(ops.gather_channels.default)
    def _(lctx, x, indices):
        return tfl("tfl.gather", lctx, [x, const_i32(list(indices))], {"axis": i32(3), "batch_dims": i32(0)})


# --------------------------------------------------------------------------------------------
# NCHW ExportedProgram -> NHWC fx graph of the ops above.
# --------------------------------------------------------------------------------------------

_aten = torch.ops.aten
# NCHW axis -> NHWC axis.
_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
_PASSTHROUGH = {_aten.clone.default, _aten.alias.default, _aten.contiguous.default, _aten.detach.default,
                _aten.dropout.default, _aten.feature_dropout.default, _aten.lift_fresh_copy.default}
# Layout-agnostic element-wise ATen ops: kept as they are on NHWC tensors.
_UNARY = {_aten.relu.default, _aten.relu6.default, _aten.sigmoid.default, _aten.tanh.default,
          _aten.hardtanh.default, _aten.clamp.default, _aten.neg.default, _aten.abs.default, _aten.exp.default,
          _aten.sqrt.default, _aten.rsqrt.default, _aten.elu.default, _aten.silu.default,
          _aten.hardswish.default, _aten.hardsigmoid.default, _aten.gelu.default}
_BINARY = {_aten.add.Tensor, _aten.sub.Tensor, _aten.mul.Tensor, _aten.div.Tensor, _aten.add.Scalar,
           _aten.sub.Scalar, _aten.mul.Scalar, _aten.div.Scalar, _aten.maximum.default, _aten.minimum.default,
           _aten.rsub.Scalar, _aten.rsub.Tensor}
# Element-wise ops with scalar arguments only: they commute with a permutation of the channels.
_CHANNELWISE_UNARY = {_aten.relu.default, _aten.relu6.default, _aten.hardtanh.default, _aten.clamp.default,
                      _aten.sigmoid.default, _aten.tanh.default, _aten.neg.default}
_REDUCE = {_aten.mean.dim, _aten.sum.dim_IntList, _aten.amax.default, _aten.amin.default}


def _layer(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "the model's forward"
    path, kind = list(stack.values())[-1]
    kind = kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
    return f"layer '{path or '<root>'}' ({kind})"


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _shuffle_perm(channels: int, r: int) -> list[int]:
    """New channel order so that DEPTH_TO_SPACE (RRC) reproduces PixelShuffle (CRR)."""
    c_out = channels // (r * r)
    return [c * r * r + i * r + j for i in range(r) for j in range(r) for c in range(c_out)]


def _to_nhwc_const(t: torch.Tensor) -> torch.Tensor:
    """A constant broadcast against N x C x H x W tensors, as the one broadcast against N x H x W x C."""
    if t.dim() == 0 or t.numel() == 1:
        return t
    while t.dim() < 4:
        t = t.unsqueeze(0)
    return t.permute(0, 2, 3, 1).contiguous()


class _NHWCRewriter:
    """Replays an NCHW ExportedProgram as an NHWC fx graph of TFLite-native ops."""

    def __init__(self, ep: torch.export.ExportedProgram, nchw_io: bool):
        self.ep = ep
        self.nchw_io = nchw_io
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.env: dict[fx.Node, Any] = {}
        self._n_consts = 0
        self.ops = torch.ops.tinysr_tfl
        # PixelShuffle inputs computed only for it from convolutions through channel-wise ops (the
        # anchor residual's ADD, a clip): permute those convolutions' output channels, so that no
        # GATHER is needed before DEPTH_TO_SPACE.
        self.shuffle_perm: dict[fx.Node, list[int]] = {}
        self.permuted: set[fx.Node] = set()  # channel-wise nodes whose output is in DEPTH_TO_SPACE order
        for node in ep.graph.nodes:
            if node.op == "call_function" and node.target == _aten.pixel_shuffle.default:
                src = node.args[0]
                convs, inner = self._permutable(src)
                if convs is not None:
                    perm = _shuffle_perm(src.meta["val"].shape[1], int(node.args[1]))
                    self.shuffle_perm.update({c: perm for c in convs})
                    self.permuted.update(inner)

    @staticmethod
    def _permutable(src) -> tuple[list[fx.Node] | None, list[fx.Node]]:
        """The convolutions (and channel-wise nodes between) whose output channels can be permuted so that
        ``src`` comes out permuted: every path back from ``src`` through single-user scalar element-wise ops
        and tensor-tensor ADD/SUB ends in an ungrouped convolution used only there."""
        convs: list[fx.Node] = []
        inner: list[fx.Node] = []
        stack = [src]
        while stack:
            n = stack.pop()
            if not isinstance(n, fx.Node) or len(n.users) != 1:
                return None, []
            if n.target == _aten.conv2d.default:
                if len(n.args) >= 7 and n.args[6] != 1:
                    return None, []
                convs.append(n)
            elif n.target in _CHANNELWISE_UNARY:
                inner.append(n)
                stack.append(n.args[0])
            elif n.target in (_aten.add.Tensor, _aten.sub.Tensor) and len(n.args) == 2 \
                    and all(isinstance(a, fx.Node) for a in n.args) and len(n.kwargs) == 0:
                inner.append(n)
                stack.extend(n.args)
            else:
                return None, []
        return convs, inner

    # -- helpers --------------------------------------------------------------------------
    def const_node(self, t: torch.Tensor) -> fx.Node:
        name = f"_c{self._n_consts}"
        self._n_consts += 1
        self.root.register_buffer(name, t.detach().clone().contiguous())
        return self.graph.get_attr(name)

    def operand(self, v, node: fx.Node, what: str) -> fx.Node:
        if isinstance(v, fx.Node):
            return v
        raise self.fail(node, f"has a constant {what}")

    def fail(self, node: fx.Node, why: str = "has no TFLite-native NHWC form here") -> UnsupportedOpError:
        return UnsupportedOpError(f"op {node.target} in {_layer(node)} {why} (mode='mobile'); "
                                  "use mode='plain' or change the layer")

    def check_rank4(self, node: fx.Node):
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.dim() != 4:
            shape = tuple(val.shape) if isinstance(val, torch.Tensor) else type(val).__name__
            raise self.fail(node, f"produces a tensor of shape {shape}; only 4-D N x C x H x W activations "
                                  "can be laid out NHWC")

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> fx.GraphModule:
        sig = self.ep.graph_signature
        consts = {}
        for spec in sig.input_specs:
            if spec.kind.name == "USER_INPUT":
                continue
            tgt = spec.target
            consts[spec.arg.name] = self.ep.state_dict[tgt] if tgt in self.ep.state_dict else self.ep.constants[tgt]
        n_user = 0
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                if node.name in consts:
                    self.env[node] = consts[node.name].detach()
                    continue
                n_user += 1
                if n_user > 1 or not isinstance(node.meta.get("val"), torch.Tensor) or node.meta["val"].dim() != 4:
                    raise UnsupportedOpError("mobile mode converts models with one 4-D N x C x H x W input")
                x = self.graph.placeholder("x")
                self.env[node] = self.graph.call_function(_aten.permute.default, (x, [0, 2, 3, 1])) \
                    if self.nchw_io else x
            elif node.op == "call_function":
                self.env[node] = self.call(node)
            elif node.op == "output":
                outs = []
                for o in node.args[0]:
                    v = self.env[o]
                    if not isinstance(v, fx.Node):
                        raise UnsupportedOpError("mobile mode needs every model output to depend on the input")
                    outs.append(self.graph.call_function(_aten.permute.default, (v, [0, 3, 1, 2]))
                                if self.nchw_io else v)
                self.graph.output(outs[0] if len(outs) == 1 else tuple(outs))
            else:
                raise UnsupportedOpError(f"unexpected {node.op} node {node.target} in the exported graph")
        gm = fx.GraphModule(self.root, self.graph)
        gm.graph.lint()
        return gm

    def call(self, node: fx.Node):
        target = node.target
        args = fx.node.map_arg(node.args, lambda n: self.env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.env[n])
        if not _find_nodes((args, kwargs)):  # constant subexpression: fold it now, in NCHW
            return target(*args, **kwargs)
        if target in _PASSTHROUGH:
            return args[0]
        self.check_rank4(node)
        handler: Callable | None = _HANDLERS.get(target)
        if handler is not None:
            return handler(self, node, *args, **kwargs)
        if target in _UNARY:
            return self.graph.call_function(target, args, kwargs)
        if target in _BINARY:
            args = tuple(_to_nhwc_const(a) if isinstance(a, torch.Tensor) else a for a in args)
            args = tuple(self.const_node(a) if isinstance(a, torch.Tensor) else a for a in args)
            return self.graph.call_function(target, args, kwargs)
        if target in _REDUCE:
            x, dims, *rest = args
            keepdim = rest[0] if rest else kwargs.get("keepdim", False)
            if not keepdim:
                raise self.fail(node, "drops dimensions (keepdim=False)")
            dims = range(4) if dims is None else [dims] if isinstance(dims, int) else dims
            dims = [_AXIS[d % 4] for d in dims]
            return self.graph.call_function(target, (x, dims, True) + tuple(rest[1:]))
        raise self.fail(node)

    # -- layout-sensitive ops -------------------------------------------------------------
    def conv2d(self, node, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        x = self.operand(x, node, "the input")
        if not isinstance(w, torch.Tensor) or (b is not None and not isinstance(b, torch.Tensor)):
            raise self.fail(node, "has weights computed at run time")
        cout, cin_g, kh, kw = w.shape
        cin = cin_g * groups
        b = torch.zeros(cout, dtype=w.dtype) if b is None else b
        sh, sw = _pair(stride)
        dh, dw = _pair(dilation)
        if isinstance(padding, str):
            if padding == "valid":
                ph = pw = 0
            elif (sh, sw) == (1, 1):
                ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
                if kh % 2 == 0 or kw % 2 == 0:
                    raise self.fail(node, "uses padding='same' with an even kernel")
            else:
                raise self.fail(node, "uses padding='same' with a stride")
        else:
            ph, pw = _pair(padding)
        if (sh, sw) == (1, 1) and kh % 2 == 1 and kw % 2 == 1 and (ph, pw) == (dh * (kh - 1) // 2, dw * (kw - 1) // 2):
            mode = "SAME"
        else:
            mode = "VALID"
            if ph or pw:
                x = self.graph.call_function(self.ops.pad.default, (x, [ph, ph, pw, pw]))
        perm = self.shuffle_perm.get(node)
        if perm is not None:
            w, b = w[perm], b[perm]
        common = (sh, sw, dh, dw, mode)
        if groups == cin and groups > 1 and cout % cin == 0:
            wn = self.const_node(w.permute(1, 2, 3, 0))  # [1, kh, kw, Cout]
            return self.graph.call_function(self.ops.depthwise_conv_2d.default,
                                            (x, wn, self.const_node(b), *common, cout // cin))
        wn = self.const_node(w.permute(0, 2, 3, 1))  # OHWI
        return self.graph.call_function(self.ops.conv_2d.default, (x, wn, self.const_node(b), *common))

    def conv_transpose2d(self, node, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        """A transposed convolution whose output is exactly ``stride`` times its input, as the equivalent
        sub-pixel convolution (Shi et al. 2016): a stride-1 convolution to ``stride**2`` times the output
        channels, then DEPTH_TO_SPACE. Output phase r of each dimension reads input offset d through
        kernel tap ``stride * (c_r - d) + rho_r`` (c_r, rho_r: quotient and remainder of r + padding)."""
        x = self.operand(x, node, "the input")
        if not isinstance(w, torch.Tensor) or (b is not None and not isinstance(b, torch.Tensor)):
            raise self.fail(node, "has weights computed at run time")
        (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
        _, _, ih, iw = node.args[0].meta["val"].shape
        _, _, oh, ow = node.meta["val"].shape
        if groups != 1 or (dh, dw) != (1, 1) or sh != sw or (oh, ow) != (ih * sh, iw * sw):
            raise self.fail(node, "is not an ungrouped, undilated transposed convolution whose output is "
                                  "stride x its input")
        s = sh
        cin, cout, kh, kw = w.shape

        def taps(k, p):
            """Per output phase r: {input offset d: kernel tap}; and the offset range."""
            per = [{(r + p) // s - m: s * m + (r + p) % s for m in range(k) if s * m + (r + p) % s < k}
                   for r in range(s)]
            ds = [d for t in per for d in t]
            return per, min(ds), max(ds)

        (th, lo_h, hi_h), (tw, lo_w, hi_w) = taps(kh, ph), taps(kw, pw)
        if lo_h > 0 or hi_h < 0 or lo_w > 0 or hi_w < 0:
            raise self.fail(node, "has a padding this rewrite does not cover")
        wc = torch.zeros(cout, s, s, cin, hi_h - lo_h + 1, hi_w - lo_w + 1, dtype=w.dtype)
        for rh in range(s):
            for rw in range(s):
                for d_h, t_h in th[rh].items():
                    for d_w, t_w in tw[rw].items():
                        wc[:, rh, rw, :, d_h - lo_h, d_w - lo_w] = w[:, :, t_h, t_w].t()
        wc = wc.reshape(cout * s * s, cin, *wc.shape[-2:])  # PixelShuffle (CRR) channel order
        bc = (torch.zeros(cout, dtype=w.dtype) if b is None else b).repeat_interleave(s * s)
        perm = _shuffle_perm(cout * s * s, s)
        wc, bc = wc[perm], bc[perm]
        if lo_h or hi_h or lo_w or hi_w:
            x = self.graph.call_function(self.ops.pad.default, (x, [-lo_h, hi_h, -lo_w, hi_w]))
        y = self.graph.call_function(self.ops.conv_2d.default,
                                     (x, self.const_node(wc.permute(0, 2, 3, 1)), self.const_node(bc),
                                      1, 1, 1, 1, "VALID"))
        return self.graph.call_function(self.ops.depth_to_space.default, (y, s))

    def prelu(self, node, x, w):
        x = self.operand(x, node, "the input")
        if not isinstance(w, torch.Tensor):
            raise self.fail(node, "has a slope computed at run time")
        c = node.meta["val"].shape[1]
        alpha = w.reshape(-1).expand(c).reshape(1, 1, c) if w.numel() in (1, c) else None
        if alpha is None:
            raise self.fail(node, f"has {w.numel()} slopes for {c} channels")
        return self.graph.call_function(self.ops.prelu.default, (x, self.const_node(alpha)))

    def leaky_relu(self, node, x, negative_slope=0.01):
        return self.graph.call_function(self.ops.leaky_relu.default, (x, float(negative_slope)))

    def pixel_shuffle(self, node, x, r):
        src = node.args[0]
        if src not in self.shuffle_perm and src not in self.permuted:
            x = self.graph.call_function(self.ops.gather_channels.default,
                                         (x, _shuffle_perm(src.meta["val"].shape[1], int(r))))
        return self.graph.call_function(self.ops.depth_to_space.default, (x, int(r)))

    def upsample_nearest(self, node, x, output_size=None, scale_factors=None, *rest):
        # TFLite (align_corners=False, half_pixel_centers=False) reads source pixel
        # floor(dst * in / out), as PyTorch does for a given size or an exact scale factor.
        _, _, oh, ow = node.meta["val"].shape
        _, _, ih, iw = node.args[0].meta["val"].shape
        if node.target == _aten.upsample_nearest2d.default:
            scale_factors = [s for s in (rest[:2] if rest else ()) if s is not None] or None
        if scale_factors and any(float(s) * n != m for s, n, m in zip(scale_factors, (ih, iw), (oh, ow))):
            raise self.fail(node, f"resizes {ih}x{iw} by {tuple(scale_factors)} to {oh}x{ow} (not exact)")
        return self.graph.call_function(self.ops.resize_nearest_neighbor.default, (x, int(oh), int(ow)))

    def cat(self, node, tensors, dim=0):
        tensors = [self.const_node(_to_nhwc_const(t)) if isinstance(t, torch.Tensor) else t for t in tensors]
        return self.graph.call_function(_aten.cat.default, (tensors, _AXIS[dim % 4]))


def _find_nodes(tree) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_aggregate(tree, lambda a: found.append(a) if isinstance(a, fx.Node) else None)
    return found


_HANDLERS: dict[Any, Callable] = {
    _aten.conv2d.default: _NHWCRewriter.conv2d,
    _aten.conv_transpose2d.input: _NHWCRewriter.conv_transpose2d,
    _aten.prelu.default: _NHWCRewriter.prelu,
    _aten._prelu_kernel.default: _NHWCRewriter.prelu,
    _aten.leaky_relu.default: _NHWCRewriter.leaky_relu,
    _aten.pixel_shuffle.default: _NHWCRewriter.pixel_shuffle,
    _aten.upsample_nearest2d.vec: _NHWCRewriter.upsample_nearest,
    _aten.upsample_nearest2d.default: _NHWCRewriter.upsample_nearest,
    _aten.cat.default: _NHWCRewriter.cat,
}


def _nhwc_module(model: nn.Module, sample: torch.Tensor, layout: str = "nhwc") -> fx.GraphModule:
    """The NHWC graph module that ``mode="mobile"`` converts (runnable eagerly in PyTorch).

    ``sample`` is an N x 3 x H x W tensor. With ``layout="nhwc"`` the module takes and returns
    N x H x W x C tensors; with ``"nchw"`` it takes and returns N x C x H x W.
    """
    _define_ops()
    with torch.no_grad():
        ep = torch.export.export(model.eval(), (sample,))
        return _NHWCRewriter(ep, nchw_io=layout == "nchw").run().eval()


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def convert_tflite(model: nn.Module, input_size: tuple[int, int], mode: str = "mobile", layout: str = "nhwc",
                   dynamic: bool = False, channels: int = 3) -> bytes:
    """Convert ``model`` (N x 3 x H x W RGB in [0, 1] -> image) to a TFLite flatbuffer.

    Args:
        model: the generator; converted in eval mode, batch 1.
        input_size: (H, W) of the input the model is built for.
        mode: ``"mobile"`` (TFLite builtins: one PRELU per PReLU, one DEPTH_TO_SPACE per
            PixelShuffle, no TRANSPOSE inside the network) or ``"plain"`` (litert-torch's default
            lowering).
        layout: ``"nhwc"`` (input 1 x H x W x 3, output 1 x sH x sW x 3) or ``"nchw"``
            (PyTorch's layout; in mobile mode one TRANSPOSE at the input and one per output).
        dynamic: must be False: litert-torch cannot lower variable H x W. A mobile-mode model whose
            graph has no RESIZE_NEAREST_NEIGHBOR (TPSR and every searched cell) runs at any size after
            ``Interpreter.resize_tensor_input``; one with it (ESRGAN) keeps its converted output size,
            so re-convert those per size. Plain-mode models cannot be resized (fixed RESHAPE shapes).
        channels: input channels of the sample the model is traced with (3: an RGB image; another
            value for a building block, e.g. one 16-channel cell operation timed on its own).

    Returns:
        The .tflite flatbuffer.

    Raises:
        UnsupportedOpError: in mobile mode, for an op that has no NHWC TFLite form (the message
            names the op and the layer).
        ValueError: for a bad mode, layout or input size, or ``dynamic=True``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if dynamic:
        raise ValueError("dynamic=True is not supported: litert-torch cannot lower these networks with "
                         "variable H x W (even mode='plain' fails at the first broadcast). Convert at a fixed "
                         "size; a mobile-mode model without RESIZE_NEAREST_NEIGHBOR ops can be run at another "
                         "size with Interpreter.resize_tensor_input() + allocate_tensors()")
    h, w = (int(v) for v in input_size)
    if h < 1 or w < 1:
        raise ValueError(f"input_size must be positive (H, W), got {input_size!r}")
    if int(channels) < 1:
        raise ValueError(f"channels must be positive, got {channels!r}")
    was_training = model.training
    try:
        flat = _convert(model.eval(), torch.rand(1, int(channels), h, w), mode, layout)
    finally:
        model.train(was_training)
    if mode == "plain":
        return flat
    hist = op_histogram(flat)
    allowed = 0 if layout == "nhwc" else 1 + num_outputs(flat)
    if hist.get("TRANSPOSE", 0) > allowed:
        raise RuntimeError(f"mobile conversion left {hist['TRANSPOSE']} TRANSPOSE ops in the graph: {hist}")
    return flat


def _convert(model: nn.Module, sample: torch.Tensor, mode: str, layout: str) -> bytes:
    import litert_torch

    if mode == "plain":
        if layout == "nhwc":
            model = litert_torch.to_channel_last_io(model, args=[0], outputs=[0]).eval()
    else:
        model = _nhwc_module(model, sample, layout)
    if layout == "nhwc":
        sample = sample.permute(0, 2, 3, 1).contiguous()
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        # torch's pytree deprecation notice, raised inside litert-torch's conversion (not ours to fix)
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        return litert_torch.convert(model, (sample,)).model_content()


@contextlib.contextmanager
def quiet_fds(enabled: bool = True):
    """Silence file descriptors 1 and 2 (the converter's C++ and progress chatter)."""
    if not enabled:
        yield
        return
    import sys

    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)
