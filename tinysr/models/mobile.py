"""Hand-designed mobile super-resolution networks: the baselines a phone team would pick by hand.

Every network maps RGB in [0, 1] to RGB in [0, 1] at ``scale`` times the size, as every tinysr
generator does, and exports through ``tinysr export`` to native-op TFLite and ONNX. Each class cites
its source; where a paper works on the Y channel or at another scale, ``channels`` / ``scale``
reproduce its published form (the tests check the published parameter counts there) and the
registered ``*_x4`` models are the RGB x4 forms.

* :class:`FSRCNN` - Dong, Loy, Tang, "Accelerating the Super-Resolution Convolutional Neural
  Network", ECCV 2016.
* :class:`ESPCN` - Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
  Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016.
* :class:`XLSR` - Ayazoglu, "Extremely Lightweight Quantization Robust Real-Time Single-Image Super
  Resolution for Mobile Devices", CVPRW 2021 (MAI 2021 winner), in the form of Qualcomm's AIMET model
  zoo release (three GBlocks, 28.0 K parameters at x4, as Qualcomm AI Hub lists it).
* :class:`QuickSRNet` - Berger et al., "QuickSRNet: Plain Single-Image Super-Resolution Architecture
  for Faster Inference on Mobile Platforms", CVPRW 2023 (authors' code: AIMET model zoo).
* :class:`ABPN` - Du et al., "Anchor-based Plain Net for Mobile Image Super-Resolution", CVPRW 2021
  (MAI 2021).
* :class:`SESR` - Bhardwaj et al., "Collapsible Linear Blocks for Super-Efficient Super
  Resolution", MLSys 2022.
* :class:`EDSR` - Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
  CVPRW 2017; registered as MLPerf Mobile's super-resolution model EDSR-F32B5 (5 residual blocks,
  32 features).

The *anchor* of the int8-minded networks (ABPN, SESR, QuickSRNet-large) is the input repeated
``scale**2`` times along channels and added before depth-to-space: nearest-neighbour upsampling, so
the convolutions learn a residual. It is a 1x1 convolution with fixed repeat weights (a native
``CONV_2D`` on every runtime), trainable only where the authors' code trains it (QuickSRNet-large).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..ops import CollapsibleConv, collapsed_state_dict
from .registry import register_family, register_model


def _conv(cin: int, cout: int, k: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups)


def repeat_weight(channels: int, scale: int) -> torch.Tensor:
    """1x1 convolution weight that repeats each of ``channels`` inputs ``scale**2`` times (PixelShuffle order)."""
    r2 = scale * scale
    w = torch.zeros(channels * r2, channels, 1, 1)
    for c in range(channels):
        w[c * r2:(c + 1) * r2, c] = 1.0
    return w


class Anchor(nn.Module):
    """The input repeated ``scale**2`` times per channel (nearest upsampling before depth-to-space).

    ``trainable=False`` (ABPN, SESR): fixed weights, a buffer (not a parameter). ``trainable=True``
    (QuickSRNet-large): a 1x1 convolution initialised to the repeat.
    """

    def __init__(self, channels: int, scale: int, trainable: bool = False):
        super().__init__()
        w, b = repeat_weight(channels, scale), torch.zeros(channels * scale * scale)
        if trainable:
            self.weight, self.bias = nn.Parameter(w), nn.Parameter(b)
        else:
            self.register_buffer("weight", w)
            self.register_buffer("bias", b)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias)


# ------------------------------------------------------------------------------------ FSRCNN
@register_family
class FSRCNN(nn.Module):
    """FSRCNN(d, s, m) (Dong et al., ECCV 2016): feature extraction 5x5 (d), shrinking 1x1 (s), m mapping
    3x3 layers (s), expanding 1x1 (d), each followed by PReLU, then a 9x9 transposed convolution of
    stride ``scale``.

    Published: FSRCNN(56, 12, 4) has 12,464 weights on the Y channel (biases and PReLU slopes not
    counted; Sec. 3.3 of the paper); ``FSRCNN(channels=1)`` reproduces that count. The registered
    ``fsrcnn_x4`` is the RGB form (24.7 K parameters). The deconvolution's padding makes the output
    exactly ``scale`` times the input (padding 4, output padding ``scale - 1``).
    """

    family = "fsrcnn"

    def __init__(self, scale: int = 4, d: int = 56, s: int = 12, m: int = 4, channels: int = 3):
        super().__init__()
        self.scale, self.d, self.s, self.m, self.channels = scale, d, s, m, channels
        layers = [_conv(channels, d, 5), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [_conv(s, s, 3), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=4, output_padding=scale - 1)
        for mod in self.body:
            if isinstance(mod, nn.Conv2d):  # the paper's He initialisation for PReLU networks
                nn.init.kaiming_normal_(mod.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.deconv.weight, std=1e-3)
        nn.init.zeros_(self.deconv.bias)

    def config(self) -> dict:
        return {"scale": self.scale, "d": self.d, "s": self.s, "m": self.m, "channels": self.channels}

    def forward(self, x):
        return self.deconv(self.body(x))


# ------------------------------------------------------------------------------------- ESPCN
@register_family
class ESPCN(nn.Module):
    """ESPCN (Shi et al., CVPR 2016): 5x5 conv (64) - tanh - 3x3 conv (32) - tanh - 3x3 conv
    (channels x scale^2) - pixel shuffle.

    The paper works on the Y channel and states no parameter count; ``ESPCN(channels=1, scale=3)`` has
    the 22.7 K parameters its layer sizes imply (1x5x5x64 + 64x3x3x32 + 32x3x3x9 weights + biases). The
    registered ``espcn_x4`` is the RGB form (37.2 K).
    """

    family = "espcn"

    def __init__(self, scale: int = 4, channels: int = 3, n1: int = 64, n2: int = 32):
        super().__init__()
        self.scale, self.channels, self.n1, self.n2 = scale, channels, n1, n2
        self.body = nn.Sequential(_conv(channels, n1, 5), nn.Tanh(), _conv(n1, n2, 3), nn.Tanh(),
                                  _conv(n2, channels * scale * scale, 3))
        self.shuffle = nn.PixelShuffle(scale)

    def config(self) -> dict:
        return {"scale": self.scale, "channels": self.channels, "n1": self.n1, "n2": self.n2}

    def forward(self, x):
        return self.shuffle(self.body(x))


# -------------------------------------------------------------------------------------- XLSR
class GBlock(nn.Module):
    """XLSR's GBlock: 3x3 grouped convolution (4 groups) - ReLU - 1x1 convolution."""

    def __init__(self, n: int, groups: int = 4):
        super().__init__()
        self.conv = _conv(n, n, 3, groups=groups)
        self.act = nn.ReLU()
        self.mix = nn.Conv2d(n, n, 1)

    def forward(self, x):
        return self.mix(self.act(self.conv(x)))


