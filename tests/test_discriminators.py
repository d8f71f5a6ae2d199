"""Discriminators: the VGG-style network, the searchable template and its genotype, in the one registry."""
import random

import pytest
import torch
from torch import nn

from tinysr.checkpoint import load_model, model_from_checkpoint, read_checkpoint, save_checkpoint
from tinysr.models import (build_family, create_model, get_entry, kind_of, list_families, list_models,
                           register_model)
from tinysr.models.discriminators import (DECISION_SIZES, NUM_BLOCKS, ROP_NAMES, DBlock, DiscriminatorBlock,
                                          DiscriminatorGenotype, SearchedDiscriminator, VGGStyleDiscriminator)
from tinysr.ops import OP_NAMES

MIXED = "dsep5>rgconv5 inv3>rconv1 se>rgconv7 ca>rconv5 identity>rconv3"


def seeded(seed=0):
    torch.manual_seed(seed)
    return random.Random(seed)


# ------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("make", [
    lambda: create_model("vgg_d128"),
    lambda: create_model("tpsr_d"),
    lambda: SearchedDiscriminator(MIXED, n_feats=8, bottleneck=None),
    lambda: SearchedDiscriminator(MIXED, n_feats=4, bottleneck=16, spectral_norm=True),
])
def test_one_logit_per_128px_patch(make):
    seeded()
    d = make()
    y = d(torch.rand(3, 3, 128, 128))
    assert y.shape == (3, 1) and torch.isfinite(y).all()


def test_other_patch_sizes():
    seeded()
    assert VGGStyleDiscriminator(num_feat=8, input_size=256)(torch.rand(2, 3, 256, 256)).shape == (2, 1)
    assert VGGStyleDiscriminator(num_feat=8, input_size=256).num_stages == 6
    d = SearchedDiscriminator(n_feats=4, input_size=96)
    assert d(torch.rand(2, 3, 96, 96)).shape == (2, 1)
    assert d.head[1].in_features == 4 * 32 * 3 * 3


def test_size_errors_are_one_line():
    with pytest.raises(ValueError,
                       match=r"^VGG-style discriminator: input_size 192 must be 128 or 256 \(as in BasicSR\)$"):
        VGGStyleDiscriminator(input_size=192)
    with pytest.raises(ValueError, match="input_size 100 must be a positive multiple of 32"):
        SearchedDiscriminator(input_size=100)
    with pytest.raises(ValueError, match="n_feats 6 must be a positive multiple of 4"):
        SearchedDiscriminator(n_feats=6)
    with pytest.raises(ValueError, match=r"takes \(N, 3, 128, 128\) patches, got \(1, 3, 96, 96\)"):
        create_model("vgg_d128", num_feat=8)(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"takes \(N, 3, 128, 128\) patches, got \(1, 3, 64, 128\)"):
        SearchedDiscriminator(n_feats=4)(torch.rand(1, 3, 64, 128))


# --------------------------------------------------------------------- VGG-style layout
def conv(cin, cout, k, bias):
    return cin * cout * k * k + (cout if bias else 0)


