import pytest
import torch

from tinysr.complexity import measure
from tinysr.models import create_model, get_entry, list_models

SMALL = {"esrgan_x4": {"num_blocks": 2}, "mesrgan_x4": {"num_blocks": 2}, "srresnet_x4": {"num_blocks": 2}}


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_upscales_by_its_scale(name):
    model = create_model(name, **SMALL.get(name, {})).eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        y = model(x)
    s = get_entry(name).scale
    assert y.shape == (1, 3, 12 * s, 10 * s)
    assert torch.isfinite(y).all()


def test_tpsr_x4_counts_3_6_g_mult_adds_and_61k_params_at_720p():
    c = measure(create_model("tpsr_x4"), (180, 320))
    assert 61_000 <= c.params <= 61_200  # 61,097 trainable (the paper's 61 K)
    assert c.mult_adds / 1e9 == pytest.approx(3.6, abs=0.025)  # 3.580 G; the paper: 3.6 G


def test_mesrgan_uses_inverted_residuals_with_one_dense_block_per_rrdb():
    from tinysr.models.esrgan import MBConv

    m = create_model("mesrgan_x4", num_blocks=3)
    assert len(m.body) == 3 and all(len(b.dense) == 1 for b in m.body)
    convs = [mod for mod in m.body.modules() if isinstance(mod, MBConv)]
    assert len(convs) == 15  # 5 per dense block
    assert convs[0].expand.out_channels == 2 * convs[0].expand.in_channels


def test_esrgan_default_configuration():
    m = create_model("esrgan_x4")
    assert len(m.body) == 23 and m.conv_first.out_channels == 64
    assert m.body[0].dense[0].convs[0].out_channels == 32


def test_srresnet_has_16_bn_residual_blocks():
    m = create_model("srresnet_x4")
    assert len(m.body) == 16
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.body[0].modules())


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ValueError, match="tpsr_x4"):
        create_model("nope")
