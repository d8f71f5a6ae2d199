"""The generator search's library core: space, constraints and reward, strategies, weight store,
and the surrogate benchmark (REINFORCE against random search on the real 20-decision space)."""
from __future__ import annotations

import functools
import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tinysr.genotype import TPSR_GENOTYPE, Genotype, Node
from tinysr.models.tpsr import CellSR
from tinysr.ops import OP_NAMES
from tinysr.profile.predict import load_table, predict_latency
from tinysr.search import (TPSR_SPACE, Constraints, GeneratorSpace, LatencyTarget, RandomStrategy, ReinforceStrategy,
                           Reward, WeightStore, make_strategy, space_size)

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "host-amd-epyc-litert-1t.json"
TINY = GeneratorSpace(3, ("conv3", "identity"))  # 2**3 * 3! = 48 architectures


# ----------------------------------------------------------------------------- space
def test_space_is_the_papers():
    assert TPSR_SPACE.num_nodes == 10 and TPSR_SPACE.ops == OP_NAMES and len(OP_NAMES) == 16
    assert TPSR_SPACE.cardinalities == tuple(c for i in range(10) for c in (16, i + 1))
    assert TPSR_SPACE.names[:4] == ("op_0", "src_0", "op_1", "src_1") and len(TPSR_SPACE.names) == 20
    assert space_size() == 16 ** 10 * math.factorial(10)  # 3_989_907_794_873_548_800


def test_space_size_counts_every_genotype_once():
    """Enumerate a small space by brute force: every vector decodes to a distinct valid genotype, and
    every genotype Genotype accepts is one of them."""
    vectors = list(itertools.product(*[range(c) for c in TINY.cardinalities]))
    genos = {str(TINY.decode(v)) for v in vectors}
    assert len(genos) == len(vectors) == TINY.size() == 48
    every = set()
    for ops in itertools.product(TINY.ops, repeat=3):
        for srcs in itertools.product(range(-1, 3), repeat=3):
            try:
                every.add(str(Genotype(tuple(Node(o, s) for o, s in zip(ops, srcs)))))
            except ValueError:
                pass
    assert every == genos


def test_published_cell_round_trip():
    d = TPSR_SPACE.encode(TPSR_GENOTYPE)
    # dsep5@in conv7@0 conv7@1 conv3@2 conv3@2 conv5@4 dsep3@5 conv5@3 conv3@7 conv7@in
    ix = OP_NAMES.index
    assert d == (ix("dsep5"), 0, ix("conv7"), 1, ix("conv7"), 2, ix("conv3"), 3, ix("conv3"), 3,
                 ix("conv5"), 5, ix("dsep3"), 6, ix("conv5"), 4, ix("conv3"), 8, ix("conv7"), 0)
    assert TPSR_SPACE.decode(d) == TPSR_GENOTYPE
    params = TPSR_SPACE.to_params(TPSR_GENOTYPE)
    assert list(params) == list(TPSR_SPACE.names)
    assert (params["op_0"], params["src_0"], params["src_1"], params["src_4"], params["op_9"], params["src_9"]) == \
        ("dsep5", "in", "0", "2", "conv7", "in")
    assert TPSR_SPACE.from_params(params) == TPSR_GENOTYPE
    assert TPSR_SPACE.to_params(d) == params == TPSR_SPACE.to_params(str(TPSR_GENOTYPE))
    assert TPSR_SPACE.param_choices()["src_3"] == ("in", "0", "1", "2")


def test_random_genotypes_round_trip():
    rng = random.Random(1)
    for _ in range(200):
        g = Genotype.random(10, rng)
        d = TPSR_SPACE.encode(g)
        assert TPSR_SPACE.decode(d) == g
        assert TPSR_SPACE.from_params(TPSR_SPACE.to_params(g)) == g
        assert TPSR_SPACE.from_params({**TPSR_SPACE.to_params(g), "lr": 1e-3}) == g  # other params ignored
    for v in TPSR_SPACE.sample(np.random.default_rng(2), 200):
        assert TPSR_SPACE.encode(TPSR_SPACE.decode(v)) == v


