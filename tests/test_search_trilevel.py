"""The trilevel search (tinysr.search.trilevel.supernet / trilevel, tinysr.models.trilevel): the genotype and
its network, the supernet's tree, expected cost and derivation, the trilevel latency table, and
``tinysr search trilevel`` end to end with kill -9 and --resume. Training images are synthetic
(written by the tests), so nothing here needs ../shared."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import rng_image
from tinysr.complexity import measure
from tinysr.imageio import save_image
from tinysr.models.trilevel import TrilevelGenotype, TrilevelSR, mult_adds, network_parts, space_parts
from tinysr.search.trilevel.supernet import CostModel, SpaceSpec, Supernet, parent_pairs, tree
from tinysr.search.trilevel import TrilevelConfig, run_trilevel
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*-trilevel.json"))


# ----------------------------------------------------------------------------- genotype
@pytest.mark.parametrize("text", ["A res3:8+conv3 mb3:48 up res3:16+skip up", "B res3:16+conv3 mb3:32+skip up",
                                  "B up", "A up up", "A dsep5 up"])
def test_genotype_round_trip_and_closed_form_mult_adds(text):
    g = TrilevelGenotype.parse(text)
    assert str(g) == text and TrilevelGenotype.parse(str(g)) == g
    scale = g.scale_of(4 if g.backbone == "B" else None)
    model = TrilevelSR(g, scale, 16)
    assert model(torch.rand(1, 3, 10, 12)).shape == (1, 3, 10 * scale, 12 * scale)
    assert mult_adds(g, scale, 16, (10, 12)) == measure(model, (10, 12)).mult_adds


@pytest.mark.parametrize("text, error", [
    ("B res3:8 up up", "upsamples once"), ("A res3:8", "ends with 'up'"), ("A res3 up", "hidden width"),
    ("A conv3:16 up", "no hidden width"), ("A nope up", "unknown trilevel operation"), ("C up", "backbone"),
])
def test_genotype_errors(text, error):
    with pytest.raises(ValueError, match=error):
        TrilevelGenotype.parse(text)


def test_genotype_scale_checked():
    with pytest.raises(ValueError, match="not x4"):
        TrilevelSR("A up", 4)


# ----------------------------------------------------------------------------- supernet
def spec(backbone="A", cells=(2, 1), ops=("skip", "conv3", "res3", "mb3")):
    return SpaceSpec(backbone, 4, 8, tuple(cells), 2, tuple(ops), (0.5, 1.0))


def test_tree_outputs_and_ordering_pairs():
    outputs, paths = tree(spec())
    assert outputs == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert [e.kind for e in paths[(2, 1)]] == ["cell", "cell", "up", "cell", "tail"]
    pairs = parent_pairs(outputs)
    # (k, m) -> (k, m + 1) along the 2x chain, (k, 0) -> (k + 1, 0) along the LR trunk
    assert sorted(pairs) == [(0, 1), (0, 2), (2, 3), (2, 4), (4, 5)]
    outs_b, _ = tree(spec("B", (3,)))
    assert outs_b == [(0,), (1,), (2,), (3,)] and parent_pairs(outs_b) == [(0, 1), (1, 2), (2, 3)]


def _one_hot_arch(net: Supernet, output: int, seed: int = 0):
    """Architecture logits whose sparsestmax / softmax weights are (near) one-hot at r = 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.arch["beta"].zero_()
        net.arch["beta"][output] = 5.0
        net.arch["alpha"].copy_(torch.randn(net.arch["alpha"].shape, generator=g) * 3)
        gamma = net.arch["gamma"]
        pick = torch.randint(gamma.shape[-1], gamma.shape[:-1], generator=g)
        gamma.copy_(torch.nn.functional.one_hot(pick, gamma.shape[-1]).float() * 100)
    net.r_network = net.r_cell = 1.0


