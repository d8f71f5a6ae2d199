"""The extended generator space (tpsr_plus): CellSR's skeleton options, the network genotype text,
the space's decisions, the weight store keyed by width, latency tables holding every width, the
search end to end at a tiny size, and the CLI paths a searched network takes."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tinysr.complexity import measure
from tinysr.genotype import TPSR_GENOTYPE, Genotype, NetworkGenotype, as_network, parse_genotype
from tinysr.models import create_model
from tinysr.models.tpsr import CellSR, mult_adds, skeleton_parts
from tinysr.ops import OP_NAMES, sum_macs

ROOT = Path(__file__).resolve().parents[1]
CELL = "conv3@in dsep3@0 identity@in"
SKELETONS = [("tpsr", False), ("tpsr", True), ("anchor", False), ("anchor", True)]


# ------------------------------------------------------------------------------ the network
def test_defaults_are_the_paper_network():
    m = CellSR(TPSR_GENOTYPE, 4)
    assert m.config() == {"genotype": str(TPSR_GENOTYPE), "scale": 4, "n_feats": 16}
    assert create_model("tpsr_x4").config() == m.config()
    assert list(m.state_dict())[:2] == ["head.weight", "head.bias"]
    assert not any(k.startswith(("tail", "anchor", "clip", "cell.0")) for k in m.state_dict())
    assert m.genotype_text == str(TPSR_GENOTYPE)
    # the same network through a network genotype at its defaults
    n = CellSR(NetworkGenotype(TPSR_GENOTYPE), 4)
    assert n.config() == m.config() and list(n.state_dict()) == list(m.state_dict())


@pytest.mark.parametrize("upsampler,clip", SKELETONS)
@pytest.mark.parametrize("width,depth", [(16, 1), (24, 2)])
def test_mult_adds_closed_form_equals_measure(width, depth, upsampler, clip):
    net = NetworkGenotype(Genotype.parse(CELL), width, depth, upsampler, clip)
    model = CellSR(net, 4)
    size = (10, 14)
    assert mult_adds(net, 4, input_size=size) == pytest.approx(measure(model, size).mult_adds, rel=1e-9)
    assert mult_adds(str(net), 4, input_size=size) == mult_adds(net, 4, input_size=size)
    # skeleton parts: their Mult-Adds (and depth x leaf ADDs) add up to the whole network's
    parts = skeleton_parts(4, width, size, upsampler, clip)
    cell = net.cell.mult_adds(width, *size) * depth
    assert sum(p.mult_adds for p in parts if p.per == "network") + cell == pytest.approx(
        mult_adds(net, 4, input_size=size))
    for p in parts:  # every RGB-input part's module measures as its closed form
        if p.op is None and p.channels == 3:
            assert measure(p.make(), p.size).mult_adds == pytest.approx(p.mult_adds), p.key
    assert {p.per for p in parts} == {"network", "extra leaf"}
    assert [p for p in parts if p.per == "extra leaf"][0].count(net) == depth * (len(net.leaves) - 1)


def test_skeleton_options_forward_and_config():
    x = torch.rand(1, 3, 8, 10)
    for upsampler, clip in SKELETONS:
        m = CellSR(CELL, 4, n_feats=24, n_cells=2, upsampler=upsampler, clip=clip)
        with torch.no_grad():
            y = m(x)
        assert y.shape == (1, 3, 32, 40)
        if clip:
            assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        cfg = m.config()
        assert cfg["n_cells"] == 2 and cfg.get("upsampler", "tpsr") == upsampler and cfg.get("clip", False) == clip
        rebuilt = CellSR(**cfg)
        rebuilt.load_state_dict(m.state_dict(), strict=True)
        with torch.no_grad():
            assert torch.equal(rebuilt(x), y)
        assert m.genotype_text == str(m.network) and CellSR(m.genotype_text, 4).config() == cfg
    anchor = CellSR(CELL, 4, upsampler="anchor")
    assert not hasattr(anchor, "sub_mean")  # the anchor skeleton works on the [0, 1] input directly
    with torch.no_grad():  # a zero residual: the network is nearest-neighbour up-sampling
        anchor.tail.weight.zero_()
        anchor.tail.bias.zero_()
    assert torch.allclose(anchor(x), torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest"))


def test_network_genotype_text():
    net = NetworkGenotype.parse(f"w32 d2 anchor clip | {CELL}")
    assert (net.n_feats, net.n_cells, net.upsampler, net.clip) == (32, 2, "anchor", True)
    assert str(net) == f"w32 d2 anchor clip | {CELL}"
    assert NetworkGenotype.parse(f"anchor w24 | {CELL}") == NetworkGenotype(Genotype.parse(CELL), 24, 1, "anchor")
    assert str(NetworkGenotype.parse(CELL)) == f"w16 d1 tpsr | {CELL}" and NetworkGenotype.parse(CELL).is_default
    assert isinstance(parse_genotype(CELL), Genotype) and isinstance(parse_genotype(str(net)), NetworkGenotype)
    assert as_network(CELL, 24).n_feats == 24 and as_network(net, 16) is net
    for bad in (f"w32 x2 | {CELL}", f"w32 w16 | {CELL}", f"d0 | {CELL}"):
        with pytest.raises(ValueError):
            NetworkGenotype.parse(bad)
    with pytest.raises(ValueError, match="contradicts"):
        CellSR(net, 4, n_feats=16)
    assert CellSR(net, 4, n_feats=32).n_feats == 32
    assert CellSR.of(net, 4, 16).n_feats == 32 and CellSR.of(CELL, 4, 24).n_feats == 24


# ------------------------------------------------------------------------------ the space
def test_plus_space_decisions():
    from tinysr.search import TPSR_PLUS_SPACE as S
    from tinysr.search import TPSR_SPACE
    from tinysr.search.core.space import space_from_identity

    assert S.num_decisions == 23 and S.cardinalities[:3] == (3, 2, 4)
    assert S.names[:4] == ("width", "depth", "skeleton", "op_0")
    assert S.size() == 24 * TPSR_SPACE.size()
    rng = np.random.default_rng(0)
    seen = set()
    for v in S.sample(rng, 200):
        g = S.decode(v)
        assert isinstance(g, NetworkGenotype) and S.encode(g) == v and S.encode(str(g)) == v
        assert S.params_to_decisions(S.to_params(v)) == v
        seen.add((g.n_feats, g.n_cells, g.upsampler, g.clip, g.linear))
    assert len(seen) == 24
    assert space_from_identity(S.identity()) == S
    with pytest.raises(ValueError, match="skeleton"):
        S.encode(NetworkGenotype(TPSR_GENOTYPE, 16, 1, "tpsr", True))  # tpsr+clip: not a choice of the space
    assert S.encode(str(TPSR_GENOTYPE))[:3] == (0, 0, 0)  # a bare cell: the paper's skeleton


@pytest.mark.parametrize("name", ["random", "reinforce", "nsga2", "tpe"])
def test_every_strategy_samples_the_plus_space(name):
    from tinysr.search import TPSR_PLUS_SPACE as S
    from tinysr.search import make_strategy

    strategy = make_strategy(name, S, seed=0)
    asked = strategy.ask(4)
    genos = [S.decode(d) for d in asked]
    results = [(d, (20.0 + i, 10.0 + i)) if len(strategy.objectives) > 1 else (d, 1.0 + i)
               for i, d in enumerate(asked)]
    strategy.tell(results)
    again = make_strategy(name, S, seed=0)
    again.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert again.ask(2) == strategy.ask(2)
    assert all(isinstance(g, NetworkGenotype) for g in genos)


def test_plus_weight_store_keys_by_width():
    from tinysr.ops import OP_NAMES as OPS
    from tinysr.search import GeneratorSpace, PlusSpace, PlusWeightStore, WeightStore

    space = PlusSpace(3, OPS)
    store = PlusWeightStore(space, 4, seed=0)
    a = NetworkGenotype(Genotype.parse(CELL), 16, 2, "anchor", True)
    b = NetworkGenotype(Genotype.parse(CELL), 24, 2, "anchor", False)
    ma = store.init_model(CellSR(a, 4))
    sd = {k: v + 1.0 if v.is_floating_point() and not k.startswith("anchor") else v
          for k, v in ma.state_dict().items()}
    replaced = store.offer(a, sd, 30.0)
    assert {k[0] for k in replaced} == {16} and {k[1] for k in replaced} == {0, 1}
    got_a = store.get(a)
    assert all(torch.equal(got_a[k], sd[k]) for k in sd)
    # another width starts fresh: nothing shared across widths
    got_b = store.get(b)
    assert store.score(24, 0, 0, "conv3") is None and store.skeleton_score(24, "anchor") is None
    assert got_b["cell.0.nodes.0.op.conv.weight"].shape[0] == 24
    # same width, the TPSR skeleton: the cell entries are shared, the skeleton is its own
    c = NetworkGenotype(Genotype.parse(CELL), 16, 1, "tpsr")
    got_c = store.get(c)
    assert torch.equal(got_c["cell.nodes.0.op.conv.weight"], sd["cell.0.nodes.0.op.conv.weight"])
    assert store.skeleton_score(16, "tpsr") is None
    # a 16-feature one-cell TPSR candidate starts exactly as in the paper's store
    fresh = PlusWeightStore(space, 4, seed=0).get(c)
    paper = WeightStore(GeneratorSpace(3, OPS), 4, 16, 0).get(Genotype.parse(CELL))
    assert list(fresh) == list(paper) or set(fresh) == set(paper)
    assert all(torch.equal(fresh[k], paper[k]) for k in paper)
    # state round trip (through WeightStore.from_state, as the driver and report read it)
    back = WeightStore.from_state(store.state())
    assert isinstance(back, PlusWeightStore)
    assert all(torch.equal(back.get(a)[k], got_a[k]) for k in got_a)


# ------------------------------------------------------------------------------ latency tables
def fake_plus_table(widths=(16, 24, 32), size=(12, 16), scale=4) -> dict:
    """A tpsr_plus table with made-up entries (every key the space needs; ms = Mult-Adds / 1e6)."""
    from tinysr.profile.lut import FORMAT, SPACES, skeleton_layout, table_parts

    parts = table_parts("tpsr_plus", size, scale, widths)
    entries = {key: {"median_ms": 1.0 + i * 0.01, "p90_ms": None, "runs": 1, "what": what}
               for i, (key, what, *_rest) in enumerate(parts)}
    return {"format": FORMAT, "space": "tpsr_plus", "n_feats": 16, "input_size": list(size), "scale": scale,
            "device": {"kind": "host"}, "runtime": {"name": "litert", "threads": 1}, "clock": "wall",
            "skeleton": skeleton_layout(16, *size, scale), "overhead": {"ms": 0.5}, "entries": entries,
            "widths": list(widths), "skeletons": list(SPACES["tpsr_plus"]["skeletons"])}


def test_table_parts_hold_every_width_and_skeleton():
    from tinysr.profile.lut import table_parts

    keys = [p[0] for p in table_parts("tpsr_plus", (12, 16), 4)]
    assert len(keys) == len(set(keys))
    for n in (16, 24, 32):
        assert f"conv3_n{n}_12x16" in keys and f"skeleton.head_c3_n{n}_12x16" in keys
        assert f"skeleton.anchor_n{n}_x4_12x16" in keys and f"skeleton.anchor_clip_n{n}_x4_12x16" in keys
    # the paper's space: unchanged
    assert [p[0] for p in table_parts("tpsr", (12, 16), 4)] == (
        [f"{op}_n16_12x16" for op in OP_NAMES] + [p.key for p in skeleton_parts(4, 16, (12, 16))])


def test_plus_table_predicts_networks(tmp_path):
    from tinysr.profile.lut import LatencyTable, op_key
    from tinysr.profile.predict import predict_latency, sample_genotypes

    data = fake_plus_table()
    table = LatencyTable(data, "plus.json")
    cell = Genotype.parse(CELL)
    bare = table.predict(cell)
    assert table.predict(NetworkGenotype(cell)) == pytest.approx(bare)
    net = NetworkGenotype(cell, 24, 2, "anchor", True)
    e = data["entries"]
    want = (0.5 + e["skeleton.anchor_clip_n24_x4_12x16"]["median_ms"] + e["skeleton.prelu_n24_12x16"]["median_ms"]
            + 2 * (sum(e[op_key(nd.op, 24, 12, 16)]["median_ms"] for nd in cell.nodes)
                   + (len(cell.leaves) - 1) * e["skeleton.add_n24_12x16"]["median_ms"]))
    assert table.predict(net) == pytest.approx(want)
    assert predict_latency(str(net), data, input_size=(12, 16), scale=4, n_feats=24) == pytest.approx(want)
    assert sum(ms for _, _, ms in table.breakdown(net)) == pytest.approx(want)
    table.check((12, 16), 4, 32)
    with pytest.raises(ValueError, match="width"):
        table.check((12, 16), 4, 40)
    # a table of some widths only refuses the others in one line
    small = LatencyTable(fake_plus_table(widths=(16,)), "w16.json")
    with pytest.raises(ValueError, match="n24"):
        small.predict(NetworkGenotype(cell, 24))
    # a paper-space table prices the paper's skeleton only
    paper = LatencyTable(json.loads((ROOT / "profiles" / "host-amd-epyc-litert-1t.json").read_text()))
    assert paper.predict(NetworkGenotype(cell)) == pytest.approx(paper.predict(cell))
    with pytest.raises(ValueError, match="tpsr_plus"):
        paper.predict(NetworkGenotype(cell, 16, 1, "anchor"))
    # sampling the extended space (validation's networks)
    genos = sample_genotypes(30, seed=0, space="tpsr_plus")
    assert all(isinstance(g, NetworkGenotype) for g in genos) and len({g.n_feats for g in genos}) == 3
    assert sample_genotypes(5, seed=0) == sample_genotypes(5, seed=0, space="tpsr")  # the paper's: unchanged
    assert all(isinstance(g, Genotype) for g in sample_genotypes(5, seed=0))


def test_calibration_genotypes_of_the_plus_space():
    from tinysr.profile.lut import calibration_genotypes

    genos = calibration_genotypes(6, 0, "tpsr_plus", widths=(16, 24))
    assert genos[0] == TPSR_GENOTYPE and len(genos) == 6
    assert all(g.n_feats in (16, 24) for g in genos[1:])
    assert calibration_genotypes(4) == calibration_genotypes(4, 0, "tpsr")


# ------------------------------------------------------------------------------ search, end to end
def _tiny_config(tmp_path, profile: Path | None, strategy="reinforce"):
    from tinysr.search.generator.config import SearchConfig

    data_dir = tmp_path / "hr"
    data_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(6):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(data_dir / f"{i}.png")
    latency = [{"name": "fake", "profile": str(profile), "budget_ms": 1000.0}] if profile else []
    return SearchConfig.from_dict({
        "run_dir": str(tmp_path / "run"), "space": "tpsr_plus", "seed": 0, "scale": 4, "input_size": [12, 16],
        "max_mult_adds": 1e9, "latency": latency, "psnr_min": 0.0, "strategy": strategy, "evaluations": 4,
        "round_size": 2, "workers": 0, "threads": 1,
        "proxy": {"train_data": [str(data_dir)], "scale": 4, "val_images": 2, "val_size": 8, "patch_size": 6,
                  "batch_size": 2, "steps": 2, "lr": 0.001, "seed": 0}})


def _small_space(monkeypatch):
    """A 3-node cell (same skeleton decisions), so that the tiny search's networks are small."""
    from tinysr.profile import lut

    spec = dict(lut.SPACES["tpsr_plus"], num_nodes=3, ops=("conv1", "conv3", "identity", "dsep3"))
    monkeypatch.setitem(lut.SPACES, "tpsr_plus", spec)