def test_sampling_is_seeded_and_uniform():
    a = TPSR_SPACE.sample(np.random.default_rng(7), 5)
    assert a == TPSR_SPACE.sample(np.random.default_rng(7), 5) != TPSR_SPACE.sample(np.random.default_rng(8), 5)
    assert len(TPSR_SPACE.sample(np.random.default_rng(7))) == 20
    counts = {}
    n = 48 * 400
    for v in TINY.sample(np.random.default_rng(0), n):
        counts[v] = counts.get(v, 0) + 1
    assert len(counts) == 48
    expected = n / 48
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 90  # 47 degrees of freedom: p ~ 1e-4


@pytest.mark.parametrize("vector, message", [
    ((0,) * 19, "20 entries"),
    ((0, 1) + (0,) * 18, r"decision 1 \(src_0\) = 1 is out of range: expected 0 \(cell input\)$"),
    ((0, 0, 0, 2) + (0,) * 16, r"decision 3 \(src_1\) = 2 is out of range: expected 0 \(cell input\) or 1..1"),
    ((16,) + (0,) * 19, r"decision 0 \(op_0\) = 16 is out of range: expected an operation index 0..15"),
    ((-1,) + (0,) * 19, r"decision 0 \(op_0\) = -1"),
    ((0.0,) + (0,) * 19, "not an integer"),
    ((True,) + (0,) * 19, "not an integer"),
])
def test_invalid_vectors_are_one_line_errors(vector, message):
    with pytest.raises(ValueError, match=message) as e:
        TPSR_SPACE.decode(vector)
    assert "\n" not in str(e.value)


def test_invalid_params_and_genotypes():
    params = TPSR_SPACE.to_params(TPSR_GENOTYPE)
    with pytest.raises(ValueError, match="parameter 'src_3' missing"):
        TPSR_SPACE.from_params({k: v for k, v in params.items() if k != "src_3"})
    with pytest.raises(ValueError, match="src_2 = '2' is not one of in, 0, 1"):
        TPSR_SPACE.from_params({**params, "src_2": "2"})
    assert TPSR_SPACE.from_params({**params, "src_2": 1}).nodes[2].src == 1  # an index given as a number
    with pytest.raises(ValueError, match="has 1 nodes"):
        TPSR_SPACE.encode("conv3@in")
    with pytest.raises(ValueError, match="not an operation of this space"):
        TINY.encode("conv3@in conv5@0 conv3@1")


# ---------------------------------------------------------------------------- reward
def test_default_mult_adds_is_the_whole_network():
    from tinysr.complexity import measure

    g = Genotype.parse("conv3@in ca@0 inv5@0 se@2 identity@in gconv5@4 dsep7@1 conv1@6 conv7@in inv3@8")
    c = Constraints(scale=2, input_size=(12, 20))
    _, _, figures = c.check(g)
    assert figures["mult_adds"] == pytest.approx(measure(CellSR(g, 2, 16), (12, 20)).mult_adds, rel=1e-9)
    assert figures["mult_adds"] > g.mult_adds(16, 12, 20)  # the skeleton is counted too


def test_latency_target_from_profile_is_the_table_prediction():
    import random

    from tinysr.genotype import Genotype
    from tinysr.profile.predict import predict_latency

    t = LatencyTarget.from_profile("epyc", 80.0, PROFILE, input_size=(180, 320), scale=4, n_feats=16)
    rng = random.Random(5)
    for g in [TPSR_GENOTYPE] + [Genotype.random(rng=rng) for _ in range(5)]:
        assert t.predict(g) == pytest.approx(predict_latency(g, PROFILE), rel=1e-12)
    assert t.hard, "a latency target rejects over budget unless told otherwise"
    with pytest.raises(ValueError, match="measured for x4, not x2"):
        LatencyTarget.from_profile("epyc", 80.0, PROFILE, scale=2)


