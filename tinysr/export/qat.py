"""Quantization-aware training in the exporter's int8 scheme.

:func:`tinysr.export.quantize.tflite_int8` quantizes the float TFLite graph of a network: int8
activations with one asymmetric range per tensor, int8 convolution weights symmetric per output
channel (``max|w| / 127``, values in [-127, 127]), int32 biases, a PReLU with one slope as LEAKY_RELU
(float slope), one with per-channel slopes as ``x + (slopes - 1) * min(x, 0)`` in int8 ops.
:class:`QATModel` is that graph in training form, on the PyTorch side:

* the network in its deployed form (:func:`tinysr.models.mobile.deploy`: a collapsible block
  collapsed, exactly what the exporter converts), traced with :func:`torch.fx.symbolic_trace`;
* a fake-quantization point on every activation the int8 TFLite holds as int8 with its own range,
  and only there. The points are found, not assumed: the network is converted to float TFLite (as
  the exporter converts it), :func:`~tinysr.export.quantize.int8_tensor_plan` lists the tensors the
  int8 rewrite quantizes, and each is matched to the traced node that computes the same values
  (sorted values equal, so layout and the sub-pixel channel order do not matter) on a random input.
  A convolution followed by a ReLU the converter fuses gets one point, after the ReLU; a
  depth-to-space shares its input's range and gets none; the graph input has the fixed range of
  [0, 1] (scale 1/255, zero point -128: 8-bit pixels exact); a TANH output the kernel's fixed range;
* every convolution's weight fake-quantized per output channel as the exporter rounds it, and a
  per-channel PReLU computed as the exporter writes it (``x + (slopes - 1) * min(x, 0)``, ``slopes - 1``
  int8 per tensor, the product rounded on a range derived from x's).

**Why PyTorch's own fake quantization** (:class:`torch.ao.quantization.FakeQuantize` with a
moving-average min / max observer for activations, :func:`torch.fake_quantize_per_channel_affine`
for weights) rather than litert-torch's quantizer: tinysr's int8 TFLite is not produced by
litert-torch's PT2E quantizer (whose XNNPACK recipe leaves PReLU and depth-to-space in float and
calibrates plain min / max ranges, see :mod:`tinysr.export.quantize`), so its annotations would
place fake-quant points where the exported graph has none. PyTorch's modules are maintained,
implement the straight-through estimator, compute scale and zero point with the same formula as the
exporter (``(max - min) / 255``, zero point ``-128 - round(min / scale)``) and keep their state
(ranges, observer switches) in buffers, so a checkpoint resumes them exactly.

The learnt ranges go to the export unchanged (:func:`learnt_tensor_params`, ``tflite_int8(...,
learnt=...)``): no re-calibration. The int8 TFLite then computes what the fake-quant forward
computes, up to the integer kernels' rounding (int32 biases, fixed-point requantization).
"""
from __future__ import annotations

import operator

import numpy as np
import torch
from torch import fx, nn
from torch.nn import functional as F

__all__ = ["QATModel", "QATError", "learnt_tensor_params", "INPUT_QPARAMS"]

#: The graph input's int8 range: [0, 1] over 256 levels (the exporter's ``input_range``).
INPUT_QPARAMS = (1.0 / 255.0, -128)
_PROBE_SIZE = (24, 32)


class QATError(ValueError):
    """A network whose int8 graph the fake quantization cannot mirror (one line: what and where)."""


def _sorted(a) -> np.ndarray:
    return np.sort(np.asarray(a, dtype=np.float64).ravel())


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    if a.size != b.size:
        return False
    tol = 1e-4 * max(1.0, float(np.abs(a).max(initial=0.0)))
    return bool(np.abs(a - b).max(initial=0.0) <= tol)