def test_search_end_to_end_tiny(tmp_path, monkeypatch, capsys):
    from tinysr.checkpoint import load_model
    from tinysr.search.core import run_store
    from tinysr.search.core.report import export_checkpoint
    from tinysr.search.generator.driver import run_search

    profile = tmp_path / "plus.json"
    profile.write_text(json.dumps(fake_plus_table()))  # every op (the run meta prices the TPSR cell too)
    _small_space(monkeypatch)
    cfg = _tiny_config(tmp_path, profile)
    assert cfg.to_dict()["space"] == "tpsr_plus"
    summary = run_search(cfg, progress=False)
    assert summary["evaluated"] == 4
    info, study = run_store.open_run(cfg.run_dir)
    assert info.meta["space"]["name"] == "tpsr_plus"
    recs = run_store.trial_records(study)
    assert recs and all("|" in r.genotype for r in recs)
    assert all(r.latency_ms["fake"] > 0 for r in recs)
    best = summary["best"]["genotype"]
    # search export (trial weights and the width-keyed store) -> checkpoints of the network with its skeleton
    for weights in ("trial", "store"):
        out = tmp_path / f"best_{weights}.pt"
        meta = export_checkpoint(cfg.run_dir, out, weights=weights)
        assert meta["search"]["genotype"] == best
        model = load_model(str(out))
        assert str(model.network) == best
    # resume: the checkpointed PlusWeightStore and the strategy restore (nothing left to do)
    from tinysr.search.generator.driver import Search

    again = Search(cfg.replace(evaluations=4), resume=True, progress=False)
    assert type(again.store).__name__ == "PlusWeightStore"
    assert again.space.identity()["name"] == "tpsr_plus"


