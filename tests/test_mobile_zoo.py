"""The hand-designed mobile SR networks: faithful to their papers (published parameter counts), SESR's
collapse exact, every one exported by ``tinysr export`` to native-op TFLite (fp32, int8) and ONNX and
verified in its runtime; the mobile exporter's transposed-convolution rewrite exact."""
import numpy as np
import pytest
import torch
from torch import nn

from test_export import _ckpt, _torch, fresh_crops, run_raw
from tinysr.complexity import count_params, measure
from tinysr.export.flatbuffer import op_histogram
from tinysr.export.pipeline import ExportOptions, export_model
from tinysr.export.tflite_convert import _nhwc_module
from tinysr.models import create_model, get_entry, list_models
from tinysr.models.mobile import ABPN, EDSR, ESPCN, FSRCNN, SESR, XLSR, QuickSRNet, deploy

# The plain stacks with identity-initialised hidden layers (QuickSRNet) accumulate more float rounding
# through LiteRT's kernels than the TPSR families: measured up to 4.4e-4 grey levels here; a wrong
# lowering shows as whole grey levels.
ZOO_BOUND = 1e-3
ZOO = ["fsrcnn_x4", "espcn_x4", "xlsr_x4", "quicksrnet_s_x4", "quicksrnet_m_x4", "quicksrnet_l_x4", "abpn_x4",
       "sesr_m5_x4", "edsr_f32b5_x4"]


def conv_weights(model) -> int:
    """Convolution weights alone (no biases, PReLU slopes): what FSRCNN's and SESR's papers count."""
    return sum(p.numel() for p in model.parameters() if p.dim() == 4)


@pytest.mark.parametrize("what, count, published, tol", [
    # Qualcomm AI Hub, x4 (RGB)
    ("xlsr_x4", lambda: count_params(create_model("xlsr_x4")), 28.0e3, 0.02),
    ("quicksrnet_s_x4", lambda: count_params(create_model("quicksrnet_s_x4")), 33.3e3, 0.02),
    ("quicksrnet_m_x4", lambda: count_params(create_model("quicksrnet_m_x4")), 61.0e3, 0.02),
    ("quicksrnet_l_x4", lambda: count_params(create_model("quicksrnet_l_x4")), 436e3, 0.02),
    # FSRCNN(56,12,4), Y channel, weights only: 12,464 (ECCV 2016, Sec. 3.3)
    ("fsrcnn Y", lambda: conv_weights(FSRCNN(channels=1)), 12464, 0.0),
    # SESR-M5 x2, Y channel, collapsed weights: 13.52 K (MLSys 2022, Table)
    ("sesr_m5 Y x2", lambda: conv_weights(SESR(2, channels=1).collapse()), 13.52e3, 0.001),
    # ABPN x3: 42.54 K (CVPRW 2021); the released layer list has 1.2% more
    ("abpn x3", lambda: count_params(ABPN(3)), 42.54e3, 0.02),
    # EDSR baseline (F64B16) x4: 1.5 M (CVPRW 2017, Table 1)
    ("edsr baseline x4", lambda: count_params(EDSR(4, 64, 16)), 1.5e6, 0.02),
])
def test_parameter_counts_match_the_published_ones(what, count, published, tol):
    n = count()
    print(f"{what}: {n} parameters, published {published:g}")
    assert abs(n - published) <= tol * published + 0.5


def test_the_counts_the_docstrings_state():
    """The exact x4 counts quoted in tinysr/models/mobile.py (so the documentation cannot drift)."""
    want = {"fsrcnn_x4": 24683, "espcn_x4": 37200, "xlsr_x4": 28016, "quicksrnet_s_x4": 33264,
            "quicksrnet_m_x4": 61008, "quicksrnet_l_x4": 435888, "abpn_x4": 48348, "edsr_f32b5_x4": 177475}
    assert {n: count_params(create_model(n)) for n in want} == want
    assert count_params(deploy(create_model("sesr_m5_x4"))) == 32160
    assert count_params(ESPCN(3, channels=1)) == 22729


def test_zoo_is_registered_with_its_families():
    assert set(ZOO) <= set(list_models())
    assert {get_entry(n).family for n in ZOO} == {"fsrcnn", "espcn", "xlsr", "quicksrnet", "abpn", "sesr", "edsr"}
    assert all(get_entry(n).scale == 4 for n in ZOO)


