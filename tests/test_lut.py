"""Latency tables of the search space: build (tiny sizes), predict, measure, validate, CLI.

These tests build their own tiny table in a temporary folder; they never read the measured
profiles in ``profiles/``.
"""
import json
import random
import time

import pytest

from tinysr.genotype import TPSR_GENOTYPE, Genotype
from tinysr.ops import OPS
from tinysr.profile.lut import FORMAT, LatencyTable, default_lut_name, skeleton_layout
from tinysr.profile.predict import error_stats, measure_latency, predict_latency, sample_genotypes

SIZE = (16, 16)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    """A tiny table built through the CLI: 16 x 16, x4, 1 thread, few runs."""
    from tinysr.cli.main import main

    d = tmp_path_factory.mktemp("lut")
    out = d / "tiny.json"
    rc = main(["lut", "build", "--device", "host", "--runtime", "litert", "--space", "tpsr", "--input-size", "16x16",
               "--scale", "4", "--threads", "1", "--warmup", "1", "--runs", "3", "--cache-dir", str(d / "cache"),
               "-o", str(out), "-q"])
    assert rc == 0
    return out


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


def test_predict_is_the_sum_of_entries(lut):
    data = json.loads(lut.read_text())
    e = {k: v["median_ms"] for k, v in data["entries"].items()}
    lay = data["skeleton"]
    skeleton = e[lay["head"]] + e[lay["cell_act"]] + sum(e[k] for k in lay["up"]) + e[lay["add_mean"]]
    rng = random.Random(3)
    for g in [TPSR_GENOTYPE] + [Genotype.random(10, rng) for _ in range(20)]:
        by_hand = (data["overhead"]["ms"] + skeleton + sum(e[OPS[n.op].latency_key(16, 16, 16)] for n in g.nodes)
                   + (len(g.leaves) - 1) * e[lay["leaf_add"]])
        assert predict_latency(g, lut) == pytest.approx(by_hand, rel=1e-12)
        assert predict_latency(str(g), data) == pytest.approx(by_hand, rel=1e-12)
        table = LatencyTable(data)
        assert sum(ms for _, _, ms in table.breakdown(g)) == pytest.approx(by_hand, rel=1e-12)
    assert predict_latency(TPSR_GENOTYPE, lut, input_size=(16, 16), scale=4) > 0
    with pytest.raises(ValueError, match="16x16"):
        predict_latency(TPSR_GENOTYPE, lut, input_size=(180, 320))
    with pytest.raises(ValueError, match="x4"):
        predict_latency(TPSR_GENOTYPE, lut, scale=2)


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
    assert set(res["stats"]) >= {"median_abs_pct", "p90_abs_pct", "max_abs_pct", "mean_signed_pct"}
    assert res["input_size"] == [16, 16] and res["runtime"]["threads"] == 1
    assert png.read_bytes()[:8] == PNG


def test_error_stats():
    s = error_stats([110, 90, 100, 150], [100, 100, 100, 100])
    assert s["median_abs_pct"] == pytest.approx(10.0) and s["max_abs_pct"] == pytest.approx(50.0)
    assert s["mean_signed_pct"] == pytest.approx(12.5) and s["n"] == 4


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
    assert main(["lut", "predict", "esrgan_x4", "--profile", str(lut)]) == 2  # no genotype
    assert main(["lut", "predict", "tpsr_x2", "--profile", str(lut)]) == 2  # table is for x4
    assert main(["lut", "predict", "conv9@in", "--profile", str(lut)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("tinysr: error: ") for line in err)


def test_default_lut_name():
    d = {"device": {"kind": "host", "cpu": "AMD EPYC"}, "runtime": {"name": "litert", "delegate": "xnnpack",
                                                                    "threads": 2}}
    assert default_lut_name(d) == "host-amd-epyc-litert-2t.json"
    d["runtime"]["delegate"] = "cpu"
    assert default_lut_name(d) == "host-amd-epyc-litert-cpu-2t.json"