def test_paper_space_config_unchanged():
    from tinysr.search.generator.config import SearchConfig

    cfg = SearchConfig.from_file(ROOT / "tinysr" / "configs" / "search_demo.yaml")
    assert cfg.space == "tpsr" and "space" not in cfg.to_dict() and "space" not in cfg.identity()
    with pytest.raises(ValueError, match="space"):
        SearchConfig.from_dict({**cfg.to_dict(), "space": "nope"})


def test_plus_config_refuses_a_paper_table(tmp_path):
    from tinysr.search.generator.config import SearchConfig

    data = SearchConfig.from_file(ROOT / "tinysr" / "configs" / "search_demo.yaml").to_dict()
    data.update(space="tpsr_plus")
    data["proxy"]["train_data"] = [str(tmp_path)]
    cfg = SearchConfig.from_dict(data)
    with pytest.raises(ValueError, match="tpsr_plus"):
        cfg.constraints()


def test_demo_config_reads():
    from tinysr.search.generator.config import SearchConfig

    cfg = SearchConfig.from_file(ROOT / "tinysr" / "configs" / "search_plus_demo.yaml")
    assert cfg.space == "tpsr_plus" and cfg.latency and cfg.latency[0].profile
    constraints = cfg.constraints()  # the table holds every width and skeleton of the space
    from tinysr.search import TPSR_PLUS_SPACE

    rng = np.random.default_rng(0)
    for v in TPSR_PLUS_SPACE.sample(rng, 5):
        ok, reason, figs = constraints.check(TPSR_PLUS_SPACE.decode(v))
        assert figs["latency_ms"][cfg.latency[0].name] > 0