def test_sesr_collapse_is_exact():
    torch.manual_seed(0)
    model = SESR(4, 5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        expanded = model.expanded_forward(x)
        collapsed = model.collapse()
        assert all(b.expand == 0 for b in [collapsed.first, *collapsed.blocks, collapsed.last])
        assert (collapsed(x) - expanded).abs().max().item() <= 1e-5
        assert (model(x) - expanded).abs().max().item() <= 1e-5


def test_sesr_trains_through_its_expanded_parameters():
    model = SESR(4, 2).train()
    model(torch.rand(1, 3, 8, 8)).mean().backward()
    assert model.blocks[0].expand_weight.grad is not None and model.blocks[0].squeeze_weight.grad is not None


@pytest.mark.parametrize("k, stride, padding, output_padding", [(9, 4, 4, 3), (4, 2, 1, 0), (3, 2, 1, 1), (5, 3, 2, 2)])
def test_transposed_convolution_becomes_an_exact_sub_pixel_convolution(k, stride, padding, output_padding):
    torch.manual_seed(1)

    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(5, 3, k, stride, padding, output_padding)

        def forward(self, x):
            return self.up(x)

    model = Up().eval()
    x = torch.rand(1, 5, 7, 9)
    assert model(x).shape[-2:] == (7 * stride, 9 * stride)
    gm = _nhwc_module(model, x)
    got = gm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert (got - model(x)).abs().max().item() < 1e-5
    ops = {n.target.__name__.split(".")[0] for n in gm.graph.nodes if n.op == "call_function"}
    assert {"conv_2d", "depth_to_space"} <= ops and not any("transpose" in o for o in ops)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_exports_to_native_tflite_and_onnx_verified(tmp_path, name):
    """fp32 TFLite and ONNX within the fp32 bound of PyTorch in their own runtimes, int8 TFLite verified by
    the exporter; native ops only (no GATHER or TRANSPOSE in the TFLite graphs)."""
    model = deploy(create_model(name))
    ckpt = _ckpt(tmp_path, model, name)
    xs = fresh_crops(16, 24, n=2)
    for target, precision in (("tflite", "fp32"), ("onnx", "fp32"), ("tflite", "int8")):
        out = tmp_path / f"{name}_{precision}.{target}"
        opts = ExportOptions(target=target, precision=precision, input_size=(16, 24), calib_count=4, max_loss_db=99.0)
        if precision == "int8":  # its quality check tiles held-out images with the tiny artifact
            with pytest.warns(UserWarning, match="leaves no room for an overlap"):
                card = export_model(str(ckpt), out, opts, progress=False)
        else:
            card = export_model(str(ckpt), out, opts, progress=False)
        assert card["params"] == count_params(model)
        if target == "tflite":
            ops = op_histogram(out)
            assert not {"GATHER", "TRANSPOSE", "TRANSPOSE_CONV", "GATHER_ND"} & set(ops), ops
            assert ops.get("CONV_2D", 0) >= 3
        if precision == "fp32":
            nhwc = target == "tflite"
            err = max(float(np.abs((run_raw(out, np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x)
                                    .transpose(*((0, 3, 1, 2) if nhwc else (0, 1, 2, 3))) - _torch(model, x))).max())
                      for x in xs) * 255
            assert err <= ZOO_BOUND, f"{name} {target}: {err}"
        else:
            assert card["quality"] is not None


def test_exported_sesr_holds_the_collapsed_convolutions(tmp_path):
    """An expanded (training-time) SESR checkpoint exports as single convolutions: 8 CONV_2D (first, five
    blocks, last, anchor), no 256-channel tensor."""
    model = SESR(4, 5)
    ckpt = _ckpt(tmp_path, model, "sesr")
    out = tmp_path / "sesr.tflite"
    card = export_model(str(ckpt), out, ExportOptions(input_size=(16, 24)), progress=False)
    assert op_histogram(out)["CONV_2D"] == 8
    assert card["params"] == count_params(model.collapse())
    from ai_edge_litert.interpreter import Interpreter

    widths = {int(d["shape"][-1]) for d in Interpreter(model_path=str(out)).get_tensor_details() if len(d["shape"]) == 4}
    assert 256 not in widths


@pytest.mark.parametrize("cls, kw", [(XLSR, {}), (QuickSRNet, {}), (ABPN, {})])
def test_clipped_networks_stay_in_range(cls, kw):
    with torch.no_grad():
        y = cls(4, **kw).eval()(torch.rand(1, 3, 12, 12) * 3 - 1)
    assert y.min() >= 0 and y.max() <= 1
