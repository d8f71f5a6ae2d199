import random

import pytest
import torch

from tinysr.complexity import measure
from tinysr.genotype import CELL_INPUT, TPSR_GENOTYPE, Cell, Genotype, Node
from tinysr.ops import OP_NAMES, OPS, get_op, prelu_macs, sum_macs

SPACE_OPS = {"conv1", "conv3", "conv5", "conv7", "gconv3", "gconv5", "gconv7", "dsep3", "dsep5", "dsep7",
             "inv3", "inv5", "inv7", "se", "ca", "identity"}


def test_op_set_is_the_papers_search_space():
    assert set(OP_NAMES) == SPACE_OPS


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("n, h, w", [(16, 12, 20), (8, 7, 5)])
def test_each_op_keeps_shape_and_its_mult_adds_formula_matches_the_counter(name, n, h, w):
    spec = get_op(name)
    mod = spec.build(n)
    x = torch.randn(1, n, h, w)
    assert mod(x).shape == x.shape

    class Wrapped(torch.nn.Module):  # the counter's input has 3 channels: measure the op on n
        def __init__(self):
            super().__init__()
            self.op = mod

        def forward(self, _):
            return self.op(torch.zeros(1, n, h, w))

    counted = measure(Wrapped(), (1, 1)).mult_adds
    assert counted == pytest.approx(spec.macs(n, h, w), rel=1e-6, abs=1e-6)
    assert spec.latency_key(16, 180, 320) == f"{name}_n16_180x320"


def test_published_tpsr_cell_text_and_leaves():
    g = Genotype.parse(str(TPSR_GENOTYPE))
    assert g == TPSR_GENOTYPE
    assert TPSR_GENOTYPE.leaves == (6, 8, 9)
    assert [n.op for n in TPSR_GENOTYPE.nodes] == ["dsep5", "conv7", "conv7", "conv3", "conv3", "conv5", "dsep3",
                                                  "conv5", "conv3", "conv7"]


def test_genotype_mult_adds_equals_counter_for_random_cells():
    rng = random.Random(0)
    for _ in range(5):
        g = Genotype.random(10, rng)
        cell = Cell(g, 16)

        class C(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.cell = cell

            def forward(self, _):
                return self.cell(torch.zeros(1, 16, 9, 11))

        assert measure(C(), (1, 1)).mult_adds == pytest.approx(g.mult_adds(16, 9, 11), rel=1e-6)


def test_random_genotypes_cover_every_op_and_every_wiring():
    rng = random.Random(1)
    seen_ops, seen_src = set(), set()
    for _ in range(400):
        g = Genotype.random(10, rng)
        for i, n in enumerate(g.nodes):
            seen_ops.add(n.op)
            seen_src.add((i, n.src))
    assert seen_ops == SPACE_OPS
    assert seen_src == {(i, s) for i in range(10) for s in range(-1, i)}


def test_any_valid_wiring_builds_and_runs():
    g = Genotype(tuple(Node(op, CELL_INPUT if i == 0 else i - 1) for i, op in enumerate(OP_NAMES)))
    y = Cell(g, 16)(torch.randn(1, 16, 10, 10))
    assert y.shape == (1, 16, 10, 10) and torch.isfinite(y).all()
    assert g.leaves == (len(OP_NAMES) - 1,)


@pytest.mark.parametrize("text, msg", [
    ("conv3@0", "must be 'in' or an earlier node"),
    ("conv3@in conv9@0", "unknown operation 'conv9'"),
    ("conv3", "expected OP@SRC"),
    ("", "at least one node"),
])
def test_invalid_genotypes_are_rejected_clearly(text, msg):
    with pytest.raises(ValueError, match=msg):
        Genotype.parse(text)


def test_prelu_and_leaf_sum_costs():
    assert prelu_macs(16, 10, 10) == 800
    assert sum_macs(16, 10, 10) == 800
    one, three = Genotype.parse("conv3@in"), Genotype.parse("conv3@in conv3@in conv3@in")
    assert three.mult_adds(16, 10, 10) == 3 * one.mult_adds(16, 10, 10) + 2 * sum_macs(16, 10, 10)
    assert OPS["identity"].macs(16, 10, 10) == 0