# ------------------------------------------------------------------------------ CLI paths
def test_cli_train_genotype_and_lut_predict(tmp_path, capsys):
    from tinysr.checkpoint import save_checkpoint
    from tinysr.cli.main import main
    from tinysr.train.config import TrainConfig
    from tinysr.train.trainer import build_model

    net = NetworkGenotype(Genotype.parse(CELL), 24, 2, "anchor", True)
    ckpt = tmp_path / "net.pt"
    save_checkpoint(ckpt, CellSR(net, 4))
    # tinysr train --genotype CKPT / --genotype TEXT: the skeleton comes along
    model = build_model(TrainConfig(model="tpsr_x4", genotype=str(net)))
    assert model.network == net
    seen = {}

    def fake_train(cfg, resume=True, progress=True):
        seen["genotype"] = cfg.genotype
        raise SystemExit(0)

    import tinysr.train.trainer as trainer

    real = trainer.train
    trainer.train = fake_train
    try:
        with pytest.raises(SystemExit):
            main(["train", "--model", "tpsr_x4", "--genotype", str(ckpt), "--out-dir", str(tmp_path / "r")])
    finally:
        trainer.train = real
    assert seen["genotype"] == str(net)
    # tinysr lut predict: a checkpoint, a network text, and a bare cell at another width
    profile = tmp_path / "plus.json"
    profile.write_text(json.dumps(fake_plus_table()))
    from tinysr.profile.lut import LatencyTable

    want = LatencyTable(fake_plus_table()).predict(net)
    for spec in (str(ckpt), str(net)):
        main(["lut", "predict", spec, "--profile", str(profile), "--json"])
        out = json.loads(capsys.readouterr().out)
        assert out["predicted_ms"] == pytest.approx(want) and out["genotype"] == str(net)
    main(["lut", "predict", CELL, "--profile", str(profile), "--n-feats", "32", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["predicted_ms"] == pytest.approx(LatencyTable(fake_plus_table()).predict(
        NetworkGenotype(Genotype.parse(CELL), 32)))


def test_export_tflite_of_an_anchor_network(tmp_path):
    pytest.importorskip("litert_torch", reason="needs the TFLite converter")
    from tinysr.profile.lut import convert_network

    net = NetworkGenotype(Genotype.parse("conv3@in"), 16, 2, "anchor", True)
    torch.manual_seed(0)
    model = CellSR(net, 4).eval()
    flat = convert_network(model, (8, 12))
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flat)
    it.allocate_tensors()
    x = torch.rand(1, 3, 8, 12)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], x.permute(0, 2, 3, 1).numpy())
    it.invoke()
    y = torch.from_numpy(it.get_tensor(out["index"])).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(y, ref, atol=1e-4)


