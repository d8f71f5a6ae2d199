"""Latency tables of the search space: build (tiny sizes), calibrate, predict, measure, validate, CLI.

These tests build their own tiny table in a temporary folder; they never read the measured
profiles in ``profiles/``.
"""
import json
import random
import time

import numpy as np
import pytest

from tinysr.genotype import TPSR_GENOTYPE, Genotype
from tinysr.ops import OPS
from tinysr.profile.lut import FORMAT, LatencyTable, default_lut_name, fit_calibration, skeleton_layout
from tinysr.profile.predict import (calibration_genotypes, error_stats, measure_latency, predict_latency,
                                    sample_genotypes)

SIZE = (16, 16)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    """A tiny table built (and calibrated on 3 networks) through the CLI: 16 x 16, x4, 1 thread, few runs."""
    from tinysr.cli.main import main

    d = tmp_path_factory.mktemp("lut")
    out = d / "tiny.json"
    rc = main(["lut", "build", "--device", "host", "--runtime", "litert", "--space", "tpsr", "--input-size", "16x16",
               "--scale", "4", "--threads", "1", "--warmup", "1", "--runs", "3", "--cache-dir", str(d / "cache"),
               "--calibration-networks", "3", "--time-limit", "1", "-o", str(out), "-q"])
    assert rc == 0
    return out


def _uncalibrated(path) -> dict:
    data = json.loads(path.read_text())
    data.pop("calibration")
    return data


def test_table_covers_the_whole_search_space(lut):
    data = json.loads(lut.read_text())
    assert data["format"] == FORMAT and data["space"] == "tpsr"
    assert data["input_size"] == [16, 16] and data["scale"] == 4 and data["n_feats"] == 16
    h, w = SIZE
    for name, spec in OPS.items():
        e = data["entries"][spec.latency_key(16, h, w)]
        assert e["median_ms"] > 0 and e["p90_ms"] >= e["median_ms"] and e["runs"] >= 3, name
    lay = skeleton_layout(16, h, w, 4)
    assert lay == data["skeleton"]
    assert lay["up"] == ["skeleton.up_c16_16x16", "skeleton.up_c3_32x32"]
    assert lay["add_mean"] == "skeleton.addmean_c3_64x64"
    for key in [lay["head"], lay["cell_act"], lay["leaf_add"], *lay["up"], lay["add_mean"]]:
        assert data["entries"][key]["median_ms"] > 0
    assert len(data["entries"]) == len(OPS) + 6
    # header: device, runtime and versions, when and how
    assert data["device"]["kind"] == "host" and data["device"]["cpu"] and data["device"]["cores"] >= 1
    assert data["device"]["threads"] == 1 and data["runtime"]["threads"] == 1
    assert data["runtime"]["name"] == "litert" and data["runtime"]["delegate"] == "xnnpack"
    assert {"ai-edge-litert", "litert-torch", "torch"} <= set(data["runtime"]["versions"])
    assert data["date"] and "median" in data["method"]
    ov = data["overhead"]
    assert ov["reference_genotype"] == "identity@in"
    assert ov["ms"] == pytest.approx(ov["reference_ms"] - ov["reference_parts_ms"])
    # calibrated on the TPSR cell + 2 random networks, every measurement kept
    cal = data["calibration"]
    assert [n["genotype"] for n in cal["networks"]] == [str(g) for g in calibration_genotypes(3)]
    assert cal["networks"][0]["genotype"] == str(TPSR_GENOTYPE)
    assert cal["op_scale"] >= 0 and cal["runs"] >= 3 and cal["before"]["n"] == cal["after"]["n"] == 3
    assert cal["timed"] == "timed in the same interleaved rounds as the entries"
    assert cal["clock"] == data["clock"] == "wall"
    table = LatencyTable(data)
    for n in cal["networks"]:
        g = Genotype.parse(n["genotype"])
        assert n["measured_ms"] > 0 and n["table_ms"] == pytest.approx(table.predict_uncalibrated(g))
        assert n["calibrated_ms"] == pytest.approx(table.predict(g))