def test_constraints_check_reasons_and_figures():
    macs = {"a": 3.5e9, "b": 4.5e9}
    lat = {"a": 90.0, "b": 60.0}
    ma = macs.__getitem__  # injected callables, keyed by a stand-in "genotype"
    c = Constraints(max_mult_adds=4e9, mult_adds=ma, targets=[
        LatencyTarget("soft", 50.0, lat.__getitem__, hard=False), LatencyTarget("hard", 80.0, lat.__getitem__)])
    ok, reason, figs = c.check("a")
    assert (ok, reason) == (False, "latency hard 90.000 ms over the budget 80.000 ms")
    assert figs == {"mult_adds": 3.5e9, "latency_ms": {"soft": 90.0, "hard": 90.0},
                    "latency_predicted_ms": {"soft": 90.0, "hard": 90.0}, "latency_measured_ms": {}}
    ok, reason, figs = c.check("b")
    assert (ok, reason) == (False, "Mult-Adds 4.5000 G over the limit 4.0000 G")
    assert figs["latency_ms"] == {"soft": 60.0, "hard": 60.0}  # recorded although rejected
    soft_only = Constraints(max_mult_adds=5e9, mult_adds=ma, targets=[LatencyTarget("soft", 50.0, lat.get, hard=False)])
    ok, reason, _ = soft_only.check("a")
    assert (ok, reason) == (True, "")  # a soft target never rejects
    with pytest.raises(ValueError, match="unique"):
        Constraints(targets=[LatencyTarget("x", 1.0, lat.get), LatencyTarget("x", 2.0, lat.get)])


def test_a_measured_latency_decides_and_the_prediction_is_recorded():
    predicted = {"a": 40.0, "b": 70.0}
    measured = {"a": 55.0, "b": 45.0}  # the table is wrong both ways: the measurement decides
    t = LatencyTarget("phone", 50.0, predicted.__getitem__, measure=measured.__getitem__, device="adb:X")
    c = Constraints(mult_adds=lambda g: 1e9, targets=[t])
    ok, reason, figs = c.check("a")
    assert (ok, reason) == (False, "latency phone 55.000 ms over the budget 50.000 ms")
    assert figs["latency_ms"] == {"phone": 55.0} and figs["latency_predicted_ms"] == {"phone": 40.0}
    assert figs["latency_measured_ms"] == {"phone": 55.0}
    assert c.check("b")[0]
    measured_only = Constraints(mult_adds=lambda g: 1e9, targets=[LatencyTarget("m", 50.0, measure=measured.get)])
    assert measured_only.check("b")[2]["latency_predicted_ms"] == {}
    with pytest.raises(ValueError, match="profile\\) or a device"):
        LatencyTarget("none", 50.0)
    with pytest.raises(ValueError, match="device"):
        LatencyTarget.from_device("bad", 50.0, device="usb:1")


def test_a_host_target_measures_the_candidate_in_the_loop():
    """A real measurement: the candidate is converted to TFLite and timed by LiteRT on this host."""
    t = LatencyTarget.from_device("host", 1000.0, "host", profile=None, input_size=(12, 16), runs=3, warmup=1)
    lat = t.latency(Genotype.parse("conv3@in"))
    assert lat["predicted"] is None and lat["measured"] == lat["used"] and 0 < lat["measured"] < 1000


def test_mnas_reward_by_hand():
    r = Reward(psnr_min=28.0, psnr_max=32.0, budgets={"a": 50.0})
    # psnr_norm = (31 - 28) / 4 = 0.75; (100/50)^-0.07 = 2^-0.07 = 0.9526380; (25/50)^-0.07 = 1.0497167
    assert r(31.0, {"a": 100.0}) == pytest.approx(0.75 * 0.9526380, abs=1e-7)
    assert r(31.0, {"a": 25.0}) == pytest.approx(0.75 * 1.0497167, abs=1e-7)
    assert r(31.0, {"a": 50.0}) == pytest.approx(0.75)
    assert r(27.0, {"a": 25.0}) == 0.0  # below psnr_min: clamped
    hard = Reward(psnr_min=28.0, psnr_max=32.0, alpha=0.0, beta=-1.0, budgets={"a": 50.0})
    assert hard(31.0, {"a": 25.0}) == pytest.approx(0.75) and hard(31.0, {"a": 100.0}) == pytest.approx(0.375)
    two = Reward(psnr_min=28.0, psnr_max=32.0, budgets={"a": 50.0, "b": 10.0})
    # (40/10)^-0.07 = 4^-0.07 = (2^-0.07)^2 = 0.9075192
    assert two(31.0, {"a": 100.0, "b": 40.0}) == pytest.approx(0.75 * 0.9526380 * 0.9075192, abs=1e-7)
    assert two(31.0, {"latency_ms": {"a": 100.0, "b": 40.0}, "mult_adds": 1e9}) == two(31.0, {"a": 100.0, "b": 40.0})
    assert Reward()(30.5) == 30.5  # no targets, no normalisation: the paper's PSNR reward
    assert Reward(psnr_max=30.0)(27.0) == pytest.approx(0.9)  # psnr / ref
    with pytest.raises(ValueError, match="no latency for target"):
        two(31.0, {"a": 100.0})
    with pytest.raises(ValueError, match="psnr_max"):
        Reward(psnr_min=30.0, psnr_max=29.0)