def test_random_genotype_keeps_the_paper_stream():
    from tinysr.profile.lut import random_genotype

    a, b = random.Random(3), random.Random(3)
    assert random_genotype("tpsr", a) == Genotype.random(10, b, OP_NAMES)


# ------------------------------------------------------------------------------ the linear skeleton option
LINEAR_NET = "w16 d2 anchor clip linear | conv3@in conv1@0 dsep3@1 conv5@in"


def test_linear_network_trains_expanded_and_collapses_exactly():
    from tinysr.models.mobile import deploy
    from tinysr.ops import CollapsibleConv

    net = parse_genotype(LINEAR_NET)
    assert net.linear and str(net) == LINEAR_NET and not net.deployed().linear
    torch.manual_seed(0)
    model = CellSR(net, 4)
    blocks = [name for name, m in model.named_modules() if isinstance(m, CollapsibleConv)]
    # the head, the tail and every conv node of both cells (conv3, conv1, conv5), not the dsep node
    assert sorted(blocks) == sorted(["head", "tail"] + [f"cell.{c}.nodes.{i}.op.conv" for c in (0, 1) for i in (0, 1, 3)])
    with torch.no_grad():  # move every weight off its initial value so that the collapse has work to do
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.rand(2, 3, 10, 14)
    deployed = deploy(model)
    assert deployed is not model and not deployed.linear and not any(
        isinstance(m, CollapsibleConv) for m in deployed.modules())
    assert deployed.config() == CellSR(net.deployed(), 4).config() and "linear" in model.config()
    with torch.no_grad():  # exact against the two-convolution training form written out
        hooks = [m.register_forward_hook(lambda m, i, o: m.expanded_forward(i[0]))
                 for m in model.modules() if isinstance(m, CollapsibleConv)]
        ref = model(x)
        for h in hooks:
            h.remove()
        assert torch.allclose(deployed(x), ref, atol=1e-5)
    # the collapsed network is the plain one: its Mult-Adds and closed form are the plain network's
    assert measure(deployed, (12, 16)).mult_adds == pytest.approx(mult_adds(net.deployed(), 4, input_size=(12, 16)))
    assert mult_adds(net, 4, input_size=(12, 16)) == mult_adds(net.deployed(), 4, input_size=(12, 16))
    # built again from its checkpoint config (what bundling and loading do)
    again = CellSR(**model.config())
    assert again.linear and sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())
    # a non-linear network deploys as itself
    plain = CellSR(net.deployed(), 4)
    assert deploy(plain) is plain