def _float_tflite_tensors(flat: bytes, x_nhwc: np.ndarray) -> dict[int, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=bytes(flat), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.ascontiguousarray(x_nhwc, dtype=np.float32))
    interp.invoke()
    ids = {int(inp["index"])} | {int(t) for op in interp._get_ops_details() for t in op["outputs"] if t >= 0}  # noqa: SLF001
    return {t: np.array(interp.get_tensor(t)) for t in ids}


def _node_outputs(net: nn.Module, graph: fx.Graph, x: torch.Tensor) -> dict[str, np.ndarray]:
    outs: dict[str, np.ndarray] = {}

    class _Record(fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            if isinstance(r, torch.Tensor) and r.is_floating_point():
                outs[n.name] = r.detach().numpy()
            return r

    with torch.no_grad():
        _Record(net, graph=graph).run(x)
    return outs


def _convert(net: nn.Module, size) -> bytes:
    from .tflite_convert import convert_tflite, quiet_fds

    with torch.no_grad(), quiet_fds():
        return convert_tflite(net.eval(), tuple(size), mode="mobile")


def match_points(net: nn.Module, graph: fx.Graph, flat: bytes, seed: int = 0) -> dict[int, tuple[str, tuple]]:
    """For every tensor the int8 rewrite of ``flat`` (the float TFLite of ``net``) quantizes with its own or a
    fixed range: ``tensor index -> (traced node name, plan entry)``. ``QATError`` when one has no node."""
    from .flatbuffer import io_tensors
    from .quantize import int8_tensor_plan

    shape = io_tensors(flat)["inputs"][0]["shape"]  # 1 x H x W x 3
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, int(shape[1]), int(shape[2]), generator=g)
    tensors = _float_tflite_tensors(flat, x.permute(0, 2, 3, 1).numpy())
    nodes = _node_outputs(net, graph, x)
    order = [n.name for n in graph.nodes if n.name in nodes]
    keys = {name: _sorted(nodes[name]) for name in order}
    plan = int8_tensor_plan(flat)
    found: dict[int, tuple[str, tuple]] = {}
    for t in sorted(plan):
        entry = plan[t]
        if entry[0] == "same":
            continue
        want = _sorted(tensors[t])
        hit = next((name for name in order if _same_values(keys[name], want)), None)
        if hit is None:
            raise QATError(f"the int8 graph quantizes tensor {t} ({want.size} values) that no operation of the "
                           f"PyTorch network computes: quantization-aware training cannot mirror it")
        found[t] = (hit, entry)
    return found


def _weight_scales(w: torch.Tensor) -> torch.Tensor:
    """The exporter's int8 weight scale of every output channel (dim 0): max|w| / 127 (1 for an all-zero channel)."""
    amax = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
    return torch.where(amax > 0, amax / 127.0, torch.ones_like(amax)).float()


def _weight_fq(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 fake quantization, the exporter's rounding (:func:`_weight_scales`, [-127, 127])."""
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, _weight_scales(w), zero, 0, -127, 127)


def _bias_values_fq(b: torch.Tensor | None, w: torch.Tensor, in_scale: float | None) -> torch.Tensor | None:
    """The bias as the int8 kernel adds it: int32 in units of input scale x weight scale (per output channel),
    rounded with a straight-through gradient. Unchanged when the input's scale is not known."""
    if b is None or in_scale is None:
        return b
    step = in_scale * _weight_scales(w)
    return b + (torch.round(b.detach() / step) * step - b.detach())


def _qparams(fq) -> tuple[float, int]:
    """A fake-quant point's current int8 (scale, zero point)."""
    return float(fq.scale.reshape(-1)[0]), int(fq.zero_point.reshape(-1)[0])


def _symmetric_fq(a: torch.Tensor) -> torch.Tensor:
    """int8 symmetric per tensor (``max|a| / 127``, [-127, 127]), as the exporter writes a PReLU's constants."""
    amax = float(a.detach().abs().max())
    return torch.fake_quantize_per_tensor_affine(a, amax / 127.0 if amax > 0 else 1.0, 0, -127, 127)