@register_family
class XLSR(nn.Module):
    """XLSR (Ayazoglu, CVPRW 2021), as in Qualcomm's AIMET model zoo release: a 3x3 conv to 16 channels
    beside a 3x3 conv (32) - ReLU - 1x1 conv - ``n_gblocks`` GBlocks; both concatenated (48), 1x1 conv
    (32) - ReLU - 3x3 conv (3 x scale^2) - depth-to-space - clipped ReLU (min(max(x, 0), 1)), the
    output clip that makes the network robust to uint8 quantization.

    Published: 28.0 K parameters at x4 (Qualcomm AI Hub, XLSR x4); this form has 28,016. The paper's
    original used 4 GBlocks at x3; ``n_gblocks`` sets it.

    The concatenation and the 1x1 convolution after it are computed as two 1x1 convolutions, one per
    half, summed (``tail_body`` with the bias, ``tail_residual`` without): the same function and the
    same parameters. The int8 graph then holds an ADD instead of a CONCATENATION, which XNNPACK's int8
    kernels refuse to prepare when its two inputs have different scales (measured: LiteRT 2.3 fails
    with "failed to delegate CONCATENATION node").
    """

    family = "xlsr"

    def __init__(self, scale: int = 4, n_gblocks: int = 3, channels: int = 3):
        super().__init__()
        self.scale, self.n_gblocks, self.channels = scale, n_gblocks, channels
        self.residual = _conv(channels, 16, 3)
        self.body = nn.Sequential(_conv(channels, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 1),
                                  *[GBlock(32) for _ in range(n_gblocks)])
        self.tail_body = nn.Conv2d(32, 32, 1)
        self.tail_residual = nn.Conv2d(16, 32, 1, bias=False)
        self.tail = nn.Sequential(nn.ReLU(), _conv(32, channels * scale * scale, 3))
        self.shuffle = nn.PixelShuffle(scale)
        self.clip = nn.Hardtanh(0.0, 1.0)

    def config(self) -> dict:
        return {"scale": self.scale, "n_gblocks": self.n_gblocks, "channels": self.channels}

    def forward(self, x):
        # = conv1x1(cat([body, residual])), see the class docstring
        h = self.tail_body(self.body(x)) + self.tail_residual(self.residual(x))
        return self.clip(self.shuffle(self.tail(h)))