def test_linear_weights_are_kept_apart_and_priced_as_the_plain_network():
    from tinysr.profile.lut import LatencyTable
    from tinysr.search import PlusSpace, PlusWeightStore, WeightStore

    net = parse_genotype(LINEAR_NET)
    plain = net.deployed()
    space = PlusSpace(4, OP_NAMES)
    assert space.decode(space.encode(net)) == net and space.decode(space.encode(plain)) == plain
    store = PlusWeightStore(space, 4, seed=0)
    model = store.init_model(CellSR(net, 4))
    sd = {k: v + 1.0 if v.is_floating_point() and not k.startswith("anchor") else v
          for k, v in model.state_dict().items()}
    replaced = store.offer(net, sd, 25.0)
    assert replaced and all(k[-1] == "linear" for k in replaced)
    assert store.score(16, 0, 0, "conv3", linear=True) == 25.0 and store.score(16, 0, 0, "conv3") is None
    assert store.skeleton_score(16, "anchor", linear=True) == 25.0 and store.skeleton_score(16, "anchor") is None
    assert "cell.0.nodes.0.op.conv.weight" in store.get(plain)  # the plain network: its own fresh entries
    back = WeightStore.from_state(store.state())
    assert all(torch.equal(back.get(net)[k], store.get(net)[k]) for k in sd)
    assert back.score(16, 1, 3, "conv5", linear=True) == 25.0
    table = LatencyTable(fake_plus_table(), "plus.json")
    assert table.predict(net) == table.predict(plain)


def test_export_tflite_of_a_linear_network_holds_plain_convs():
    pytest.importorskip("litert_torch", reason="needs the TFLite converter")
    from ai_edge_litert.interpreter import Interpreter

    from tinysr.models.mobile import deploy
    from tinysr.export.flatbuffer import op_rows
    from tinysr.profile.lut import convert_network

    torch.manual_seed(0)
    model = CellSR(parse_genotype(LINEAR_NET), 4).eval()
    flat = convert_network(model, (8, 12))
    ops = [t for t, _, _ in op_rows(flat)]
    assert ops.count("CONV_2D") == 2 + 2 * 3 + 1 + 2  # head, tail, the conv nodes, the anchor, dsep pointwise x2
    it = Interpreter(model_content=flat)
    it.allocate_tensors()
    x = torch.rand(1, 3, 8, 12)
    it.set_tensor(it.get_input_details()[0]["index"], x.permute(0, 2, 3, 1).numpy())
    it.invoke()
    y = torch.from_numpy(it.get_tensor(it.get_output_details()[0]["index"])).permute(0, 3, 1, 2)
    with torch.no_grad():
        assert torch.allclose(y, deploy(model)(x), atol=1e-4)