@pytest.mark.parametrize("backbone, cells", [("A", (2, 1)), ("B", (3,))])
def test_expected_cost_equals_derived_network_cost_at_one_hot(backbone, cells):
    torch.manual_seed(0)
    net = Supernet(spec(backbone, cells))
    cost = CostModel(net.spec, (20, 24))
    for output in range(len(net.outputs)):
        _one_hot_arch(net, output, seed=output)
        genotype, how = net.derive()
        assert how["output"] == list(net.outputs[output])
        expected = float(net.expected_cost(cost).detach())
        assert expected == pytest.approx(cost.of_genotype(genotype), rel=1e-5)
        assert cost.of_genotype(genotype) * 1e9 == pytest.approx(mult_adds(genotype, 4, 8, (20, 24)), rel=1e-9)


def test_derived_cost_prices_what_derivation_returns_with_the_expected_cost_gradient():
    torch.manual_seed(0)
    net = Supernet(spec("B", (3,), ops=("conv3", "res3", "mb3")))
    net.r_network = net.r_cell = 0.0  # the search's start: every output and operation weighted
    cost = CostModel(net.spec, (20, 24))
    genotype, how = net.derive()
    assert how["output"] == [3]  # the deepest output survives at the start
    expected = net.expected_cost(cost)
    derived = net.derived_cost(cost)
    assert float(derived.detach()) == pytest.approx(cost.of_genotype(genotype), rel=1e-6)
    assert float(derived.detach()) > float(expected.detach())  # the mixture weighs in the shallow outputs
    grads = {}
    for name, value in (("expected", expected), ("derived", derived)):
        net.zero_grad(set_to_none=True)
        (value if name == "derived" else net.expected_cost(cost)).backward()
        grads[name] = {k: p.grad.clone() for k, p in net.arch.items() if p.grad is not None}
    assert set(grads["derived"]) == {"beta", "alpha", "gamma"}
    assert all(torch.allclose(grads["derived"][k], grads["expected"][k]) for k in grads["expected"])
    # a budget between the two binds on the derived network only (the demo's failure: it never bound)
    from types import SimpleNamespace

    from tinysr.search.trilevel import TrilevelSearch

    budget = 0.5 * (float(expected.detach()) + float(derived.detach()))
    hinge = SimpleNamespace(cfg=SimpleNamespace(efficiency_budget=budget), budget=budget)
    assert float(TrilevelSearch.efficiency_term(hinge, expected)) == 0.0
    assert float(TrilevelSearch.efficiency_term(hinge, derived)) > 0.0


def test_a_budget_on_the_derived_network_makes_the_search_return_a_cheaper_one(tmp_path):
    from tinysr.search.trilevel import run_trilevel

    results = {}
    for price in ("expected", "derived"):
        base = _config(tmp_path, cells=[3], ops=["conv3", "res3"], r_network=[0.0, 0.9], epochs=4,
                       efficiency_weight=20.0, run_dir=str(tmp_path / price), efficiency_price=price)
        probe = TrilevelConfig.from_dict(base)
        torch.manual_seed(probe.seed)  # the search's initial supernet
        net = Supernet(probe.space())
        cost = CostModel(net.spec, tuple(probe.input_size))
        with torch.no_grad():
            start, mixture = float(net.derived_cost(cost)), float(net.expected_cost(cost))
        # a budget between the mixture's expected cost and the initial derived network's cost
        assert mixture < start
        cfg = TrilevelConfig.from_dict({**base, "efficiency_budget": 0.5 * (start + mixture)})
        results[price] = run_trilevel(cfg, progress=False)
        results[price]["start"] = start
    mult = {k: v["mult_adds"] / 1e9 for k, v in results.items()}
    assert mult["derived"] < mult["expected"]
    assert mult["derived"] < results["derived"]["start"]