# ------------------------------------------------------------------------ strategies
def _toy_reward(decisions):
    """A deterministic reward over decision vectors; op 3 at node 0 is 'infeasible' (None)."""
    if decisions[0] == 3:
        return None
    return float(sum((k % 5) * (d % 7) for k, d in enumerate(decisions))) / 10.0


def _drive(strategy, steps, sizes=(3, 5, 4)):
    asked = []
    for s in range(steps):
        batch = strategy.ask(sizes[s % len(sizes)])
        asked += batch
        strategy.tell([(d, _toy_reward(d)) for d in batch])
    return asked


@pytest.mark.parametrize("name, options", [("random", {}), ("reinforce", {}), ("reinforce", {"rejected": None}),
                                           ("reinforce", {"rejected": -1.0, "batch_size": 3}),
                                           ("evolution", {"population": 6, "sample": 3})])
def test_checkpoint_after_every_update_resumes_bit_for_bit(name, options):
    straight = make_strategy(name, seed=11, **options)
    asked_straight = _drive(straight, 24)

    resumed = make_strategy(name, seed=11, **options)
    asked = _drive(resumed, 10)  # tell sizes 3/5/4 against batches of 4: a partial batch is pending here
    state = json.loads(json.dumps(resumed.state_dict()))  # what a driver would write to disk
    fresh = make_strategy(name, seed=999, **options)
    fresh.load_state_dict(state)
    asked += _drive(fresh, 14, sizes=(5, 4, 3))  # the sizes of steps 10..23 of the straight run

    assert asked == asked_straight
    assert fresh.state_dict() == straight.state_dict()
    if name == "reinforce":
        assert fresh.updates == straight.updates > 10
        assert torch.equal(fresh.logits, straight.logits)
        assert straight.rejected > 0
        # the probabilities moved away from uniform: the comparison above is not between untouched policies
        assert max(p.max() for p in straight.probabilities()) > 1.5 / 16
    if name == "evolution":
        assert len(straight.members) == 6 and straight.told - straight.rejected > 2 * 6  # full and aged


def test_reinforce_rejected_candidates():
    good = [(tuple([k % 3, 0] + [0] * 18), float(k)) for k in range(4)]  # distinct rewards 0..3
    bad = [(tuple([5, 0] + [0] * 18), None)] * 4

    skip = ReinforceStrategy(seed=0, batch_size=4, rejected=None)
    assert skip.tell(good) == 1
    before = skip.logits.detach().clone()
    assert skip.tell(bad) == 0  # skipped: no update, the policy is unchanged
    assert torch.equal(skip.logits, before) and skip.rejected == 4

    worst = ReinforceStrategy(seed=0, batch_size=4)  # default: the worst accepted reward so far
    worst.tell(good)
    p_before = worst.probabilities()[0][5]
    assert worst.tell(bad) == 1 and worst.worst == 0.0
    assert worst.probabilities()[0][5] < p_before  # advantage 0 - baseline < 0: op 5 at node 0 less likely

    first = ReinforceStrategy(seed=0, batch_size=4)
    assert first.tell(bad) == 0  # nothing accepted yet: no "worst" to use, skipped

    fixed = ReinforceStrategy(seed=0, batch_size=4, rejected=10.0)
    fixed.tell(good)
    p_before = fixed.probabilities()[0][5]
    fixed.tell(bad)
    assert fixed.probabilities()[0][5] > p_before  # a penalty above the baseline rewards them: the value matters


def test_strategy_errors():
    s = ReinforceStrategy(seed=0)
    with pytest.raises(ValueError, match="not finite"):
        s.tell([((0,) * 20, float("nan"))])
    with pytest.raises(ValueError, match="decision 3"):
        s.tell([((0, 0, 0, 5) + (0,) * 16, 1.0)])
    with pytest.raises(ValueError, match="unknown search strategy 'annealing'"):
        make_strategy("annealing")
    with pytest.raises(ValueError, match="state is for strategy 'random'"):
        s.load_state_dict(RandomStrategy(seed=0).state_dict())
    with pytest.raises(ValueError, match="rejected must be"):
        ReinforceStrategy(rejected="skip")
    assert s.tell([(TPSR_GENOTYPE, 2.0)]) == 0 and s.best_genotype == TPSR_GENOTYPE  # genotypes are accepted too


