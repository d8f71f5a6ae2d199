import random
import time

import pytest
import torch

from tinysr.complexity import measure
from tinysr.genotype import TPSR_GENOTYPE, Genotype
from tinysr.models import create_model, get_entry, list_models
from tinysr.models.tpsr import CellSR, mult_adds, skeleton_parts
from tinysr.ops import OP_NAMES

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


# ------------------------------------------------------- closed-form Mult-Adds of CellSR networks
SIZES = [(12, 20), (9, 7)]


def _networks_agree(genotype, scale, size, n_feats=16):
    counted = measure(CellSR(genotype, scale, n_feats), size).mult_adds
    closed = mult_adds(genotype, scale, n_feats, size)
    assert closed == pytest.approx(counted, rel=1e-3), (str(genotype), scale, size)


@pytest.mark.parametrize("op", OP_NAMES)
def test_closed_form_mult_adds_of_every_op_alone_and_inside_a_cell(op):
    alone = Genotype.parse(f"{op}@in")
    inside = Genotype.parse(f"conv3@in {op}@0 dsep5@1 {op}@in identity@0")  # three leaves: two leaf sums
    for scale in (2, 4):
        for size in SIZES:
            _networks_agree(alone, scale, size)
            _networks_agree(inside, scale, size)


def test_closed_form_mult_adds_of_random_genotypes():
    rng = random.Random(7)
    genos = [TPSR_GENOTYPE] + [Genotype.random(10, rng) for _ in range(24)]
    assert len({len(g.leaves) for g in genos}) >= 3  # various leaf sums
    for i, g in enumerate(genos):
        _networks_agree(g, (2, 4)[i % 2], SIZES[(i // 2) % 2])
        _networks_agree(str(g), (4, 2)[i % 2], SIZES[1 - (i // 2) % 2])
    _networks_agree(genos[1], 4, (10, 6), n_feats=8)  # another width
    assert mult_adds(TPSR_GENOTYPE, 4, 16, (180, 320)) == pytest.approx(3.5796e9, rel=1e-4)


def test_closed_form_mult_adds_is_fast():
    rng = random.Random(0)
    genos = [Genotype.random(10, rng) for _ in range(500)]
    mult_adds(genos[0])
    t = time.perf_counter()
    for g in genos * 4:
        mult_adds(g, 4, 16, (180, 320))
    rate = 2000 / (time.perf_counter() - t)
    assert rate >= 5_000, f"{rate:.0f} genotypes/s"


# ------------------------------------------------------------------ the skeleton, described once
def test_skeleton_parts_are_the_modules_cellsr_builds():
    for scale in (2, 4, 8):
        net = CellSR(TPSR_GENOTYPE, scale, 16)
        parts = skeleton_parts(scale, 16, (12, 20))
        ups = [f"up{i + 1}" for i in range(len(net.up))]
        assert [p.name for p in parts] == ["head", "leaf_add", "cell_act", *ups, "add_mean"]
        by = {p.name: p for p in parts}
        pairs = [(by["head"].make(), torch.nn.Sequential(net.sub_mean, net.head)),
                 (by["cell_act"].make(), net.cell_act), (by["add_mean"].make(), net.add_mean)]
        pairs += [(by[name].make(), u) for name, u in zip(ups, net.up)]
        for built, used in pairs:  # same module types, same parameter shapes, same buffers
            assert [type(m) for m in built.modules()] == [type(m) for m in used.modules()]
            shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in (built, used)]
            assert shapes[0] == shapes[1]
            assert [(b.inverse, b.rgb_range) for b in built.modules() if hasattr(b, "inverse")] == \
                   [(b.inverse, b.rgb_range) for b in used.modules() if hasattr(b, "inverse")]
        # each part's input shape is where it sits in the network
        h, w = 12, 20
        x = torch.rand(1, 3, h, w)
        feats = net.head(net.sub_mean(x))
        assert (by["cell_act"].channels, by["cell_act"].size) == (feats.shape[1], tuple(feats.shape[2:]))
        y = net.cell_act(net.cell(feats))
        for i, up in enumerate(net.up):
            assert (by[f"up{i + 1}"].channels, by[f"up{i + 1}"].size) == (y.shape[1], tuple(y.shape[2:]))
            y = up(y)
        assert (by["add_mean"].channels, by["add_mean"].size) == (3, (h * scale, w * scale))
        assert by["add_mean"].key == f"skeleton.addmean_c3_{h * scale}x{w * scale}"


@pytest.mark.parametrize("scale", [2, 4])
def test_each_skeleton_part_mult_adds_matches_the_counter(scale):
    for p in skeleton_parts(scale, 16, (9, 7)):
        module = p.make()

        class Fed(torch.nn.Module):  # measure() feeds 3 channels: give the part its own input
            def __init__(self):
                super().__init__()
                self.m = module

            def forward(self, _):
                return self.m(torch.zeros(1, p.channels, *p.size))

        c = measure(Fed(), (1, 1))
        # a part that is one operator of its graph (the leaf-sum ADD) counts that operator alone
        counted = c.by_op["add"] if p.op == "ADD" else c.mult_adds
        assert counted == pytest.approx(p.mult_adds, rel=1e-9), p.name
    leaf = Genotype.parse("conv1@in conv1@in conv1@in")
    assert [p.count(leaf) for p in skeleton_parts(scale, 16, (9, 7)) if p.name in ("head", "leaf_add")] == [1, 2]