def _activation_fq(entry: tuple, averaging: float) -> nn.Module:
    from torch.ao.quantization import FakeQuantize, FixedQParamsObserver, MovingAverageMinMaxObserver

    if entry[0] == "own":
        return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                            qscheme=torch.per_tensor_affine, averaging_constant=averaging)
    scale, zp = float(entry[1]), int(entry[2])
    fq = FakeQuantize(observer=FixedQParamsObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                      qscheme=torch.per_tensor_affine, scale=scale, zero_point=zp)
    fq.scale.fill_(scale)  # in place from the start (FakeQuantize sets them at its first observed forward)
    fq.zero_point.fill_(zp)
    return fq


def _const_fq(c: torch.Tensor) -> torch.Tensor:
    """A float constant operand of ADD / SUB / MUL as the exporter writes it: one value exactly (scale
    |c| / 127), several values int8 asymmetric over their range (and 0)."""
    flat = c.detach().reshape(-1)
    if flat.numel() == 0 or bool((flat == flat[0]).all()) and float(flat[0]) != 0:
        return c
    lo, hi = min(float(flat.min()), 0.0), max(float(flat.max()), 0.0)
    if hi - lo <= 1e-12:
        return c
    scale = (hi - lo) / 255.0
    zp = int(min(max(round(-128 - lo / scale), -128), 127))
    return torch.fake_quantize_per_tensor_affine(c, scale, zp, -128, 127)


_ARITHMETIC = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul}
_CONV_FUNCTIONS = {torch.conv2d, F.conv2d}


_SAME_SCALE_MODULES = (nn.PixelShuffle, nn.Identity)
_SAME_SCALE_METHODS = {"reshape", "view", "permute", "contiguous", "flatten"}