# ---------------------------------------------------------------------- weight store
def _trained(store, genotype, value):
    """A stand-in trained state dict: the CellSR's keys and shapes, every tensor filled with ``value``."""
    return {k: torch.full_like(v, value) for k, v in store.get(genotype).items()}


def _node_value(store, genotype, i):
    sd = store.get(genotype)
    vals = {float(v.flatten()[0]) for k, v in sd.items() if k.startswith(f"cell.nodes.{i}.")}
    assert len(vals) == 1
    return vals.pop()


def test_weight_store_eq5():
    store = WeightStore(seed=0)
    g1 = TPSR_GENOTYPE
    g2 = Genotype(g1.nodes[:5] + tuple(Node("se", n.src) for n in g1.nodes[5:]))  # shares nodes 0..4 with g1
    g3 = Genotype(g1.nodes[:2] + (Node("ca", 1), Node("ca", 2), Node("ca", 3)) + g2.nodes[5:7] + g1.nodes[7:])

    assert store.offer(g1, _trained(store, g1, 1.0), 30.0) == [(i, n.op) for i, n in enumerate(g1.nodes)]
    # worse: only the entries no earlier architecture used (nodes 5..9 with 'se') take its weights
    assert store.offer(g2, _trained(store, g2, 2.0), 29.0) == [(i, "se") for i in range(5, 10)]
    assert [_node_value(store, g2, i) for i in range(10)] == [1.0] * 5 + [2.0] * 5
    assert store.score(0, g1.nodes[0].op) == 30.0 and store.score(5, "se") == 29.0
    assert float(store.get(g2)["head.weight"].flatten()[0]) == 1.0  # skeleton from the best so far (g1)
    # better than both: exactly its own entries are replaced, the others keep theirs
    assert store.offer(g3, _trained(store, g3, 3.0), 31.0) == [(i, n.op) for i, n in enumerate(g3.nodes)]
    assert [_node_value(store, g3, i) for i in range(10)] == [3.0] * 10
    assert [_node_value(store, g2, i) for i in range(10)] == [3.0, 3.0, 1.0, 1.0, 1.0, 3.0, 3.0, 2.0, 2.0, 2.0]
    assert float(store.get(g1)["up.0.conv.bias"][0]) == 3.0 and store.skeleton_score == 31.0
    # a tie does not replace: the earlier weights stay
    assert store.offer(g3, _trained(store, g3, 4.0), 31.0) == []
    assert _node_value(store, g3, 0) == 3.0 and float(store.get(g3)["head.bias"][0]) == 3.0
    assert store.offers == 4


def test_weight_store_builds_strict_models():
    store = WeightStore(seed=3)
    rng = random.Random(0)
    genos = [TPSR_GENOTYPE] + [Genotype.random(10, rng) for _ in range(3)]
    before = torch.get_rng_state()
    for g in genos:
        store.get(g)
    assert torch.equal(torch.get_rng_state(), before)  # initial weights come from their own seeds
    for g in genos:
        model = CellSR(g, 4, 16)
        model.load_state_dict(store.get(g), strict=True)  # raises on a missing / unexpected key or a shape
        store.init_model(model)
        for k, v in model.state_dict().items():
            assert torch.equal(v, store.get(g)[k]), k
        with torch.no_grad():
            assert torch.isfinite(model(torch.rand(1, 3, 6, 7))).all()
    # initial weights depend on the seed and the entry, not on the order entries were first used
    other = WeightStore(seed=3)
    for g in reversed(genos):
        other.get(g)
    assert all(torch.equal(a, b) for a, b in zip(other.get(genos[1]).values(), store.get(genos[1]).values()))
    reseeded = WeightStore(seed=4).get(TPSR_GENOTYPE)
    for key in ("cell.nodes.0.op.dw.weight", "cell.nodes.9.op.conv.weight", "head.weight"):
        assert not torch.equal(reseeded[key], store.get(TPSR_GENOTYPE)[key])
    with pytest.raises(ValueError, match="scale=2; this weight store is for scale=4"):
        store.init_model(CellSR(TPSR_GENOTYPE, 2, 16))
    with pytest.raises(ValueError, match="missing"):
        store.offer(TPSR_GENOTYPE, _trained(store, genos[1], 1.0), 1.0)
    with pytest.raises(ValueError, match="finite"):
        store.offer(TPSR_GENOTYPE, _trained(store, TPSR_GENOTYPE, 1.0), float("nan"))