# -------------------------------------------------------------------------------- QuickSRNet
@register_family
class QuickSRNet(nn.Module):
    """QuickSRNet (Berger et al., CVPRW 2023): a plain stack of 3x3 convolutions with clipped-ReLU
    activations, a last 3x3 conv to 3 x scale^2, the input-repeat anchor added before depth-to-space,
    and the output clipped to [0, 1].

    Small (32 channels, 2 intermediate layers) and medium (32, 5) fold the anchor into the last
    convolution's initialisation (the authors' code: conv_last starts as conv + repeat); large (64, 11)
    keeps it as a separate trainable 1x1 convolution (``anchor=True``). Every hidden convolution starts
    as identity + noise (the authors' initialisation). Published x4 parameter counts (Qualcomm AI Hub):
    33.3 K / 61.0 K / 436 K; these forms have 33,264 / 61,008 / 435,888.
    """

    family = "quicksrnet"

    def __init__(self, scale: int = 4, channels_hidden: int = 32, n_layers: int = 2, anchor: bool = False,
                 channels: int = 3):
        super().__init__()
        self.scale, self.channels_hidden, self.n_layers = scale, channels_hidden, n_layers
        self.anchor_conv, self.channels = anchor, channels
        n = channels_hidden
        layers = [_conv(channels, n, 3), nn.Hardtanh(0.0, 1.0)]
        for _ in range(n_layers):
            layers += [_conv(n, n, 3), nn.Hardtanh(0.0, 1.0)]
        self.body = nn.Sequential(*layers)
        self.conv_last = _conv(n, channels * scale * scale, 3)
        self.anchor = Anchor(channels, scale, trainable=True) if anchor else None
        self.shuffle = nn.PixelShuffle(scale)
        self.clip = nn.Hardtanh(0.0, 1.0)
        with torch.no_grad():
            for conv in self.body:
                if isinstance(conv, nn.Conv2d):
                    mid = conv.kernel_size[0] // 2
                    for i in range(min(conv.in_channels, conv.out_channels)):
                        conv.weight[i, i, mid, mid] += 1.0
            if not anchor:
                # conv_last starts as conv + repeat of the first body output's channels (the authors' code)
                mid = self.conv_last.kernel_size[0] // 2
                self.conv_last.weight[:, :channels, mid, mid] += repeat_weight(channels, scale)[:, :, 0, 0]

    def config(self) -> dict:
        return {"scale": self.scale, "channels_hidden": self.channels_hidden, "n_layers": self.n_layers,
                "anchor": self.anchor_conv, "channels": self.channels}

    def forward(self, x):
        y = self.conv_last(self.body(x))
        if self.anchor is not None:
            y = y + self.anchor(x)
        return self.shuffle(self.clip(y))


# -------------------------------------------------------------------------------------- ABPN
@register_family
class ABPN(nn.Module):
    """ABPN (Du et al., CVPRW 2021, MAI 2021): six 3x3 convolutions of 28 channels with ReLU, a 3x3 conv to
    3 x scale^2, the fixed input-repeat anchor added, depth-to-space, output clipped to [0, 1].

    Published: 42.54 K parameters at x3 (the paper's Table); ``ABPN(scale=3)`` has 43,035 (1.2% more; the
    paper's count and the authors' released code differ by the last layer's biases and rounding, and
    this is the released layer list). The registered ``abpn_x4`` has 48,348.
    """

    family = "abpn"

    def __init__(self, scale: int = 4, n_feats: int = 28, n_layers: int = 6, channels: int = 3):
        super().__init__()
        self.scale, self.n_feats, self.n_layers, self.channels = scale, n_feats, n_layers, channels
        layers = [_conv(channels, n_feats, 3), nn.ReLU()]
        for _ in range(n_layers - 1):
            layers += [_conv(n_feats, n_feats, 3), nn.ReLU()]
        layers.append(_conv(n_feats, channels * scale * scale, 3))
        self.body = nn.Sequential(*layers)
        self.anchor = Anchor(channels, scale)
        self.shuffle = nn.PixelShuffle(scale)
        self.clip = nn.Hardtanh(0.0, 1.0)

    def config(self) -> dict:
        return {"scale": self.scale, "n_feats": self.n_feats, "n_layers": self.n_layers, "channels": self.channels}

    def forward(self, x):
        return self.clip(self.shuffle(self.body(x) + self.anchor(x)))


