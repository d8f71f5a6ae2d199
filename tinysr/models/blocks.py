"""Building blocks shared by the generator families."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import conv_macs, elementwise

# DIV2K RGB mean, used by EDSR-style networks (and the published TPSR).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Fixed input normalisation ``(x - mean) * rgb_range`` (``inverse``: ``x / rgb_range + mean``).

    Networks take RGB in [0, 1]; the published TPSR weights work in 0..255, hence ``rgb_range``.
    """

    def __init__(self, mean=DIV2K_MEAN, rgb_range: float = 255.0, inverse: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.rgb_range = float(rgb_range)
        self.inverse = inverse

    @staticmethod
    def mult_adds(h: int, w: int, channels: int = 3) -> float:
        """Mult-Adds on an h x w map: one subtraction and one scaling (or scaling and addition) per element."""
        return elementwise(channels * h * w, 2)

    def forward(self, x):
        if self.inverse:
            return x * (1.0 / self.rgb_range) + self.mean
        return (x - self.mean) * self.rgb_range


class SubPixelUp(nn.Module):
    """3x3 conv to ``cout * 4`` channels, then PixelShuffle(2) (optionally an activation)."""

    def __init__(self, cin: int, cout: int, act: nn.Module | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x):
        return self.act(self.shuffle(self.conv(x)))

    @staticmethod
    def mult_adds(cin: int, cout: int, h: int, w: int) -> float:
        """Mult-Adds on an h x w input without the optional activation (the pixel shuffle moves data only)."""
        return conv_macs(cin, cout * 4, 3, h, w)


def num_x2_steps(scale: int) -> int:
    steps = int(round(math.log2(scale)))
    if scale < 2 or 2 ** steps != scale:
        raise ValueError(f"scale must be a power of two >= 2, got {scale}")
    return steps


def icnr_(conv: nn.Conv2d, scale: int, init=None) -> nn.Conv2d:
    """ICNR initialisation (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution") of
    a convolution that feeds ``PixelShuffle(scale)``, in place.

    A kernel for ``out_channels / scale^2`` outputs is drawn (``init``, default: PyTorch's own
    ``Conv2d`` initialisation, Kaiming-uniform with a = sqrt(5)) and each of its output channels is
    repeated ``scale^2`` times in PixelShuffle order (channel ``c * scale^2 + k`` -> output channel
    ``c``, sub-pixel ``k``); the bias likewise. At initialisation every sub-pixel of an output
    block then gets the same value: conv + pixel shuffle equals conv + nearest-neighbour
    up-sampling, with no checkerboard. Training is free to move the copies apart."""
    r2 = int(scale) ** 2
    if conv.groups != 1:
        raise ValueError(f"ICNR needs an ungrouped convolution, got groups={conv.groups}")
    if conv.out_channels % r2:
        raise ValueError(f"ICNR at scale {scale}: the convolution's {conv.out_channels} output channels are not "
                         f"a multiple of {r2}")
    n = conv.out_channels // r2
    sub = torch.empty(n, *conv.weight.shape[1:], dtype=conv.weight.dtype, device=conv.weight.device)
    if init is None:
        nn.init.kaiming_uniform_(sub, a=math.sqrt(5))
    else:
        init(sub)
    with torch.no_grad():
        conv.weight.copy_(sub.repeat_interleave(r2, dim=0))
        if conv.bias is not None:
            fan_in = conv.weight[0].numel()
            bias = torch.empty(n, dtype=conv.bias.dtype, device=conv.bias.device)
            nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
            conv.bias.copy_(bias.repeat_interleave(r2))
    return conv


def apply_icnr(model: nn.Module, input_size: int = 16) -> list[str]:
    """ICNR-initialise (:func:`icnr_`) every ``Conv2d`` whose output goes straight into a
    ``nn.PixelShuffle`` in ``model``'s forward pass (found by running it once on an
    ``input_size``-pixel input with as many channels as its first convolution takes); returns their
    names. Convolutions whose output is changed first (a sum with an anchor, an activation) are left
    alone: ICNR is about the sub-pixel convolution itself."""
    convs = {m: name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if not convs:
        return []
    produced: dict[int, nn.Conv2d] = {}
    fed: list[tuple[nn.Conv2d, int]] = []

    def on_conv(module, _inputs, output):
        produced[id(output)] = (module, output)  # the tensor is kept alive so its id stays unique

    def on_shuffle(module, inputs):
        hit = produced.get(id(inputs[0]))
        if hit is not None and hit[1] is inputs[0] and all(hit[0] is not c for c, _ in fed):
            fed.append((hit[0], module.upscale_factor))

    hooks = [m.register_forward_hook(on_conv) for m in convs]
    hooks += [m.register_forward_pre_hook(on_shuffle) for m in model.modules() if isinstance(m, nn.PixelShuffle)]
    first = next(iter(convs))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, first.in_channels, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        produced.clear()
    for conv, scale in fed:
        icnr_(conv, scale)
    return [convs[c] for c, _ in fed]