def test_space_options_restrict_the_extended_space(tmp_path, monkeypatch):
    from tinysr.search.core import run_store
    from tinysr.search.generator.config import SearchConfig
    from tinysr.search.generator.driver import run_search

    profile = tmp_path / "plus.json"
    profile.write_text(json.dumps(fake_plus_table()))
    _small_space(monkeypatch)
    base = _tiny_config(tmp_path, profile).to_dict()
    cfg = SearchConfig.from_dict({**base, "space_options": {"widths": [16], "depths": [1],
                                                            "skeletons": ["anchor+clip+linear", "anchor"]}})
    space = cfg.search_space()
    assert space.widths == (16,) and space.depths == (1,) and space.skeletons == ("anchor", "anchor+clip+linear")
    summary = run_search(cfg, progress=False)
    assert summary["evaluated"] == 4
    _, study = run_store.open_run(cfg.run_dir)
    nets = [parse_genotype(r.genotype) for r in run_store.trial_records(study)]
    assert nets and all(n.n_feats == 16 and n.n_cells == 1 and n.upsampler == "anchor" and n.clip == n.linear
                        for n in nets)
    assert "space_options" not in _tiny_config(tmp_path, profile).to_dict()  # whole-space runs: records unchanged
    for bad, msg in [({"widths": [40]}, "subset"), ({"widths": []}, "subset"), ({"kernels": [3]}, "unknown kernels")]:
        with pytest.raises(ValueError, match=msg):
            SearchConfig.from_dict({**base, "space_options": bad})
    with pytest.raises(ValueError, match="tpsr_plus"):
        SearchConfig.from_dict({**base, "space": "tpsr", "latency": [], "space_options": {"widths": [16]}})


# ------------------------------------------------------------------------------ the skip skeleton option
SKIP_NET = "w16 d2 anchor clip linear skip | conv3@in conv3@0 dsep3@1"


@pytest.mark.parametrize("upsampler", ["anchor", "tpsr"])
def test_skip_adds_the_head_output_to_the_cells_output(upsampler):
    net = NetworkGenotype(Genotype.parse("conv3@in dsep3@0"), 16, 2, upsampler, skip=True)
    assert str(net).split("|")[0].split()[-1] == "skip" and NetworkGenotype.parse(str(net)) == net
    assert not net.is_default and net.genotype_text == str(net)
    torch.manual_seed(0)
    model = CellSR(net, 4).eval()
    plain = CellSR(NetworkGenotype(net.cell, 16, 2, upsampler), 4).eval()
    plain.load_state_dict(model.state_dict())  # no weights of its own
    x = torch.rand(1, 3, 8, 10)
    seen = {}

    def keep(name, what):
        def hook(module, inputs, output):
            seen[name] = output if what == "out" else inputs[0]  # returns None: the output stays
        return hook

    model.head.register_forward_hook(keep("h", "out"))
    model.cell_act.register_forward_hook(keep("c", "out"))
    (model.tail if upsampler == "anchor" else model.up).register_forward_hook(keep("into", "in"))
    with torch.no_grad():
        y = model(x)
        assert torch.allclose(seen["into"], seen["c"] + seen["h"])
        assert not torch.allclose(y, plain(x))
    assert model.config()["skip"] is True and CellSR(**model.config()).network == net
    # priced: Mult-Adds as measured, one more n-channel ADD than the plain network in the closed form
    size = (10, 14)
    assert mult_adds(net, 4, input_size=size) == pytest.approx(measure(model, size).mult_adds, rel=1e-9)
    assert mult_adds(net, 4, input_size=size) - mult_adds(plain.network, 4, input_size=size) == sum_macs(16, *size) > 0
    (add,) = [p for p in skeleton_parts(4, 16, size, upsampler) if p.per == "extra leaf"]
    assert add.count(net) == add.count(plain.network) + 1