# -------------------------------------------------------------------------------------- SESR
@register_family
class SESR(nn.Module):
    """SESR-M``m`` (Bhardwaj et al., MLSys 2022): a 5x5 collapsible block (16 channels) with PReLU, ``m``
    residual 3x3 collapsible blocks with PReLU, a long residual from the first block's output, a 5x5
    collapsible block to 3 x scale^2, the fixed input-repeat anchor added, depth-to-space.

    Trained expanded (each linear block a k x k conv to 256 channels and a 1x1 back, as the paper);
    :meth:`collapse` (what export and Mult-Adds counting use) gives the equivalent network of single
    convolutions, exact to float rounding. Published: SESR-M5 has 13.52 K weights at x2 on the Y channel
    (collapsed, biases not counted); ``SESR(scale=2, channels=1).collapse()`` reproduces it. The
    registered ``sesr_m5_x4`` (RGB, x4) has 32,064 parameters collapsed.
    """

    family = "sesr"

    def __init__(self, scale: int = 4, m: int = 5, n_feats: int = 16, expand: int = 256, channels: int = 3):
        super().__init__()
        self.scale, self.m, self.n_feats, self.expand, self.channels = scale, m, n_feats, expand, channels
        self.first = CollapsibleConv(channels, n_feats, 5, expand)
        self.first_act = nn.PReLU(n_feats)
        self.blocks = nn.ModuleList(CollapsibleConv(n_feats, n_feats, 3, expand, residual=True) for _ in range(m))
        self.acts = nn.ModuleList(nn.PReLU(n_feats) for _ in range(m))
        self.last = CollapsibleConv(n_feats, channels * scale * scale, 5, expand)
        self.anchor = Anchor(channels, scale)
        self.shuffle = nn.PixelShuffle(scale)

    def config(self) -> dict:
        return {"scale": self.scale, "m": self.m, "n_feats": self.n_feats, "expand": self.expand,
                "channels": self.channels}

    def _run(self, x, expanded: bool):
        def call(block, h):
            return block.expanded_forward(h) if expanded else block(h)

        h0 = self.first_act(call(self.first, x))
        h = h0
        for block, act in zip(self.blocks, self.acts):
            h = act(call(block, h))
        return self.shuffle(call(self.last, h + h0) + self.anchor(x))

    def forward(self, x):
        return self._run(x, expanded=False)

    def expanded_forward(self, x):
        """The network with every linear block run as its two convolutions (training-time form)."""
        return self._run(x, expanded=True)

    @torch.no_grad()
    def collapse(self) -> "SESR":
        """The deployed network: every collapsible block one plain convolution (``expand=0``)."""
        if not self.expand:
            return self
        out = SESR(self.scale, self.m, self.n_feats, 0, self.channels)
        out.load_state_dict(collapsed_state_dict(self), strict=True)
        return out.train(self.training)


# -------------------------------------------------------------------------------------- EDSR
class ResBlock(nn.Module):
    def __init__(self, n: int, res_scale: float = 1.0):
        super().__init__()
        self.conv1, self.act, self.conv2 = _conv(n, n, 3), nn.ReLU(), _conv(n, n, 3)
        self.res_scale = res_scale

    def forward(self, x):
        y = self.conv2(self.act(self.conv1(x)))
        return x + (y * self.res_scale if self.res_scale != 1.0 else y)


@register_family
class EDSR(nn.Module):
    """EDSR (Lim et al., CVPRW 2017) without batch norm: head 3x3 conv, ``n_blocks`` residual blocks
    (conv-ReLU-conv + skip), a 3x3 conv, the global skip, EDSR's upsampler (x2 steps of 3x3 conv to
    4n + pixel shuffle; one x3 step at x3), a 3x3 conv to RGB.

    MLPerf Mobile's super-resolution model is EDSR-F32B5 (32 features, 5 blocks) at x2; the registered
    ``edsr_f32b5_x4`` is its standard x4 form (EDSR's two x2 steps), 177.5 K parameters. Published check:
    the EDSR baseline (64 features, 16 blocks) has 1.5 M parameters at x4 (the paper's Table 1); this
    class gives 1.518 M.
    """

    family = "edsr"

    def __init__(self, scale: int = 4, n_feats: int = 32, n_blocks: int = 5, res_scale: float = 1.0,
                 channels: int = 3):
        super().__init__()
        self.scale, self.n_feats, self.n_blocks, self.res_scale, self.channels = scale, n_feats, n_blocks, res_scale, channels
        n = n_feats
        self.head = _conv(channels, n, 3)
        self.body = nn.Sequential(*[ResBlock(n, res_scale) for _ in range(n_blocks)], _conv(n, n, 3))
        if scale & (scale - 1) == 0:
            steps = [2] * int(math.log2(scale))
        elif scale == 3:
            steps = [3]
        else:
            raise ValueError(f"EDSR upsamples by 2^n or 3, not {scale}")
        up = []
        for r in steps:
            up += [_conv(n, n * r * r, 3), nn.PixelShuffle(r)]
        self.up = nn.Sequential(*up)
        self.tail = _conv(n, channels, 3)

    def config(self) -> dict:
        return {"scale": self.scale, "n_feats": self.n_feats, "n_blocks": self.n_blocks, "res_scale": self.res_scale,
                "channels": self.channels}

    def forward(self, x):
        h = self.head(x)
        return self.tail(self.up(h + self.body(h)))