def test_weight_store_save_load(tmp_path):
    store = WeightStore(seed=5, scale=2)
    rng = random.Random(4)
    genos = [Genotype.random(10, rng) for _ in range(4)]
    for k, g in enumerate(genos[:3]):
        trained = {n: v + torch.randn_like(v) for n, v in store.get(g).items()}
        store.offer(g, trained, 20.0 + (k * 7) % 3)
    path = tmp_path / "store.pt"
    store.save(path)
    store.save(path)  # overwriting goes through a temporary file as well
    assert [p.name for p in tmp_path.iterdir()] == ["store.pt"]
    loaded = WeightStore.load(path)
    assert (loaded.scale, loaded.seed, loaded.offers, loaded.skeleton_score) == (2, 5, 3, store.skeleton_score)
    for g in genos:  # trained entries from the file, untouched ones re-derived from the seed
        a, b = store.get(g), loaded.get(g)
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
        for i, n in enumerate(g.nodes):
            assert loaded.score(i, n.op) == store.score(i, n.op)
        CellSR(g, 2, 16).load_state_dict(b, strict=True)
    with pytest.raises(FileNotFoundError):
        WeightStore.load(tmp_path / "absent.pt")


# ----------------------------------------------------------------- surrogate benchmark
class Surrogate:
    """A known reward over the real 20-decision space, with an exactly computable optimum.

    ``R(g) = sum_i A[i, op_i] + sum_i B[i, src_i] - lam * (predict_latency(g) - mean latency)``:
    fixed random scores per (node, op) and per (node, input), centred so that a uniformly random
    architecture scores 0 on average, minus a latency penalty predicted from the committed table
    (operations, skeleton and one ADD per extra leaf of the cell). The op terms and the op
    latencies are additive per node (argmax per node); the input terms and the leaf-ADD count
    depend only on the inputs, maximised exactly by dynamic programming over nodes from last to
    first with the set of already-consumed nodes as state (2**10 states).
    """

    def __init__(self, seed, space=TPSR_SPACE, lam=0.1):
        self.space, self.lam, self.table = space, lam, load_table(PROFILE)
        rng = np.random.default_rng(10_000 + seed)
        n, k = space.num_nodes, len(space.ops)
        a = rng.standard_normal((n, k))
        self.A = a - a.mean(axis=1, keepdims=True)
        self.B = [b - b.mean() for b in (rng.standard_normal(i + 1) for i in range(n))]
        op_ms = np.array([self.table.op_ms[o] for o in space.ops])
        add = self.table.add_ms
        # E[leaves] under uniform inputs: node j is a leaf with probability (j + 1) / n, so (n + 1) / 2
        self.mean_ms = self.table.base_ms + n * op_ms.mean() + add * ((n + 1) / 2 - 1)
        op_gain = self.A - lam * op_ms
        best_ops = op_gain.argmax(axis=1)

        @functools.lru_cache(maxsize=None)
        def best_inputs(i, consumed):
            if i < 0:
                return 0.0, ()
            leaf_cost = 0.0 if consumed >> i & 1 else lam * add
            options = []
            for c in range(i + 1):
                v, rest = best_inputs(i - 1, consumed | (1 << (c - 1)) if c else consumed)
                options.append((v + self.B[i][c] - leaf_cost, rest + (c,)))
            return max(options)

        v, srcs = best_inputs(n - 1, 0)
        # sum B - lam * add * leaves, + lam * add (one leaf needs no ADD), - lam * (base - mean)
        self.optimum = float(op_gain.max(axis=1).sum() + v + lam * add - lam * (self.table.base_ms - self.mean_ms))
        self.best = tuple(x for i in range(n) for x in (int(best_ops[i]), srcs[i]))

    def __call__(self, decisions):
        g = self.space.decode(decisions)
        s = sum(self.A[i, decisions[2 * i]] + self.B[i][decisions[2 * i + 1]] for i in range(self.space.num_nodes))
        return float(s - self.lam * (predict_latency(g, self.table) - self.mean_ms))