def test_predict_is_the_sum_of_entries(lut):
    data = _uncalibrated(lut)
    ref_ms = data["reference"]["ms"]  # relative entries x the reference network's recorded time
    e = {k: v["rel"] * ref_ms for k, v in data["entries"].items()}
    lay = data["skeleton"]
    skeleton = e[lay["head"]] + e[lay["cell_act"]] + sum(e[k] for k in lay["up"]) + e[lay["add_mean"]]
    rng = random.Random(3)
    for g in [TPSR_GENOTYPE] + [Genotype.random(10, rng) for _ in range(20)]:
        by_hand = (data["overhead"]["rel"] * ref_ms + skeleton + sum(e[OPS[n.op].latency_key(16, 16, 16)] for n in g.nodes)
                   + (len(g.leaves) - 1) * e[lay["leaf_add"]])
        assert predict_latency(g, data) == pytest.approx(by_hand, rel=1e-12)
        assert predict_latency(str(g), data) == pytest.approx(by_hand, rel=1e-12)
        assert LatencyTable.load(lut).predict_uncalibrated(g) == pytest.approx(by_hand, rel=1e-12)
        table = LatencyTable(data)
        assert sum(ms for _, _, ms in table.breakdown(g)) == pytest.approx(by_hand, rel=1e-12)
    # a table of the first format (no calibration) still loads and predicts the plain sum
    data["format"] = "tinysr.lut/1"
    plain = LatencyTable(_uncalibrated(lut)).predict(TPSR_GENOTYPE)
    assert predict_latency(TPSR_GENOTYPE, data) == pytest.approx(plain)
    data["format"] = "tinysr.lut/0"
    with pytest.raises(ValueError, match="not a latency table"):
        LatencyTable(data)


def test_predict_applies_the_calibration(lut):
    data = _uncalibrated(lut)
    plain = LatencyTable(data)
    data["calibration"] = {"op_scale": 1.25, "network_ms": 0.75}
    table = LatencyTable(data)
    rng = random.Random(5)
    for g in [TPSR_GENOTYPE] + [Genotype.random(10, rng) for _ in range(10)]:
        base, cell = plain.cell_terms(g)
        assert base == pytest.approx(plain.overhead_ms + plain.skeleton_ms)
        assert cell + base == pytest.approx(plain.predict(g))
        assert predict_latency(g, data) == pytest.approx(base + 1.25 * cell + 0.75, rel=1e-12)
        assert table.predict_uncalibrated(g) == pytest.approx(plain.predict(g))
        rows = table.breakdown(g)
        assert sum(ms for _, _, ms in rows) == pytest.approx(table.predict(g), rel=1e-12)
        assert ("calibration: per-network term", "calibration.network_ms", 0.75) in rows


def test_predict_refuses_another_size_scale_or_width(lut):
    assert predict_latency(TPSR_GENOTYPE, lut, input_size=(16, 16), scale=4, n_feats=16) > 0
    with pytest.raises(ValueError, match="measured at 16x16, not 180x320"):
        predict_latency(TPSR_GENOTYPE, lut, input_size=(180, 320))
    with pytest.raises(ValueError, match="measured for x4, not x2"):
        predict_latency(TPSR_GENOTYPE, lut, scale=2)
    with pytest.raises(ValueError, match="16-channel cells, not 32"):
        predict_latency(TPSR_GENOTYPE, lut, n_feats=32)


def test_predict_throughput(lut):
    """Fast enough for a search's inner loop: >= 10,000 predictions per second (pure Python)."""
    rng = random.Random(0)
    genos = [Genotype.random(10, rng) for _ in range(200)]
    predict_latency(genos[0], lut)  # load + cache the table
    n = 20000
    t = time.perf_counter()
    for i in range(n):
        predict_latency(genos[i % 200], lut)
    rate = n / (time.perf_counter() - t)
    assert rate >= 10_000, f"{rate:.0f} predictions/s"


def test_measure_latency_host(lut):
    ms = measure_latency("conv3@in dsep3@0", input_size=SIZE, scale=4, threads=1, runs=3, warmup=1)
    assert 0 < ms < 1000
    ms = measure_latency(Genotype.parse("conv3@in"), runtime="onnxruntime", input_size=SIZE, scale=2, runs=3,
                         warmup=1)
    assert 0 < ms < 1000
    with pytest.raises(ValueError, match="host only"):
        measure_latency("conv3@in", device="adb:X", runtime="onnxruntime")