def test_skip_network_collapses_exports_and_is_priced_one_add_more():
    pytest.importorskip("litert_torch", reason="needs the TFLite converter")
    from tinysr.export.flatbuffer import op_rows
    from tinysr.models.mobile import deploy
    from tinysr.profile.lut import SKELETONS, LatencyTable, convert_network
    from tinysr.search import PlusSpace

    net = parse_genotype(SKIP_NET)
    assert net.deployed().skip and not net.deployed().linear
    torch.manual_seed(0)
    model = CellSR(net, 4).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    deployed = deploy(model)
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert deployed.skip and torch.allclose(deployed(x), model(x), atol=1e-5)
    unskipped = parse_genotype(SKIP_NET.replace(" skip", ""))
    adds = {g: [t for t, _, _ in op_rows(convert_network(CellSR(g, 4).eval(), (8, 12)))].count("ADD")
            for g in (net, unskipped)}
    assert adds[net] == adds[unskipped] + 1
    table = LatencyTable(fake_plus_table(), "plus.json")
    add_ms = table.entries[[p for p in table.parts if p.per == "extra leaf"][0].key]
    assert table.predict(net) == pytest.approx(table.predict(unskipped) + add_ms)
    assert sum(ms for _, _, ms in table.breakdown(net)) == pytest.approx(table.predict(net))
    # a search space may name it: encode / decode keep it
    space = PlusSpace(3, OP_NAMES, skeletons=("anchor+clip+linear", "anchor+clip+linear+skip"))
    assert space.decode(space.encode(net)) == net and SKELETONS["anchor+clip+linear+skip"][3]


def test_space_options_may_name_a_skeleton_outside_the_default_choices(tmp_path):
    from tinysr.search.generator.config import SearchConfig

    base = _tiny_config(tmp_path, None).to_dict()
    cfg = SearchConfig.from_dict({**base, "space_options": {"skeletons": ["anchor+clip+linear+skip",
                                                                          "anchor+clip+linear"]}})
    assert cfg.search_space().skeletons == ("anchor+clip+linear", "anchor+clip+linear+skip")
    ops = SearchConfig.from_dict({**base, "space_options": {"ops": ["identity", "conv3"]}}).search_space()
    assert ops.ops == ("conv3", "identity") and ops.num_decisions == 3 + 2 * ops.num_nodes
    drawn = {n.op for v in ops.sample(np.random.default_rng(0), 20) for n in ops.decode(v).nodes}
    assert drawn == {"conv3", "identity"}
    with pytest.raises(ValueError, match="subset"):
        SearchConfig.from_dict({**base, "space_options": {"ops": ["conv9"]}}).search_space()
    with pytest.raises(ValueError, match="subset"):
        SearchConfig.from_dict({**base, "space_options": {"skeletons": ["anchor+skip"]}}).search_space()


def test_search_without_weight_sharing_scores_every_candidate_from_fresh_weights(tmp_path, monkeypatch):
    from tinysr.data.proxy import ProxyData
    from tinysr.search.core import run_store
    from tinysr.search.generator.config import SearchConfig
    from tinysr.search.generator.driver import run_search
    from tinysr.search.generator.proxy import evaluate_candidate

    profile = tmp_path / "plus.json"
    profile.write_text(json.dumps(fake_plus_table()))
    _small_space(monkeypatch)
    base = _tiny_config(tmp_path, profile).to_dict()
    assert "weight_sharing" not in base  # the default: records as before the option existed
    cfg = SearchConfig.from_dict({**base, "weight_sharing": False, "run_dir": str(tmp_path / "fresh")})
    assert cfg.to_dict()["weight_sharing"] is False
    run_search(cfg, progress=False)
    _, study = run_store.open_run(cfg.run_dir)
    recs = [r for r in run_store.trial_records(study) if r.psnr is not None]
    data = ProxyData.load(cfg.proxy, progress=False)
    assert len(recs) == 4
    for r in recs[-2:]:  # later candidates too: nothing inherited from the store
        assert evaluate_candidate(r.genotype, None, cfg.proxy, data, threads=1).psnr == pytest.approx(r.psnr, abs=1e-6)
    shared = SearchConfig.from_dict({**base, "run_dir": str(tmp_path / "shared")})
    run_search(shared, progress=False)
    _, study = run_store.open_run(shared.run_dir)
    later = [r for r in run_store.trial_records(study) if r.psnr is not None][-1]
    assert evaluate_candidate(later.genotype, None, cfg.proxy, data, threads=1).psnr != pytest.approx(later.psnr,
                                                                                                   abs=1e-6)