def test_supernet_forward_gradients_and_sparse_compute():
    torch.manual_seed(0)
    net = Supernet(spec())
    net.r_network, net.r_cell = 0.3, 0.3
    x = torch.rand(2, 3, 8, 8)
    y = net(x, torch.Generator().manual_seed(0))
    assert y.shape == (2, 3, 32, 32)
    cost = net.expected_cost(CostModel(net.spec, (20, 24)))
    (y.mean() + cost + net.order_penalty()).backward()
    for name in ("beta", "alpha", "gamma"):
        grad = net.arch[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # a one-hot output weight computes only its own path: the other outputs' tails get no gradient
    net.zero_grad(set_to_none=True)
    _one_hot_arch(net, 1)
    net(x).mean().backward()
    used = {k for k, m in net.tails.items() if any(p.grad is not None for p in m.parameters())}
    assert used == {"s0_1"}


def test_derive_prunes_the_zero_tail():
    torch.manual_seed(0)
    net = Supernet(spec("B", (3,)))
    with torch.no_grad():
        net.arch["beta"].copy_(torch.tensor([1.0, 0.9, 0.8, -3.0]))  # sorted along the chain, the last is zero
    net.r_network = 0.0
    w = net.output_weights().detach()
    assert float(w[3]) == 0.0 and float(w[2]) > 0.0
    genotype, how = net.derive()
    assert how["kept_outputs"] == [[0], [1], [2]] and how["sorted"]
    assert how["output"] == [2] and len(genotype.cells) == 2  # every cell the weighted sum used


# ----------------------------------------------------------------------------- latency table
_main = run_cli  # tinysr ARGS in this process


def test_trilevel_table_covers_the_space_and_predicts_the_sum_of_parts(capsys):
    if not PROFILES:
        pytest.fail("profiles/ holds no trilevel latency table (tinysr lut build --space trilevel)")
    from tinysr.profile.lut import SPACES, LatencyTable, TrilevelTable

    table = LatencyTable.load(PROFILES[0])
    assert isinstance(table, TrilevelTable)
    sp = SPACES["trilevel"]
    keys = {p.key for p in space_parts(table.n, (table.h, table.w), table.scale, sp["ops"], sp["ratios"])}
    assert keys <= set(table.entries)
    g = TrilevelGenotype.parse("A res3:16+conv3 mb3:32 up res3:8 up")
    parts = network_parts(g, table.n, (table.h, table.w), table.scale)
    assert table.predict(g) == pytest.approx(table.overhead_ms + sum(table.entries[p.key] for p in parts))
    s = SpaceSpec("A", table.scale, table.n, (2, 1), 2, ("skip", "conv3", "res3", "mb3"), (0.5, 1.0, 1.5))
    assert CostModel(s, table=table).of_genotype(g) == pytest.approx(table.predict(g))
    with pytest.raises(ValueError, match="trilevel space"):
        from tinysr.genotype import TPSR_GENOTYPE

        table.predict(TPSR_GENOTYPE)
    code, out, err = _main(capsys, "lut", "predict", g, "--profile", PROFILES[0], "--json")
    assert code == 0, err
    assert json.loads(out)["predicted_ms"] == pytest.approx(table.predict(g))


def test_build_lut_trilevel_space(tmp_path, monkeypatch):
    """The real table builder on a small trilevel space: converted parts, timed, overhead from 'B up'."""
    from tinysr.profile import lut

    monkeypatch.setitem(lut.SPACES, "trilevel", {"n_feats": 4, "ops": ("skip", "res3"), "ratios": (1.0,)})
    data = lut.build_lut(space="trilevel", input_size=(8, 8), scale=2, runs=3, warmup=1, rounds=1, time_limit=0)
    table = lut.open_table(data)
    assert data["space"] == "trilevel" and data["overhead"]["reference_genotype"] == "B up"
    # timed against 'B up' itself: its relative cost is 1, the overhead 1 minus its parts' relative costs
    assert data["reference"]["genotype"] == "B up" and data["overhead"]["reference_rel"] == 1.0 and table.relative
    assert all(v["median_ms"] > 0 for v in data["entries"].values())
    g = TrilevelGenotype.parse("A res3:4 up")
    assert table.predict(g) > table.predict(TrilevelGenotype.parse("A up"))
    assert lut.default_lut_name(data).endswith("-trilevel.json")
    # validated as a TPSR table is: random trilevel networks timed with the reference in every round
    from tinysr.profile.predict import sample_genotypes, validate

    res = validate(data, samples=3, seed=2, runs=3, warmup=1, rounds=2)
    genos = sample_genotypes(3, 2, "trilevel", scale=2)
    assert [r["genotype"] for r in res["rows"]] == [str(g) for g in genos]
    assert all(isinstance(g, TrilevelGenotype) and g.scale_of(2) == 2 for g in genos)
    assert {n.op for g in genos for c in g.cells for n in c} <= {"res3"}
    for r in res["rows"]:
        assert r["measured_ms"] > 0 and r["predicted_ms"] == pytest.approx(table.predict(r["genotype"]))
        assert r["rel_error_pct"] == pytest.approx((r["predicted_rel"] - r["measured_rel"]) / r["measured_rel"] * 100)
    assert res["comparison"] == "relative" and res["reference"]["genotype"] == "B up" and res["stats"]["n"] == 3
    with pytest.raises(ValueError, match="trilevel space"):
        validate(data, samples=1, space="tpsr")


# ----------------------------------------------------------------------------- the search
def _images(folder: Path, count: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        save_image(folder / f"img{i}.png", rng_image(64, 72, seed=i))
    return folder


def _config(tmp_path: Path, **over) -> dict:
    cfg = {"run_dir": str(tmp_path / "run"), "seed": 0, "backbone": "B", "scale": 4, "n_feats": 8, "cells": [2],
           "nodes": 1, "ops": ["skip", "conv3", "res3"], "width_ratios": [0.5, 1.0], "efficiency": "flops",
           "input_size": [32, 32], "efficiency_weight": 0.5, "r_network": [0.0, 0.5], "r_cell": [0.0, 1.0],
           "epochs": 3, "warmup_epochs": 1, "ckpt_every": 1, "threads": 1,
           "proxy": {"train_data": [str(_images(tmp_path / "hr"))], "scale": 4, "val_images": 2, "val_size": 12,
                     "patch_size": 8, "batch_size": 2, "steps": 4, "lr": 2e-3, "seed": 0}}
    cfg.update(over)
    return cfg


def test_search_end_to_end(tmp_path):
    import warnings

    cfg = TrilevelConfig.from_dict(_config(tmp_path, backbone="A", cells=[1, 1], efficiency="flops"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_trilevel(cfg, progress=False)
    assert not [w for w in caught if "requires_grad" in str(w.message)]  # no tensor-to-scalar warning per step
    run = Path(cfg.run_dir)
    g = TrilevelGenotype.parse(result["genotype"])
    model = TrilevelSR(g, 4, 8)
    assert result["params"] == sum(p.numel() for p in model.parameters())
    assert result["mult_adds"] == pytest.approx(mult_adds(g, 4, 8, (32, 32)))
    assert math.isfinite(result["supernet_val_psnr"])
    rows = (run / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + cfg.epochs
    history = json.loads((run / "history.json").read_text())
    assert len(history) == cfg.epochs and history[-1]["r_cell"] == pytest.approx(1.0)
    # at the end r_cell = 1: every node's op weights are one-hot
    assert all(max(node) == pytest.approx(1.0) for cell in history[-1]["a"] for node in cell)
    for png in ("arch_weights.png", "derived.png"):
        assert (run / png).stat().st_size > 5000
    from tinysr.search.trilevel import format_run

    shown = format_run(run).splitlines()
    assert shown[-1] == (f"derived: {result['genotype']} ({result['params']} params, "
                         f"{result['mult_adds'] / 1e9:.3f} G Mult-Adds)")
    assert len(shown) == 2 + cfg.epochs + 1
    with pytest.raises(FileExistsError, match="--resume"):
        run_trilevel(cfg, progress=False)
    # search show --plots redraws both figures of a trilevel run
    from tinysr.cli.main import main

    assert main(["search", "show", str(run), "--plots", str(tmp_path / "plots")]) == 0
    for png in ("arch_weights.png", "derived.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 5000


def test_arch_weight_plot_labels_widths_and_skips_ops_without_one():
    """The kernel-level curves: one per node on the derived path whose chosen op has a width,
    labelled with the width as the genotype writes it (mb3:48, not "ratio #2")."""
    from tinysr.search.trilevel import arch_weight_series

    snap = {"epoch": 1, "outputs": [[1], [2]], "w": [0.3, 0.7], "ops": ["conv3", "res3", "mb3"],
            "ratios": [0.5, 1.0, 1.5], "n_feats": 16, "cells": [[1], [2]], "output": [2],
            # cell 1: node 0 conv3 (no width), node 1 mb3; cell 2: node 0 res3, node 1 conv3
            "a": [[[0.8, 0.1, 0.1], [0.0, 0.2, 0.8]], [[0.1, 0.9, 0.0], [1.0, 0.0, 0.0]]],
            "p": [[[0.2, 0.3, 0.5], [0.1, 0.2, 0.7]], [[0.6, 0.3, 0.1], [0.3, 0.3, 0.4]]]}
    series = arch_weight_series([snap, {**snap, "epoch": 2}])
    assert [label for label, _ in series["cell"]] == ["cell 1 node 0: conv3", "cell 1 node 1: mb3",
                                                      "cell 2 node 0: res3", "cell 2 node 1: conv3"]
    assert series["kernel"] == [("cell 1 node 1: mb3:48", [0.7, 0.7]), ("cell 2 node 0: res3:8", [0.6, 0.6])]
    old = {k: v for k, v in snap.items() if k != "n_feats"}  # a history written before n_feats was recorded
    assert [lab for lab, _ in arch_weight_series([old])["kernel"]] == ["cell 1 node 1: x1.5", "cell 2 node 0: x0.5"]
    assert [lab for lab, _ in arch_weight_series([old], n_feats=16)["kernel"]][0] == "cell 1 node 1: mb3:48"


def test_search_with_latency_table_and_teacher(tmp_path):
    if not PROFILES:
        pytest.fail("profiles/ holds no trilevel latency table (tinysr lut build --space trilevel)")
    from tinysr.checkpoint import save_checkpoint

    teacher = tmp_path / "teacher.pt"
    torch.manual_seed(1)
    save_checkpoint(teacher, TrilevelSR("B res3:8 up", 4, 8))
    # the table was measured for 16-channel networks
    cfg = TrilevelConfig.from_dict(_config(tmp_path, n_feats=16, efficiency="latency", profile=str(PROFILES[0]),
                                           teacher=str(teacher), epochs=2))
    result = run_trilevel(cfg, progress=False)
    from tinysr.profile.lut import LatencyTable

    assert result["predicted_latency_ms"] == pytest.approx(LatencyTable.load(PROFILES[0]).predict(result["genotype"]))


@pytest.mark.parametrize("change, error", [
    ({"cells": [2, 1]}, "resolution level"), ({"efficiency": "latency"}, "needs a profile"),
    ({"efficiency_band": 0.9}, "needs an efficiency_budget"),
    ({"efficiency_band": 1.2, "efficiency_budget": 1.0}, "fraction"),
    ({"efficiency_price": "mixture"}, "efficiency_price"),
    ({"r_cell": [0.0, 1.5]}, "r_cell"), ({"warmup_epochs": 3}, "warmup_epochs"), ({"ops": ["conv3", "conv3"]}, "once"),
    ({"width_ratios": [1.0, 0.5]}, "increasing"), ({"bogus": 1}, "unknown key"),
])
def test_config_errors(tmp_path, change, error):
    with pytest.raises(ValueError, match=error):
        TrilevelConfig.from_dict(_config(tmp_path, **change))


def test_a_missing_profile_names_the_config_and_key(tmp_path, capsys):
    path = tmp_path / "tri.yaml"
    import yaml

    path.write_text(yaml.safe_dump(_config(tmp_path, efficiency="latency", profile="profiles/nope.json")))
    code, out, err = _main(capsys, "search", "trilevel", "--config", path, "-q")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{path}: profile: no latency table profiles/nope.json" in err and "Errno" not in err
    assert not (tmp_path / "run").exists()


def _final_state(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)


def test_kill_and_resume_is_bit_identical(tmp_path, capsys):
    import yaml

    base = _config(tmp_path, epochs=3)
    ref_cfg = TrilevelConfig.from_dict({**base, "run_dir": str(tmp_path / "ref")})
    ref = run_trilevel(ref_cfg, progress=False)

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(base))
    run = Path(base["run_dir"])
    cmd = [sys.executable, "-m", "tinysr.cli.main", "search", "trilevel", "--config", str(cfg_path), "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, killed = time.time() + 240, None
    while time.time() < deadline and proc.poll() is None:
        try:
            step = _final_state(run)["step"]
        except Exception:  # not written yet, or caught mid-rename
            step = 0
        if step >= 6:  # mid-way through the second epoch (4 steps each), architecture steps running
            os.kill(proc.pid, signal.SIGKILL)
            killed = step
            break
        time.sleep(0.01)
    proc.wait()
    assert killed is not None and killed < 12, proc.stderr.read().decode()[-2000:]
    code, out, err = _main(capsys, *cmd[3:], "--resume")  # the resume in this process
    assert code == 0, err[-2000:]
    a, b = _final_state(Path(ref_cfg.run_dir)), _final_state(run)
    assert a["step"] == b["step"] == 12
    for k in a["net"]:
        assert torch.equal(a["net"][k], b["net"][k]), k
    assert json.loads((run / "result.json").read_text())["genotype"] == ref["genotype"]
    # log.csv: the epoch the kill cut has the means of all its steps (its sums were checkpointed), as
    # the uninterrupted run's; only the seconds differ
    import csv

    def log(folder):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader((folder / "log.csv").open())]

    assert len(log(run)) == 3 and log(run) == log(Path(ref_cfg.run_dir))
    with pytest.raises(ValueError, match="another config"):
        run_trilevel(TrilevelConfig.from_dict({**base, "order_weight": 2.0}), resume=True, progress=False)


def test_train_and_export_a_derived_network(tmp_path, capsys):
    """A derived genotype goes through tinysr train and tinysr export (TFLite, verified against PyTorch),
    the commands in this process."""
    g = "A res3:8+conv3 mb3:16 up skip up"
    out = tmp_path / "train"
    code, _, err = _main(capsys, "train", "--model", "trilevel_x4", "--genotype", g, "--train-data",
                         _images(tmp_path / "hr"), "--out-dir", out, "--steps", "3", "--set", "patch_size=8",
                         "--set", "batch_size=2", "--set", "workers=0", "-q")  # no data-loader processes forked
    assert code == 0, err[-2000:]
    from tinysr.checkpoint import load_model

    model = load_model(str(out / "last.pt"))
    assert str(model.genotype) == g
    code, _, err = _main(capsys, "export", "--model", out / "last.pt", "--target", "tflite", "--input-size", "16x16",
                         "-o", tmp_path / "m.tflite")
    assert code == 0, err[-2000:]
    assert (tmp_path / "m.tflite").stat().st_size > 1000
    code, _, err = _main(capsys, "train", "--genotype", g, "--steps", "1", "--train-data", tmp_path / "hr",
                         "--out-dir", tmp_path / "x", "-q")
    assert code == 2 and "trilevel_x4" in err and err.count("\n") == 1, err


def test_efficiency_term_linear_and_budget_hinge():
    from types import SimpleNamespace

    from tinysr.search.trilevel import TrilevelSearch

    linear = SimpleNamespace(cfg=SimpleNamespace(efficiency_budget=None), budget=80.0)
    hinge = SimpleNamespace(cfg=SimpleNamespace(efficiency_budget=50.0), budget=50.0)
    assert float(TrilevelSearch.efficiency_term(linear, torch.tensor(40.0))) == pytest.approx(0.5)
    assert float(TrilevelSearch.efficiency_term(hinge, torch.tensor(40.0))) == 0.0
    assert float(TrilevelSearch.efficiency_term(hinge, torch.tensor(60.0))) == pytest.approx(0.2)
    band = SimpleNamespace(cfg=SimpleNamespace(efficiency_budget=50.0, efficiency_band=0.9), budget=50.0)
    assert float(TrilevelSearch.efficiency_term(band, torch.tensor(47.0))) == 0.0
    assert float(TrilevelSearch.efficiency_term(band, torch.tensor(40.0))) == pytest.approx(0.1)
    assert float(TrilevelSearch.efficiency_term(band, torch.tensor(60.0))) == pytest.approx(0.2)