def test_validate_end_to_end(lut, tmp_path, capsys):
    from tinysr.cli.main import main

    js, png = tmp_path / "val.json", tmp_path / "val.png"
    rc = main(["lut", "validate", "--profile", str(lut), "--samples", "3", "--seed", "1", "--warmup", "1",
               "--runs", "3", "--json", str(js), "--plot", str(png), "--cache-dir", str(tmp_path / "c")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "median" in out and "p90" in out
    res = json.loads(js.read_text())
    assert res["samples"] == 3 and len(res["rows"]) == 3
    assert [r["genotype"] for r in res["rows"]] == [str(g) for g in sample_genotypes(3, 1)]
    for r in res["rows"]:
        assert r["measured_ms"] > 0
        assert r["predicted_ms"] == pytest.approx(predict_latency(r["genotype"], lut))
        assert r["error_pct"] == pytest.approx((r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] * 100)
    assert set(res["stats"]) >= {"median_abs_pct", "p90_abs_pct", "max_abs_pct", "mean_signed_pct", "within_10_pct"}
    assert res["input_size"] == [16, 16] and res["runtime"]["threads"] == 1
    assert png.read_bytes()[:8] == PNG
    # the table is calibrated: the plain sums are reported beside, from the same measurements
    table = LatencyTable(json.loads(lut.read_text()))
    assert res["calibration"]["op_scale"] == table.op_scale and res["calibration"]["networks_excluded"] == 3
    assert "uncalibrated" in out and res["stats_uncalibrated"]["n"] == 3
    for r in res["rows"]:
        assert r["uncalibrated_ms"] == pytest.approx(table.predict_uncalibrated(Genotype.parse(r["genotype"])))
    # the reference network, timed in every round with them: how the machine compares with build time
    ref = res["reference"]
    assert ref["genotype"] == str(TPSR_GENOTYPE) and ref["now_ms"] > 0
    assert ref["ratio"] == pytest.approx(ref["now_ms"] / table.data["reference"]["ms"])
    assert f"reference network {TPSR_GENOTYPE}" in out
    # relative (the default for a table with relative entries) and absolute comparisons, both reported
    assert res["comparison"] == "relative" and res["stats"] == res["stats_relative"]
    for key in ("stats_relative", "stats_absolute"):
        assert set(res[key]) >= {"median_abs_pct", "p90_abs_pct", "within_10_pct", "spearman"} and res[key]["n"] == 3
    assert res["stats_absolute"] == error_stats([r["predicted_ms"] for r in res["rows"]],
                                                [r["measured_ms"] for r in res["rows"]])
    for r in res["rows"]:
        assert r["measured_rel"] > 0 and r["measured_spread_pct"] >= 0
        assert r["predicted_rel"] == pytest.approx(r["predicted_ms"] / table.reference_ms)
        assert r["rel_error_pct"] == pytest.approx((r["predicted_rel"] - r["measured_rel"]) / r["measured_rel"] * 100)
    assert res["stats_relative"]["median_abs_pct"] == pytest.approx(
        error_stats([r["predicted_rel"] for r in res["rows"]], [r["measured_rel"] for r in res["rows"]])["median_abs_pct"])
    assert "relative cost" in out and "absolute ms" in out


def test_error_stats():
    s = error_stats([110, 90, 100, 150], [100, 100, 100, 100])
    assert s["median_abs_pct"] == pytest.approx(10.0) and s["max_abs_pct"] == pytest.approx(50.0)
    assert s["mean_signed_pct"] == pytest.approx(12.5) and s["n"] == 4
    assert s["within_10_pct"] == pytest.approx(75.0) and s["spearman"] == pytest.approx(0.4)
    assert error_stats([1.0, 2.0], [1.0, 2.0])["spearman"] is None  # too few to rank (and JSON has no NaN)


# ------------------------------------------------------------------------------- calibration
def test_fit_calibration_recovers_known_terms():
    rng = random.Random(0)
    base = [10.0 + rng.random() for _ in range(8)]
    cell = [20.0 + 60.0 * rng.random() for _ in range(8)]
    measured = [b + 1.08 * c + 1.5 for b, c in zip(base, cell)]  # ops 8 % slower in context, +1.5 ms per network
    fit = fit_calibration(base, cell, measured)
    assert fit["op_scale"] == pytest.approx(1.08, rel=1e-9) and fit["network_ms"] == pytest.approx(1.5, rel=1e-9)
    # +-1 % measurement noise: still close
    noisy = [m * (1 + 0.01 * (2 * rng.random() - 1)) for m in measured]
    fit = fit_calibration(base, cell, noisy)
    assert fit["op_scale"] == pytest.approx(1.08, abs=0.03) and fit["network_ms"] == pytest.approx(1.5, abs=1.5)
    # a pure per-network overhead (under-prediction by a constant)
    fit = fit_calibration(base, cell, [b + c + 4.0 for b, c in zip(base, cell)])
    assert fit["op_scale"] == pytest.approx(1.0) and fit["network_ms"] == pytest.approx(4.0)


def test_fit_calibration_edge_cases():
    # one network, or cell sums too alike to tell a scale from a constant: the constant alone (scale 1)
    assert fit_calibration([10.0], [30.0], [42.0]) == pytest.approx({"op_scale": 1.0, "network_ms": 2.0})
    fit = fit_calibration([10.0, 10.0, 10.0], [30.0, 30.3, 29.9], [43.0, 43.3, 42.9])
    assert fit["op_scale"] == 1.0 and fit["network_ms"] == pytest.approx(3.0, abs=1e-9)
    # a negative slope is not a time factor: clamped to 0, the constant takes the rest
    fit = fit_calibration([0.0, 0.0, 0.0], [10.0, 20.0, 30.0], [30.0, 20.0, 10.0])
    assert fit["op_scale"] == 0.0 and 10.0 < fit["network_ms"] < 30.0
    with pytest.raises(ValueError, match="positive"):
        fit_calibration([1.0, 1.0], [2.0, 3.0], [0.0, 4.0])
    with pytest.raises(ValueError, match="one base"):
        fit_calibration([1.0], [2.0, 3.0], [3.0, 4.0])


def test_calibration_networks_are_disjoint_from_validation_samples():
    cal = {str(g) for seed in range(3) for g in calibration_genotypes(10, seed)}
    assert len(cal) == 28  # the TPSR cell + 9 random ones per seed, all distinct
    for seed in range(5):  # validation seeds: another stream
        assert not cal & {str(g) for g in sample_genotypes(300, seed)}
    # and validation never samples a table's calibration networks, even if a seed would draw them
    drawn = sample_genotypes(5, 2)
    kept = sample_genotypes(5, 2, exclude=drawn[1:3])
    assert str(drawn[0]) == str(kept[0]) and not {str(g) for g in drawn[1:3]} & {str(g) for g in kept}
    # light to heavy cells: after the TPSR cell, increasing Mult-Adds over a wide range; the same everywhere
    genos = calibration_genotypes(6)
    macs = [g.mult_adds(16, 1, 1) for g in genos[1:]]
    assert macs == sorted(macs) and macs[-1] > 2 * macs[0]
    assert calibration_genotypes(6) == genos and calibration_genotypes(1) == [TPSR_GENOTYPE]
    with pytest.raises(ValueError, match="at least one"):
        calibration_genotypes(0)


def test_cli_lut_calibrate(lut, tmp_path, capsys):
    from tinysr.cli.main import main

    out = tmp_path / "recal.json"
    cache = lut.parent / "cache"
    assert main(["lut", "calibrate", "--profile", str(lut), "--networks", "2", "--seed", "1", "--warmup", "1",
                 "--runs", "2", "--rounds", "2", "--cache-dir", str(cache), "-o", str(out), "-q"]) == 0
    assert "calibrated on 2 networks" in capsys.readouterr().out
    data = json.loads(out.read_text())
    cal = data["calibration"]
    assert data["format"] == FORMAT and cal["seed"] == 1 and len(cal["networks"]) == 2 and cal["runs"] == 2
    assert [n["genotype"] for n in cal["networks"]] == [str(g) for g in calibration_genotypes(2, 1)]
    assert cal["timed"].startswith("timed after the entries")
    assert data["entries"] == json.loads(lut.read_text())["entries"]  # the entries are kept as measured


def test_sample_genotypes_distinct_and_seeded():
    a, b = sample_genotypes(30, 0), sample_genotypes(30, 0)
    assert a == b and len({str(g) for g in a}) == 30 and all(len(g.nodes) == 10 for g in a)


def test_cli_lut_predict(lut, capsys):
    from tinysr.cli.main import main

    assert main(["lut", "predict", "tpsr_x4", "--profile", str(lut)]) == 0
    out = capsys.readouterr().out
    assert "node 9: conv7@in" in out and "predicted latency" in out
    assert main(["lut", "predict", "conv3@in dsep5@0 se@in", "--profile", str(lut), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["predicted_ms"] == pytest.approx(predict_latency("conv3@in dsep5@0 se@in", lut))
    assert sum(t["ms"] for t in res["terms"]) == pytest.approx(res["predicted_ms"])
    assert main(["lut", "predict", "conv3@in", "--profile", str(lut), "--input-size", "16x16", "--scale", "4",
                 "--n-feats", "16"]) == 0
    assert "calibrated: node and leaf-sum entries x" in capsys.readouterr().out
    refused = [
        (["esrgan_x4"], "no genotype"),
        (["tpsr_x2"], "measured for x4, not x2"),  # the model's own scale
        (["conv3@in", "--scale", "2"], "measured for x4, not x2"),
        (["conv3@in", "--input-size", "180x320"], "measured at 16x16, not 180x320"),
        (["conv3@in", "--n-feats", "32"], "16-channel cells, not 32"),
        (["tpsr_x4", "--n-feats", "32"], "tpsr_x4 has 16-channel cells, not --n-feats 32"),
        (["tpsr_x4", "--scale", "2"], "tpsr_x4 is a x4 network, not --scale 2"),
        (["conv9@in"], "conv9"),
    ]
    for argv, msg in refused:
        assert main(["lut", "predict", *argv, "--profile", str(lut)]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tinysr: error: ") and msg in err[0], (argv, err)


def test_default_lut_name():
    d = {"device": {"kind": "host", "cpu": "AMD EPYC"}, "runtime": {"name": "litert", "delegate": "xnnpack",
                                                                    "threads": 2}}
    assert default_lut_name(d) == "host-amd-epyc-litert-2t.json"
    d["runtime"]["delegate"] = "cpu"
    assert default_lut_name(d) == "host-amd-epyc-litert-cpu-2t.json"


# ------------------------------------------------------------------ relative entries (drift cancels)
def _absolute_only(path) -> dict:
    """The fixture's table as a table of format 2 (before relative entries): no reference, no ``rel``."""
    data = json.loads(path.read_text())
    data["format"] = "tinysr.lut/2"
    data.pop("reference")
    for e in data["entries"].values():
        for k in ("rel", "spread_pct", "rounds"):
            e.pop(k)
    for k in ("rel", "reference_rel", "reference_parts_rel"):
        data["overhead"].pop(k)
    data["calibration"].pop("network_rel")
    return data


def _slow_host(monkeypatch, factor=1.5):
    """Simulate a host that runs every model ``factor`` times slower: the timing engine's wall clock stretched."""
    from tinysr.profile import host

    real = time.perf_counter
    monkeypatch.setitem(host.CLOCKS, "wall", lambda: real() * factor)


def test_table_holds_relative_entries_and_spreads(lut):
    data = json.loads(lut.read_text())
    assert data["format"] == FORMAT == "tinysr.lut/3"
    ref = data["reference"]
    assert ref["genotype"] == str(TPSR_GENOTYPE) and ref["ms"] > 0 and ref["p90_ms"] >= ref["ms"]
    assert ref["rounds"] >= 3 and ref["runs"] == 2 * ref["rounds"]  # opens and closes every round, 1 run each here
    assert ref["max_spread_pct"] == 3.0 and ref["time_limit_s"] == 1.0 and "p90 - p10" in ref["spread"]
    assert 0 < ref["seconds"] < 60
    spreads = []
    for key, e in data["entries"].items():
        assert e["rel"] > 0 and e["spread_pct"] >= 0 and 3 <= e["rounds"] <= ref["rounds"], key
        assert e["runs"] == e["rounds"]  # --runs 3 over 3 rounds: one timed run per round, more rounds than 3
        spreads.append(e["spread_pct"])
    assert ref["max_entry_spread_pct"] == pytest.approx(max(spreads))
    assert ref["unsettled"] == sorted(k for k, e in data["entries"].items() if e["spread_pct"] > 3.0)
    # the reference is the TPSR calibration network: relative cost 1 exactly, its absolute time the reference's
    cal = data["calibration"]["networks"]
    assert cal[0]["measured_rel"] == 1.0 and cal[0]["measured_ms"] == ref["ms"]
    assert all(n["measured_rel"] > 0 and n["measured_ref_ms"] == pytest.approx(n["measured_rel"] * ref["ms"])
               for n in cal)
    ov = data["overhead"]
    assert ov["rel"] == pytest.approx(ov["reference_rel"] - ov["reference_parts_rel"])
    assert data["calibration"]["network_rel"] == pytest.approx(data["calibration"]["network_ms"] / ref["ms"])
    table = LatencyTable(data)
    assert table.relative and table.reference_ms == table.table_reference_ms == ref["ms"] and table.speed_ratio == 1
    key = OPS["conv7"].latency_key(16, 16, 16)
    assert table.entries[key] == pytest.approx(data["entries"][key]["rel"] * ref["ms"])
    # a relative entry is the same cost as its absolute median, give or take this noisy tiny build
    assert 0.33 < table.entries[key] / data["entries"][key]["median_ms"] < 3


def test_relative_spread():
    from tinysr.profile.lut import relative_spread

    assert relative_spread([1.0]) is None and relative_spread([0.5, 0.5, 0.5]) == 0.0
    r = [0.9, 1.0, 1.1, 1.0, 1.0]
    assert relative_spread(r) == pytest.approx((1.06 - 0.94) / 1.0 * 100)


def test_measure_relative_rounds(lut):
    from tinysr.profile.lut import Timer

    cache = lut.parent / "cache"
    ref = (cache / f"{OPS['conv3'].latency_key(16, 16, 16)}.tflite").read_bytes()
    flats = [(cache / f"{OPS[op].latency_key(16, 16, 16)}.tflite").read_bytes() for op in ("conv1", "dsep3")]
    timer = Timer("host", warmup=1, runs=4)
    fixed = timer.measure_relative(flats + [ref], 2, rounds=2)  # no bound: 2 rounds of 2 runs
    assert [r["rounds"] for r in fixed] == [2, 2, 2] and [r["runs"] for r in fixed] == [4, 4, 8]
    assert fixed[2]["rel"] == 1.0 and fixed[2]["spread_pct"] == 0.0 and all(r["rel"] > 0 for r in fixed)
    # a loose bound: settled after 3 rounds (the fewest that settle); an unreachable one: rounds until the time limit
    loose = timer.measure_relative(flats + [ref], 2, rounds=2, max_spread=1e9, time_limit=60)
    assert [r["rounds"] for r in loose] == [3, 3, 3]
    t = time.monotonic()
    tight = timer.measure_relative(flats + [ref], 2, rounds=2, max_spread=1e-9, time_limit=0.5)
    assert 0.5 <= time.monotonic() - t < 30 and tight[0]["rounds"] > 3 and tight[0]["runs"] == 2 * tight[0]["rounds"]
    for bad, msg in [(dict(ref=5), "reference index"), (dict(ref=0, max_spread=0), "positive percentage"),
                     (dict(ref=0, time_limit=-1), "time limit")]:
        with pytest.raises(ValueError, match=msg):
            timer.measure_relative(flats, **bad)


def test_prediction_scales_with_the_reference_time(lut):
    data = json.loads(lut.read_text())
    table = LatencyTable(data)
    rng = random.Random(7)
    genos = [TPSR_GENOTYPE] + [Genotype.random(10, rng) for _ in range(10)]
    before = {str(g): table.predict(g) for g in genos}
    rel = {str(g): table.relative_cost(g) for g in genos}
    ms = table.reference_ms
    assert table.set_reference_ms(1.5 * ms) is table and table.speed_ratio == pytest.approx(1.5)
    for g in genos:
        assert table.predict(g) == pytest.approx(1.5 * before[str(g)], rel=1e-12)
        assert table.predict_uncalibrated(g) == pytest.approx(1.5 * LatencyTable(data).predict_uncalibrated(g))
        assert table.relative_cost(g) == pytest.approx(rel[str(g)], rel=1e-12)
        assert sum(ms_ for _, _, ms_ in table.breakdown(g)) == pytest.approx(table.predict(g), rel=1e-12)
    assert LatencyTable(data, reference_ms=3.0).predict(TPSR_GENOTYPE) == pytest.approx(3.0 * rel[str(TPSR_GENOTYPE)])
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number of ms"):
            table.set_reference_ms(bad)


def test_tables_without_relative_entries_load_and_predict_as_before(lut):
    data = _absolute_only(lut)
    table = LatencyTable(data)
    assert not table.relative and table.reference_ms is None and table.speed_ratio is None
    e = {k: v["median_ms"] for k, v in data["entries"].items()}
    lay = data["skeleton"]
    cal = data["calibration"]
    g = TPSR_GENOTYPE
    cell = sum(e[OPS[n.op].latency_key(16, 16, 16)] for n in g.nodes) + (len(g.leaves) - 1) * e[lay["leaf_add"]]
    skeleton = e[lay["head"]] + e[lay["cell_act"]] + sum(e[k] for k in lay["up"]) + e[lay["add_mean"]]
    want = data["overhead"]["ms"] + skeleton + cal["op_scale"] * cell + cal["network_ms"]
    assert table.predict(g) == pytest.approx(want, rel=1e-12) and predict_latency(g, data) == pytest.approx(want)
    for old in ("tinysr.lut/1", "tinysr.lut/2"):
        assert LatencyTable(dict(data, format=old)).predict(g) == pytest.approx(want)
    for call in (lambda: table.set_reference_ms(2.0), lambda: table.rescale(), lambda: table.relative_cost(g)):
        with pytest.raises(ValueError, match="no relative entries"):
            call()
    half = json.loads(lut.read_text())
    half["entries"][lay["head"]].pop("rel")
    with pytest.raises(ValueError, match="relative cost"):
        LatencyTable(half)


def test_rescale_follows_a_slower_host(lut, tmp_path, monkeypatch, capsys):
    from tinysr.cli.main import main
    from tinysr.profile.predict import load_table, rescale_table

    cache = str(lut.parent / "cache")
    path = tmp_path / "table.json"  # a copy: the rescaled table is the one load_table caches for this path
    path.write_text(lut.read_text())
    table = LatencyTable.load(path)
    calm = table.measure_reference(runs=30, rounds=3, cache_dir=cache)
    _slow_host(monkeypatch, 1.5)
    slow = rescale_table(path, runs=30, rounds=3, cache_dir=cache)
    assert slow is load_table(path) and 1.2 < slow.reference_ms / calm < 1.9
    for g in [TPSR_GENOTYPE, Genotype.parse("conv3@in dsep5@0 se@in")]:
        assert predict_latency(g, path) == pytest.approx(table.relative_cost(g) * slow.reference_ms, rel=1e-12)
    # lut predict --rescale: the same, through the CLI (the cached table of another path is left as recorded)
    assert main(["lut", "predict", "tpsr_x4", "--profile", str(lut), "--rescale", "--rescale-runs", "30",
                 "--cache-dir", cache, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = out["reference"]
    assert ref["rescaled"] and ref["genotype"] == str(TPSR_GENOTYPE) and ref["table_ms"] == table.table_reference_ms
    assert out["predicted_ms"] == pytest.approx(ref["relative_cost"] * ref["ms"], rel=1e-12)
    assert ref["ratio"] == pytest.approx(ref["ms"] / ref["table_ms"])
    assert load_table(lut).reference_ms == table.table_reference_ms
    assert main(["lut", "predict", "tpsr_x4", "--profile", str(lut)]) == 0
    assert "recorded at build time" in capsys.readouterr().out
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_absolute_only(lut)))
    assert main(["lut", "predict", "tpsr_x4", "--profile", str(old), "--rescale"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no relative entries" in err[0]


def test_relative_validation_cancels_a_slower_host(lut, monkeypatch):
    """A host uniformly 1.5x slower than at build time: the absolute comparison's signed error drops by about a
    third, the relative one (networks / reference timed in the same rounds) stays."""
    from tinysr.profile.predict import validate

    kw = dict(samples=4, seed=3, runs=20, warmup=2, rounds=5, cache_dir=lut.parent / "cache")
    calm = validate(lut, **kw)
    _slow_host(monkeypatch, 1.5)
    slow = validate(lut, **kw)
    assert slow["reference"]["now_ms"] / calm["reference"]["now_ms"] > 1.2
    # Two validations of 16 x 16 networks (tens of microseconds each) differ by up to ~10 % from timing
    # noise alone, so the slow-down (about 1 - 1 / 1.5 = 33 % on the absolute comparison) is compared
    # with what the relative comparison moved, not with a fixed bound.
    shift_abs = slow["stats_absolute"]["mean_signed_pct"] - calm["stats_absolute"]["mean_signed_pct"]
    shift_rel = slow["stats_relative"]["mean_signed_pct"] - calm["stats_relative"]["mean_signed_pct"]
    assert shift_abs < -15, (calm["stats_absolute"], slow["stats_absolute"])
    assert abs(shift_rel) < abs(shift_abs) / 2, (calm["stats_relative"], slow["stats_relative"], shift_abs)
    # within the slow run's own measurements the absolute comparison sits about 33 % below the relative one
    gap = slow["stats_relative"]["mean_signed_pct"] - slow["stats_absolute"]["mean_signed_pct"]
    calm_gap = calm["stats_relative"]["mean_signed_pct"] - calm["stats_absolute"]["mean_signed_pct"]
    assert gap > calm_gap + 20, (gap, calm_gap)
    # the relative comparison's typical error barely moves. (The absolute one's median |error| need not grow: when
    # the calm validation already over-predicts, as after a drift between build and validation, the slow-down
    # shrinks it; measured once in a clean-clone run: +1.7 points.)
    moved_rel = abs(slow["stats_relative"]["median_abs_pct"] - calm["stats_relative"]["median_abs_pct"])
    assert moved_rel < abs(shift_abs) / 2, (calm["stats_relative"], slow["stats_relative"], shift_abs)
    # the absolute comparison as the headline, on request; a table without relative entries has only that one
    absolute = validate(lut, compare="absolute", **dict(kw, samples=2, runs=2, rounds=1))
    assert absolute["comparison"] == "absolute" and absolute["stats"] == absolute["stats_absolute"]
    with pytest.raises(ValueError, match="no relative entries"):
        validate(_absolute_only(lut), compare="relative")


def test_cli_lut_build_refuses_bad_bounds(tmp_path, capsys):
    from tinysr.cli.main import main

    for flag, value, msg in [("--max-spread", "0", "max_spread must be a positive"),
                             ("--time-limit", "-1", "time_limit must be >= 0")]:
        assert main(["lut", "build", "--input-size", "8x8", flag, value, "-o", str(tmp_path / "x.json"), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err


# ------------------------------------------------------------------ int8 tables
def test_int8_table_times_what_the_int8_export_runs(tmp_path, capsys):
    """lut build --precision int8: every entry an int8 graph (int8 I/O: no QUANTIZE / DEQUANTIZE of its own),
    every whole network quantized as a phone runs it (int8 I/O, the tflite-int8 preset's); validation converts its
    networks alike."""
    from tinysr.cli.main import main
    from tinysr.export.flatbuffer import op_histogram
    from tinysr.profile.lut import convert_genotype, default_lut_name

    cache, out = tmp_path / "cache", tmp_path / "int8.json"
    rc = main(["lut", "build", "--space", "tpsr", "--input-size", "16x16", "--warmup", "1", "--runs", "2",
               "--rounds", "1", "--time-limit", "0", "--calibration-networks", "2", "--precision", "int8",
               "--cache-dir", str(cache), "-o", str(out), "-q"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["precision"] == "int8" and "int8" in data["method"]
    assert LatencyTable(data).precision == "int8"
    assert default_lut_name(data).endswith("-int8.json")
    entry_files = sorted(cache.glob("*_int8.tflite"))
    assert len(entry_files) >= len(data["entries"])  # every entry's graph cached as its int8 form
    from ai_edge_litert.interpreter import Interpreter
    for f in entry_files:
        if f.name.startswith("net_"):
            continue
        hist = op_histogram(f.read_bytes())
        assert "QUANTIZE" not in hist and "DEQUANTIZE" not in hist, (f.name, hist)
        it = Interpreter(model_path=str(f))
        assert it.get_input_details()[0]["dtype"] == np.int8, f.name
    net = convert_genotype(TPSR_GENOTYPE, 4, 16, SIZE, cache, "int8")
    hist = op_histogram(net)
    assert "QUANTIZE" not in hist and "DEQUANTIZE" not in hist and hist["CONV_2D"] == 13  # int8 I/O, quantized
    assert convert_genotype(TPSR_GENOTYPE, 4, 16, SIZE, cache) != net  # the fp32 network is another file
    js = tmp_path / "val.json"
    assert main(["lut", "validate", "--profile", str(out), "--samples", "2", "--warmup", "1", "--runs", "2",
                 "--json", str(js), "--cache-dir", str(cache)]) == 0
    assert "random genotypes, int8," in capsys.readouterr().out
    res = json.loads(js.read_text())
    assert res["precision"] == "int8" and len(res["rows"]) == 2
    names = {p.name for p in cache.glob("net_*_int8io.tflite")}
    assert len(names) >= 2 + 2 + 1  # calibration networks, validation samples, the reference / overhead network