def test_vgg_parameter_count_is_basicsr_layout():
    nf = 64
    bn = lambda c: 2 * c  # noqa: E731  (affine weight + bias)
    expected = conv(3, nf, 3, True) + conv(nf, nf, 4, False) + bn(nf)
    for cin, cout in [(nf, 2 * nf), (2 * nf, 4 * nf), (4 * nf, 8 * nf), (8 * nf, 8 * nf)]:
        expected += conv(cin, cout, 3, False) + bn(cout) + conv(cout, cout, 4, False) + bn(cout)
    expected += (8 * nf * 4 * 4 * 100 + 100) + (100 + 1)
    d = create_model("vgg_d128")
    assert sum(p.numel() for p in d.parameters()) == expected == 14_499_401
    assert d.linear1.in_features == 512 * 4 * 4
    assert d.conv0_1.stride == (2, 2) and d.conv0_1.kernel_size == (4, 4) and d.conv0_0.bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d) and m.num_features == 3 for m in d.modules())
    strided = [m for m in d.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 5 and [m.out_channels for m in strided] == [64, 128, 256, 512, 512]
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    # BasicSR's attribute names, so its net_d state dicts load unchanged
    assert {"conv0_0.weight", "bn0_1.running_mean", "conv4_1.weight", "linear2.bias"} <= set(d.state_dict())


def test_default_searched_d_ends_like_the_vgg_d():
    d = create_model("tpsr_d")
    assert [b.reduce.out_channels for b in d.blocks] == [32, 64, 128, 256, 512]
    assert d.head[1].in_features == create_model("vgg_d128").linear1.in_features == 8192


# ---------------------------------------------------------------------------- genotype
def test_genotype_text_round_trip():
    g = DiscriminatorGenotype.parse(MIXED)
    assert str(g) == MIXED and DiscriminatorGenotype.parse(str(g)) == g
    assert g.blocks[2] == DBlock("se", "rgconv7")
    assert DiscriminatorGenotype.parse(MIXED.replace(" ", ", ")) == g
    assert len(ROP_NAMES) == 7 and len(OP_NAMES) == 16 and DECISION_SIZES == (16, 7) * 5


@pytest.mark.parametrize("text, message", [
    ("conv4>rconv3 conv3>rconv3 conv3>rconv3 conv3>rconv3 conv3>rconv3",
     r"block 0 \(conv4>rconv3\): unknown operation 'conv4'; known: conv1, conv3, .*identity$"),
    ("conv3>rconv3 conv3>rconv3 conv3>rdsep3 conv3>rconv3 conv3>rconv3",
     r"block 2 \(conv3>rdsep3\): unknown reduction 'rdsep3'; known: rconv1, rconv3, rconv5, rconv7, rgconv3, "
     r"rgconv5, rgconv7$"),
    ("conv3>rconv3 conv3 conv3>rconv3 conv3>rconv3 conv3>rconv3",
     r"cannot read block 1 'conv3' of discriminator genotype .*: expected OP>ROP"),
    ("conv3>rconv3 conv3>rconv3", r"has 2 blocks, expected 5 OP>ROP items"),
    ("conv3>rconv3>rconv1 conv3>rconv3 conv3>rconv3 conv3>rconv3 conv3>rconv3",
     r"cannot read block 0 'conv3>rconv3>rconv1'"),
])
def test_parse_errors_name_the_token_and_the_choices(text, message):
    with pytest.raises(ValueError, match=message) as e:
        DiscriminatorGenotype.parse(text)
    assert "\n" not in str(e.value)


def test_encode_decode_every_block_choice():
    base = DiscriminatorGenotype.parse("identity>rconv1 " * NUM_BLOCKS)
    for b in range(NUM_BLOCKS):
        seen = set()
        for i, op in enumerate(OP_NAMES):
            for j, rop in enumerate(ROP_NAMES):
                blocks = list(base.blocks)
                blocks[b] = DBlock(op, rop)
                g = DiscriminatorGenotype(tuple(blocks))
                code = g.encode()
                assert code[2 * b:2 * b + 2] == (i, j)
                assert DiscriminatorGenotype.decode(code) == g
                seen.add(code)
        assert len(seen) == 16 * 7


def test_encode_decode_random_genotypes():
    rng = random.Random(7)
    samples = [DiscriminatorGenotype.random(rng) for _ in range(300)]
    for g in samples:
        code = g.encode()
        assert len(code) == 10 and all(0 <= c < s for c, s in zip(code, DECISION_SIZES))
        assert DiscriminatorGenotype.decode(code) == g and DiscriminatorGenotype.parse(str(g)) == g
    assert len({g.encode() for g in samples}) > 290  # 16^5 * 7^5 genotypes: repeats are rare
    assert len({b.op for g in samples for b in g.blocks}) == 16
    assert len({b.rop for g in samples for b in g.blocks}) == 7


def test_decode_errors():
    with pytest.raises(ValueError, match=r"decision 3 \(block 1 reduction\) = 7: must be in 0..6"):
        DiscriminatorGenotype.decode([0, 0, 0, 7] + [0] * 6)
    with pytest.raises(ValueError, match=r"decision 0 \(block 0 operation\) = -1: must be in 0..15"):
        DiscriminatorGenotype.decode([-1] + [0] * 9)
    with pytest.raises(ValueError, match="has 10 decisions, got 9"):
        DiscriminatorGenotype.decode([0] * 9)


# ------------------------------------------------------------------ every op, every rop
@pytest.mark.parametrize("b", range(NUM_BLOCKS))
def test_every_op_and_reduction_runs_in_a_block_at_its_width(b):
    seeded(b)
    n, side = 16 * 2 ** b, 128 // 2 ** b
    x = torch.rand(2, n, side, side)
    for op in OP_NAMES:
        y = DiscriminatorBlock(op, "rconv3", n)(x)
        assert y.shape == (2, 2 * n, side // 2, side // 2) and torch.isfinite(y).all(), op
    for rop in ROP_NAMES:
        block = DiscriminatorBlock("conv1", rop, n)
        y = block(x)
        assert y.shape == (2, 2 * n, side // 2, side // 2) and torch.isfinite(y).all(), rop
        assert block.reduce.stride == (2, 2) and block.reduce.groups == (4 if rop.startswith("rg") else 1)


# ---------------------------------------------------------------------- spectral norm
@pytest.mark.parametrize("make", [lambda sn: VGGStyleDiscriminator(num_feat=8, spectral_norm=sn),
                                  lambda sn: SearchedDiscriminator(MIXED, n_feats=4, spectral_norm=sn)])
def test_spectral_norm_is_applied_to_every_conv_and_linear(make):
    plain, sn = make(False), make(True)
    layers = [m for m in sn.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    params = dict(sn.named_parameters())
    orig = [n for n in params if n.endswith("weight_orig")]
    assert len(orig) == len(layers) > 10
    assert all(not hasattr(plain.get_submodule(n.rsplit(".", 1)[0]), "weight_orig") for n in orig)
    assert all(hasattr(m, "weight_u") for m in layers)
    assert sn.config()["spectral_norm"] is True and plain.config()["spectral_norm"] is False
    # the normalised weight has spectral norm ~1 after power iterations
    seeded()
    sn.train()
    x = torch.rand(2, 3, 128, 128)
    for _ in range(15):
        sn(x)
    w = layers[-1].weight.detach()
    assert torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item() == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------- registry and checkpoints
def test_registry_kinds():
    assert not set(list_models()) & {"vgg_d128", "vgg_d128_sn", "tpsr_d"}
    assert list_models(kind="discriminator") == ["tpsr_d", "vgg_d128", "vgg_d128_sn"]
    assert set(list_models(kind=None)) == set(list_models()) | set(list_models(kind="discriminator"))
    assert list_families("discriminator") == ["searched_discriminator", "vgg_discriminator"]
    assert set(list_families("discriminator")) < set(list_families())
    entry = get_entry("vgg-d128")
    assert entry.kind == "discriminator" and entry.scale is None and get_entry("tpsr_x4").kind == "generator"
    assert kind_of(create_model("tpsr_d")) == "discriminator" and kind_of(create_model("tpsr_x4")) == "generator"
    with pytest.raises(ValueError, match=r"^'vgg_d128' is a discriminator, not a generator \(abpn_x4, edsr_f32b5_x4, "):
        get_entry("vgg_d128", kind="generator")
    with pytest.raises(ValueError, match="unknown model kind 'critic'; known: generator, discriminator"):
        list_models(kind="critic")
    with pytest.raises(ValueError, match="a discriminator has no scale"):
        register_model("d_x4", family="vgg_discriminator", scale=4, description="")(lambda: None)
    with pytest.raises(ValueError, match="a generator needs a scale"):
        register_model("g_noscale", family="tpsr", description="")(lambda: None)
    assert "d_x4" not in list_models(kind=None) and "g_noscale" not in list_models(kind=None)
    with pytest.raises(ValueError, match="known: abpn, edsr, espcn, esrgan, fsrcnn, quicksrnet, sesr, srgan, tpsr, trilevel, xlsr; searched_discriminator, vgg_discriminator "
                                         r"\(discriminators\)"):
        build_family("unet", {})


@pytest.mark.parametrize("make", [
    lambda: create_model("vgg_d128_sn", num_feat=8),
    lambda: SearchedDiscriminator(DiscriminatorGenotype.random(random.Random(3)), n_feats=4, bottleneck=None),
    lambda: SearchedDiscriminator(MIXED, n_feats=4, bottleneck=32, spectral_norm=True),
])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, make):
    seeded()
    d = make()
    x = torch.rand(2, 3, 128, 128)
    d.train()
    d(x)  # move BN running stats and spectral-norm vectors off their initial values
    d.eval()
    rebuilt = build_family(d.family, d.config())
    assert type(rebuilt) is type(d) and rebuilt.config() == d.config()
    save_checkpoint(tmp_path / "d.pt", d)
    loaded = model_from_checkpoint(read_checkpoint(tmp_path / "d.pt")).eval()
    via_load_model = load_model(str(tmp_path / "d.pt"), kind=None)
    with torch.no_grad():
        y = d(x)
        assert torch.equal(loaded(x), y) and torch.equal(via_load_model(x), y)
        assert not torch.equal(rebuilt.eval()(x), y)  # the weights, not only the architecture, came back


# ------------------------------------------------------------------------ training
def bce_loss(d, real, fake):
    f = nn.functional.binary_cross_entropy_with_logits
    lr, lf = d(real), d(fake)
    return f(lr, torch.ones_like(lr)) + f(lf, torch.zeros_like(lf))


def hinge_loss(d, real, fake):
    return torch.relu(1 - d(real)).mean() + torch.relu(1 + d(fake)).mean()


@pytest.mark.parametrize("make, loss_fn", [
    (lambda: VGGStyleDiscriminator(num_feat=8), bce_loss),
    (lambda: SearchedDiscriminator(MIXED, n_feats=4), hinge_loss),
    (lambda: SearchedDiscriminator(MIXED, n_feats=4, bottleneck=None, spectral_norm=True), bce_loss),
])
def test_a_few_gradient_steps_lower_a_real_gan_loss(make, loss_fn):
    seeded(1)
    d = make().train()
    real = torch.rand(4, 3, 128, 128)
    fake = (real + 0.3 * torch.randn_like(real)).clamp(0, 1)  # noisy copies: a generator's artefacts
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.9, 0.99))
    losses = []
    for _ in range(8):
        loss = loss_fn(d, real, fake)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in d.parameters())
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]


def test_generator_commands_refuse_a_discriminator_in_one_line(tmp_path):
    from tinysr.checkpoint import ModelLoadError
    from tinysr.train.config import TrainConfig

    with pytest.raises(ModelLoadError, match="'vgg_d128' is a discriminator, not a generator"):
        load_model("vgg_d128", allow_random=True)
    path = tmp_path / "d.pt"
    save_checkpoint(path, create_model("tpsr_d"))
    with pytest.raises(ModelLoadError, match="a discriminator \\(searched_discriminator\\), not a generator"):
        load_model(str(path))
    assert kind_of(load_model(str(path), kind=None)) == "discriminator"
    with pytest.raises(ValueError, match="'tpsr_d' is a discriminator, not a generator"):
        TrainConfig(model="tpsr_d").validate()