class _FakeQuantInterpreter(fx.Interpreter):
    def __init__(self, owner: "QATModel"):
        super().__init__(owner.net, garbage_collect_values=True, graph=owner.graph)
        self.owner = owner

    def source_point(self, node):
        """Follow ``node`` back through the ops that keep the int8 grid (depth-to-space, reshapes): the fake-quant
        point its value lies on (None if none) and the node the walk stopped at."""
        while isinstance(node, fx.Node):
            key = self.owner.points.get(node.name)
            if key is not None:
                return self.owner.fq[key], node
            if node.op == "call_module" and isinstance(self.fetch_attr(node.target), _SAME_SCALE_MODULES) \
                    or node.op == "call_method" and node.target in _SAME_SCALE_METHODS:
                node = node.args[0]
            else:
                return None, node
        return None, node

    def input_scale(self, node) -> float | None:
        """The int8 scale of the value ``node`` computes (its own point's, or carried through a depth-to-space,
        a reshape or a multiplication by a number, which the converter folds into the next convolution)."""
        fq, node = self.source_point(node)
        if fq is not None:
            return _qparams(fq)[0]
        if isinstance(node, fx.Node) and node.op == "call_function" and node.target in (operator.mul, torch.mul) \
                and len(node.args) == 2 and isinstance(node.args[1], (int, float)):
            s = self.input_scale(node.args[0])
            return None if s is None else s * abs(float(node.args[1]))
        return None

    def prelu(self, n, x: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
        """A PReLU as the exporter writes it (``tflite_int8``'s ``fast_prelu``): one slope, LEAKY_RELU (the float
        slope); per-channel slopes, ``x + (slopes - 1) * min(x, 0)`` with ``slopes - 1`` int8 symmetric per tensor
        and the product rounded on the range :func:`~tinysr.export.quantize.prelu_product_params` derives from x's."""
        from .quantize import prelu_product_params

        flat = slopes.detach().reshape(-1)
        if bool((flat == flat[0]).all()):
            return F.prelu(x, slopes)
        fq, _ = self.source_point(n.args[0])
        if fq is None:
            raise QATError(f"PReLU {n.target!r}: its input has no int8 range of its own, which the int8 graph's "
                           "PReLU needs")
        c = _symmetric_fq(slopes - 1.0)
        scale, zp = prelu_product_params(_qparams(fq), c.detach().double().numpy())
        prod = torch.fake_quantize_per_tensor_affine(torch.clamp(x, max=0.0) * c.reshape(1, -1, 1, 1), scale, zp,
                                                     -128, 127)
        return x + prod

    def run_node(self, n):
        if n.op == "call_module":
            mod = self.fetch_attr(n.target)
            if type(mod) is nn.Conv2d or type(mod) is nn.PReLU:
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                if type(mod) is nn.PReLU:
                    r = self.prelu(n, args[0], mod.weight)
                else:
                    w = _weight_fq(mod.weight)
                    r = mod._conv_forward(args[0], w, _bias_values_fq(mod.bias, mod.weight, self.input_scale(n.args[0])))
                return self._after(n, r)
        if n.op == "call_function" and n.target in _CONV_FUNCTIONS:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            args = list(args)
            x, w = args[0], args[1]
            b = args[2] if len(args) > 2 else kwargs.pop("bias", None)
            args[1] = _weight_fq(w)
            if b is not None:
                b = _bias_values_fq(b, w, self.input_scale(n.args[0]))
            if len(args) > 2:
                args[2] = b
            elif b is not None:
                kwargs["bias"] = b
            return self._after(n, n.target(*args, **kwargs))
        return self._after(n, super().run_node(n))

    def _after(self, n, r):
        if n.op == "get_attr" and isinstance(r, torch.Tensor) and n.users and all(
                u.op == "call_function" and u.target in _ARITHMETIC for u in n.users):
            return _const_fq(r)
        fq = self.owner.points.get(n.name)
        return r if fq is None else self.owner.fq[fq](r)


class QATModel(nn.Module):
    """The deployed network with the int8 graph's fake quantization (see the module doc).

    ``model``: the network (training form; it is deployed first). ``averaging``: the activation
    observers' moving-average constant. ``probe_size``: the input size the float TFLite is converted
    at to find the points (any size gives the same points). After :meth:`freeze` (or
    ``freeze()`` via the trainer's ``qat.freeze_after``) the ranges stop moving. In eval mode the
    observers never update (validation does not move the ranges). ``state_dict`` holds ``net.*`` (the
    deployed network's weights) and ``fq.*`` (the ranges and observer switches) and ``frozen``.
    """

    def __init__(self, model: nn.Module, averaging: float = 0.01, probe_size=_PROBE_SIZE):
        super().__init__()
        from ..models.mobile import deploy

        net = deploy(model).float()
        unsupported = sorted({type(m).__name__ for m in net.modules() if isinstance(m, nn.ConvTranspose2d)})
        if unsupported:
            raise QATError(f"quantization-aware training does not handle {', '.join(unsupported)} (the exporter "
                           "rewrites it into other convolutions, whose weights it rounds differently)")
        self.net = net
        try:
            self.graph = fx.symbolic_trace(net).graph
        except Exception as e:  # noqa: BLE001
            raise QATError(f"quantization-aware training needs a network torch.fx can trace: {type(e).__name__}: "
                           f"{str(e).splitlines()[0]}") from None
        flat = _convert(net, probe_size)
        matches = match_points(net, self.graph, flat)
        self._check_weights(flat)
        by_node: dict[str, tuple] = {}
        for _, (node, entry) in sorted(matches.items()):
            by_node.setdefault(node, entry)
        self.points = {node: f"p{k}" for k, node in enumerate(sorted(by_node, key=self._order().index))}
        self.fq = nn.ModuleDict({key: _activation_fq(by_node[node], averaging) for node, key in self.points.items()})
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        self.scale = getattr(net, "scale", None)

    def _order(self) -> list[str]:
        return [n.name for n in self.graph.nodes]

    def _check_weights(self, flat: bytes) -> None:
        """Every convolution weight of the float TFLite must be one of the network's 4-D weights (the ones
        fake-quantized here), so both round the same numbers per channel."""
        from . import flatbuffer as fb

        def per_channel(w: np.ndarray, axis: int) -> np.ndarray:
            # each output channel over its max |w|: what per-channel symmetric rounding sees (the converter
            # may fold a constant scale, e.g. the input normalisation, into a convolution's weights)
            m = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
            amax = np.abs(m).max(axis=1, keepdims=True)
            return _sorted(m / np.where(amax > 0, amax, 1.0))

        model = fb.unpack(flat)
        sg = model.subgraphs[0]
        names = fb.opcode_names(model)
        ours = [per_channel(t.detach().numpy(), 0) for t in list(self.net.parameters()) + list(self.net.buffers())
                if t.ndim == 4]
        for op in sg.operators:
            name = names[op.opcodeIndex]
            if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                continue
            t = sg.tensors[int(op.inputs[1])]
            w = np.frombuffer(fb.buffer_data(model, t.buffer, flat).tobytes(), np.float32)
            shape = [int(v) for v in t.shape]
            if w.size == 0 or w.size != int(np.prod(shape)) or not any(
                    _same_values(o, per_channel(w.reshape(shape), 0 if name == "CONV_2D" else 3)) for o in ours):
                raise QATError(f"a {names[op.opcodeIndex]} of the exported graph has weights no nn.Conv2d of the "
                               "network holds: quantization-aware training cannot round them as the exporter does")

    # ------------------------------------------------------------------ forward and state
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and not self.observed():
            raise QATError("the fake quantization has no ranges yet: run it in train mode on some inputs first")
        return _FakeQuantInterpreter(self).run(x)

    def observed(self) -> bool:
        """Whether every learnt range has seen data (its observer's min / max are finite)."""
        return all(bool(torch.isfinite(fq.activation_post_process.min_val).all())
                   for fq in self.fq.values() if hasattr(fq.activation_post_process, "min_val"))

    def train(self, mode: bool = True):
        super().train(mode)
        observe = bool(mode) and not bool(self.frozen)
        for fq in self.fq.values():
            fq.enable_observer(observe)
        return self

    def freeze(self) -> None:
        """Stop the activation ranges (the observers) from moving; the fake quantization goes on."""
        self.frozen.fill_(True)
        for fq in self.fq.values():
            fq.disable_observer()

    def record(self) -> dict:
        """What a checkpoint keeps besides the deployed network's weights: the points (traced node -> key)
        and the fake-quant state (ranges, switches)."""
        return {"points": dict(self.points), "fq": {k: v for k, v in self.state_dict().items()
                                                      if k.startswith("fq.") or k == "frozen"}}

    def load_record(self, record: dict, source: str = "checkpoint") -> None:
        if dict(record.get("points", {})) != self.points:
            raise QATError(f"{source}: its fake-quantization points do not match this network's int8 graph "
                           "(written by another tinysr, or for another network)")
        own = self.state_dict()
        own.update(record["fq"])
        self.load_state_dict(own)
        self.train(self.training)

    def qparams(self) -> dict[str, tuple[float, int]]:
        """Per traced node with a point: the (scale, zero point) the fake quantization uses now."""
        return {node: _qparams(self.fq[key]) for node, key in self.points.items()}


def learnt_tensor_params(qat: QATModel, flat: bytes) -> dict[int, tuple[float, int]]:
    """The learnt (scale, zero point) of every tensor of ``flat`` (the float TFLite of ``qat.net``, at any
    size) that the int8 rewrite gives its own range: the ``learnt`` argument of ``tflite_int8``.
    ``QATError`` when the exported graph has a point the training did not."""
    qp = qat.qparams()
    out = {}
    for t, (node, entry) in match_points(qat.net, qat.graph, flat).items():
        if entry[0] != "own":
            continue
        if node not in qp:
            raise QATError(f"the exported graph quantizes the output of {node}, which the training did not")
        out[t] = qp[node]
    return out
