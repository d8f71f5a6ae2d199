"""Mult-Adds counting (tinysr.complexity): the shapes-only (meta) count equals the real-tensor one,
transposed and grouped convolutions are counted by their formulas, and ``tinysr models`` counts on
meta tensors (no arithmetic) with the figures it always printed."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tinysr.cli.main import main
from tinysr.complexity import measure
from tinysr.models import create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_meta_count_equals_the_real_tensor_count_for_every_generator(name):
    model = create_model(name)
    real = measure(model, (12, 16), device="cpu")
    meta = measure(model, (12, 16), device="meta")
    assert (meta.params, meta.mult_adds, meta.macs, meta.other_ops) == (real.params, real.mult_adds, real.macs,
                                                                       real.other_ops)
    assert meta.by_op == real.by_op
    with torch.device("meta"):  # as tinysr models builds it: no weights at all
        assert measure(create_model(name), (12, 16)).mult_adds == real.mult_adds
    assert all(p.device.type == "cpu" for p in model.parameters())  # the model itself is left as it was


class _Ops(nn.Module):
    """The operations new families use: transposed, grouped and depthwise convs, clamp, repeat, cat."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 8, 4, stride=2, padding=1)
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=4, bias=False)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.up_grouped = nn.ConvTranspose2d(12, 6, 3, stride=3, groups=3, bias=False)

    def forward(self, x):
        y = self.dw(self.grouped(self.up(x)))
        y = torch.cat([y, x.repeat(1, 4, 2, 2)], 1)[:, :12]
        return self.up_grouped(y).clamp(0, 1)


def test_transposed_grouped_convolutions_are_counted_by_their_formulas():
    h, w = 5, 7
    c = measure(_Ops(), (h, w), device="cpu")
    up = h * w * 3 * 8 * 4 * 4  # transposed: H_in * W_in * C_in * (C_out / groups) * kh * kw
    grouped = (2 * h) * (2 * w) * 12 * (8 // 4) * 3 * 3  # H_out * W_out * C_out * (C_in / groups) * kh * kw
    dw = (2 * h) * (2 * w) * 12 * 1 * 3 * 3
    up_grouped = (2 * h) * (2 * w) * 12 * (6 // 3) * 3 * 3
    assert c.macs == up + grouped + dw + up_grouped
    biases = 8 * (2 * h) * (2 * w) + 12 * (2 * h) * (2 * w)  # up's and dw's bias adds, half a Mult-Add each
    clamp = 6 * (6 * h) * (6 * w)
    assert c.other_ops == biases + clamp
    assert c.mult_adds == c.macs + (biases + clamp) / 2
    assert measure(_Ops(), (h, w), device="meta").by_op == c.by_op


def test_a_pass_that_needs_values_is_counted_on_real_tensors():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y * 2 if float(y.abs().sum()) >= 0 else y  # .item(): impossible on meta tensors

    with pytest.raises((NotImplementedError, RuntimeError)):
        measure(DataDependent(), (4, 4), device="meta")
    assert measure(DataDependent(), (4, 4)).mult_adds == measure(DataDependent(), (4, 4), device="cpu").mult_adds


# ``tinysr models`` as printed by the real-tensor count at 180x320 before the count moved to meta tensors.
MODELS_BEFORE = {"esrgan_x4": ("16698.0", "1033.70"), "mesrgan_x4": ("5943.6", "414.16"),
                 "srresnet_x4": ("1549.5", "128.09"), "tpsr_x2": ("60.8", "3.50"), "tpsr_x4": ("61.1", "3.58"),
                 "tpsr_x4_gan": ("61.1", "3.58"), "trilevel_x4": ("20.4", "1.18")}


class _Devices(TorchDispatchMode):
    """Records the device of every tensor an ATen operation returns."""

    def __init__(self):
        super().__init__()
        self.devices: set = set()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(t, torch.Tensor):
                self.devices.add(t.device.type)
        self.calls += 1
        return out


def test_tinysr_models_counts_on_meta_tensors_with_the_figures_it_printed_before(capsys):
    recorder = _Devices()
    with recorder:
        assert main(["models"]) == 0
    assert recorder.calls > 1000 and recorder.devices == {"meta"}  # every operation ran on shapes alone
    rows = {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"^(\S+)\s+x\d+\s+([\d.]+) K\s+([\d.]+) G", capsys.readouterr().out, re.M)}
    assert {n: rows.get(n) for n in MODELS_BEFORE} == MODELS_BEFORE
    assert set(rows) == set(list_models())
    # a network trained expanded is listed as deployed (collapsed): SESR-M5's 32.2 K, not its 343 K training form
    assert rows["sesr_m5_x4"] == ("32.2", "1.86")
