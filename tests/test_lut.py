"""Latency tables of the search space: build (tiny sizes), calibrate, predict, measure, validate, CLI.

These tests build their own tiny table in a temporary folder; they never read the measured
profiles in ``profiles/``.
"""
import json
import random
import time

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
               "--calibration-networks", "3", "-o", str(out), "-q"])
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
        assert e["median_ms"] > 0 and e["p90_ms"] >= e["median_ms"] and e["runs"] == 3, name
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
    assert cal["op_scale"] >= 0 and cal["runs"] == 3 and cal["before"]["n"] == cal["after"]["n"] == 3
    assert cal["timed"] == "timed in the same interleaved rounds as the entries"
    assert cal["clock"] == data["clock"] == "wall"
    table = LatencyTable(data)
    for n in cal["networks"]:
        g = Genotype.parse(n["genotype"])
        assert n["measured_ms"] > 0 and n["table_ms"] == pytest.approx(table.predict_uncalibrated(g))
        assert n["calibrated_ms"] == pytest.approx(table.predict(g))


def test_predict_is_the_sum_of_entries(lut):
    data = _uncalibrated(lut)
    e = {k: v["median_ms"] for k, v in data["entries"].items()}
    lay = data["skeleton"]
    skeleton = e[lay["head"]] + e[lay["cell_act"]] + sum(e[k] for k in lay["up"]) + e[lay["add_mean"]]
    rng = random.Random(3)
    for g in [TPSR_GENOTYPE] + [Genotype.random(10, rng) for _ in range(20)]:
        by_hand = (data["overhead"]["ms"] + skeleton + sum(e[OPS[n.op].latency_key(16, 16, 16)] for n in g.nodes)
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
    # the overhead reference network, timed again beside them: how the machine compares with build time
    ref = res["reference"]
    assert ref["genotype"] == "identity@in" and ref["now_ms"] > 0
    assert ref["ratio"] == pytest.approx(ref["now_ms"] / table.data["overhead"]["reference_ms"])
    assert "reference network identity@in" in out


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