def test_surrogate_optimum_is_exact():
    s = Surrogate(0)
    assert s(s.best) == pytest.approx(s.optimum, abs=1e-9)
    # brute force over a whole small space (4 nodes, 3 operations: 1944 architectures)
    small = GeneratorSpace(4, ("conv3", "dsep5", "se"))
    for seed in range(3):
        t = Surrogate(seed, small, lam=0.5)
        values = [t(v) for v in itertools.product(*[range(c) for c in small.cardinalities])]
        assert max(values) == pytest.approx(t.optimum, abs=1e-9)
        assert t(t.best) == pytest.approx(t.optimum, abs=1e-9)
        assert abs(np.mean(values)) < 1e-9  # centred: the uniform average is exactly 0


BUDGET = 3000  # candidates evaluated per run
SEEDS = range(5)


def _best_ratio(name, seed, surrogate, **options):
    strategy = make_strategy(name, seed=seed, **options)
    while strategy.told < BUDGET:
        batch = strategy.ask(min(4, BUDGET - strategy.told))
        strategy.tell([(d, surrogate(d)) for d in batch])
    assert strategy.best_reward == pytest.approx(surrogate(strategy.best_decisions))
    return strategy.best_reward / surrogate.optimum


def test_reinforce_beats_random_on_the_surrogate():
    rows = []
    for seed in SEEDS:
        s = Surrogate(seed)
        rows.append((seed, _best_ratio("reinforce", seed, s), _best_ratio("random", seed, s)))
    report = "; ".join(f"seed {k}: reinforce {r:.4f}, random {q:.4f}" for k, r, q in rows)
    print(f"\nsurrogate benchmark, {BUDGET} samples, best found / optimum: {report}")
    for seed, r, q in rows:
        assert r <= 1 + 1e-9 and q <= 1 + 1e-9, report  # nothing beats the exact optimum
        assert r >= 0.98, report
        assert q < 0.98, report


def test_evolution_initial_mutation_ageing_and_rejection():
    chain = "conv3@in conv3@0 conv3@1 conv3@2 conv3@3 conv3@4 conv3@5 conv3@6 conv3@7 conv3@8"
    s = make_strategy("evolution", seed=3, population=4, sample=2, initial=[chain, TPSR_GENOTYPE])
    first = s.ask(3)
    assert first[0] == TPSR_SPACE.encode(chain) and first[1] == TPSR_SPACE.encode(TPSR_GENOTYPE)
    s.tell([(first[0], 5.0), (first[1], None), (first[2], 1.0)])  # a rejected one never enters the population
    assert [r for _, r in s.members] == [5.0, 1.0]
    s.tell([(d, 2.0) for d in s.ask(1)])  # the fourth ask: still filling the population, uniformly
    assert len(s.members) == 3
    # the population is not full but every ask now mutates: the 5th candidate onwards
    children = s.ask(40)
    for c in children:  # one decision changed from a member, never one already asked
        assert min(sum(a != b for a, b in zip(c, m)) for m, _ in s.members) == 1
    assert len(set(children) | set(first)) == 43
    s.tell([(children[0], 0.5), (children[1], 0.7)])
    assert [r for _, r in s.members] == [1.0, 2.0, 0.5, 0.7]  # ageing: the best (5.0) was the oldest and left
    with pytest.raises(ValueError, match="initial genotype 0"):
        make_strategy("evolution", initial=["w16 d1 | conv3@in"])
    with pytest.raises(ValueError, match="sample must be between 1 and the population"):
        make_strategy("evolution", population=4, sample=5)


def test_evolution_beats_reinforce_and_random_at_a_small_budget():
    """At 128 evaluations (a search of trained candidates), the population's local refinement finds more."""
    import test_search_core as this
    saved = this.BUDGET
    this.BUDGET = 128
    try:
        rows = []
        for seed in range(10):
            s = Surrogate(seed)
            rows.append((_best_ratio("evolution", seed, s, population=8, sample=3), _best_ratio("reinforce", seed, s),
                         _best_ratio("random", seed, s)))
    finally:
        this.BUDGET = saved
    mean = np.mean(rows, axis=0)
    print(f"\nsurrogate benchmark, 128 samples, seeds 0-9, mean best / optimum: evolution {mean[0]:.3f}, "
          f"reinforce {mean[1]:.3f}, random {mean[2]:.3f}")
    assert mean[0] > mean[1] + 0.1 and mean[0] > mean[2] + 0.1