# ---------------------------------------------------------------------------------- registry
@register_model("fsrcnn_x4", family="fsrcnn", scale=4, weights="fsrcnn_x4.pt",
                description="FSRCNN(56,12,4) (ECCV 2016), RGB, x4")
def fsrcnn_x4():
    return FSRCNN(4)


@register_model("espcn_x4", family="espcn", scale=4, weights="espcn_x4.pt",
                description="ESPCN (CVPR 2016), RGB, x4")
def espcn_x4():
    return ESPCN(4)


@register_model("xlsr_x4", family="xlsr", scale=4, weights="xlsr_x4.pt",
                description="XLSR (CVPRW 2021, MAI 2021 winner), 3 GBlocks, clipped output, x4")
def xlsr_x4():
    return XLSR(4)


@register_model("quicksrnet_s_x4", family="quicksrnet", scale=4, weights="quicksrnet_s_x4.pt",
                description="QuickSRNet-small (CVPRW 2023): 32 ch, 2+1 layers, x4")
def quicksrnet_s_x4():
    return QuickSRNet(4, 32, 2)


@register_model("quicksrnet_m_x4", family="quicksrnet", scale=4, weights="quicksrnet_m_x4.pt",
                description="QuickSRNet-medium (CVPRW 2023): 32 ch, 5+1 layers, x4")
def quicksrnet_m_x4():
    return QuickSRNet(4, 32, 5)


@register_model("quicksrnet_s_x4_qat", family="quicksrnet", scale=4, weights="quicksrnet_s_x4_qat.pt",
                description="QuickSRNet-small x4, quantization-aware trained (tinysr/configs/qat_x4.yaml): for int8 "
                "export, which takes its learnt ranges")
def quicksrnet_s_x4_qat():
    return QuickSRNet(4, 32, 2)


@register_model("quicksrnet_m_x4_qat", family="quicksrnet", scale=4, weights="quicksrnet_m_x4_qat.pt",
                description="QuickSRNet-medium x4, quantization-aware trained (tinysr/configs/qat_x4.yaml): for int8 "
                "export, which takes its learnt ranges")
def quicksrnet_m_x4_qat():
    return QuickSRNet(4, 32, 5)


@register_model("quicksrnet_l_x4", family="quicksrnet", scale=4, weights="quicksrnet_l_x4.pt",
                description="QuickSRNet-large (CVPRW 2023): 64 ch, 11+1 layers, anchor, x4")
def quicksrnet_l_x4():
    return QuickSRNet(4, 64, 11, anchor=True)


@register_model("abpn_x4", family="abpn", scale=4, weights="abpn_x4.pt",
                description="ABPN (CVPRW 2021, MAI 2021): 28 ch, anchor residual, x4")
def abpn_x4():
    return ABPN(4)


@register_model("sesr_m5_x4", family="sesr", scale=4, weights="sesr_m5_x4.pt",
                description="SESR-M5 (MLSys 2022): collapsible linear blocks, anchor, x4")
def sesr_m5_x4():
    return SESR(4, 5)


@register_model("edsr_f32b5_x4", family="edsr", scale=4, weights="edsr_f32b5_x4.pt",
                description="EDSR-F32B5 (MLPerf Mobile SR model), x4")
def edsr_f32b5_x4():
    return EDSR(4, 32, 5)


def deploy(model: nn.Module) -> nn.Module:
    """The form of ``model`` that runs on a device: collapsed where the network has a training-time form."""
    collapse = getattr(model, "collapse", None)
    return collapse() if callable(collapse) else model
