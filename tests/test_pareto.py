"""`tinysr pareto`: one run measures every model (params, Mult-Adds, LiteRT latency and PSNR per precision),
writes the table, CSV, JSON and plot, and a model that fails is a row with its reason."""
import csv
import json

import pytest
import torch

from tinysr.checkpoint import save_checkpoint
from tinysr.cli.main import main
from tinysr.complexity import count_params
from tinysr.models import create_model
from tinysr.models.mobile import deploy
from tinysr.pareto import ParetoOptions, front, run_pareto, to_markdown, write_outputs


def test_front_keeps_exactly_the_non_dominated_points():
    pts = [(10, 30.0), (20, 31.0), (15, 29.0), (30, 31.0), (5, 28.0), (20, 30.5)]
    # (15, 29) is beaten by (10, 30); (30, 31) by (20, 31); (20, 30.5) by (20, 31)
    assert front(pts) == [4, 0, 1]
    assert front([(1.0, 1.0)]) == [0]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pareto_models")
    torch.manual_seed(0)
    paths = []
    for name in ("xlsr_x4", "sesr_m5_x4"):
        p = d / name / "last.pt"
        p.parent.mkdir()
        save_checkpoint(p, create_model(name))
        paths.append(str(p))
    return paths


def test_one_run_measures_every_model_and_a_failure_is_a_row(two_models, photo_dir, tmp_path):
    opts = ParetoOptions(data=(str(photo_dir),), precisions=("fp32", "int8"), threads=1, input_size=(16, 24),
                         runs=2, rounds=1, warmup=1)
    with pytest.warns(UserWarning, match="leaves no room for an overlap"):  # tiny artifacts tile the images
        result = run_pareto([two_models[0], str(tmp_path / "missing.pt"), two_models[1]], opts, progress=False)
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == ["xlsr_x4", "missing", "sesr_m5_x4"]  # a run folder's last.pt is named by its folder
    assert rows["missing"]["error"] and "\n" not in rows["missing"]["error"]
    for name in ("xlsr_x4", "sesr_m5_x4"):
        r = rows[name]
        assert r["error"] is None
        assert r["params"] == count_params(deploy(create_model(name)))  # SESR counted collapsed
        assert r["fp32_ms"] > 0 and r["int8_ms"] > 0
        s = r["scores"][photo_dir.name]
        assert 5 < s["fp32"]["psnr"] < 60 and 5 < s["int8"]["psnr"] < 60 and 0 < s["fp32"]["ssim"] <= 1
        assert r["fp32_export"]["ops"]["CONV_2D"] >= 3
    assert result["cpu"] and result["threads"] == 1

    written = write_outputs(result, tmp_path / "out")
    assert {p.name for p in written} == {"pareto.json", "pareto.csv", "pareto.md", "pareto.png"}
    table = list(csv.DictReader(open(tmp_path / "out" / "pareto.csv")))
    assert [t["model"] for t in table] == ["xlsr_x4", "missing", "sesr_m5_x4"]
    assert float(table[0]["fp32_ms"]) == rows["xlsr_x4"]["fp32_ms"]
    assert table[1]["error"] and not table[1]["fp32_ms"]
    assert json.loads((tmp_path / "out" / "pareto.json").read_text())["rows"][2]["model"] == "sesr_m5_x4"
    md = to_markdown(result)
    assert "| xlsr_x4 |" in md and result["cpu"] in md


def test_cli_writes_the_files_and_bad_input_is_one_line(two_models, photo_dir, tmp_path, capsys):
    out = tmp_path / "p"
    with pytest.warns(UserWarning, match="leaves no room for an overlap"):
        rc = main(["pareto", two_models[0], "--data", str(photo_dir), "--precision", "fp32", "--input-size", "16x24",
                   "--runs", "2", "--rounds", "1", "-o", str(out), "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| xlsr_x4 |" in text and "pareto.png" in text
    assert (out / "pareto.png").stat().st_size > 1000
    assert main(["pareto", two_models[0], "--data", str(tmp_path / "nope"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a folder" in err[0]
    assert main(["pareto", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "q"), "-q"]) == 2  # every row failed


def _row(name, ms, set5, set14, int8_drop=0.05):
    return {"model": name, "error": None, "fp32_ms": ms, "int8_ms": ms / 2,
            "scores": {"Set5": {"fp32": {"psnr": set5}, "int8": {"psnr": set5 - int8_drop}},
                       "Set14": {"fp32": {"psnr": set14}, "int8": {"psnr": set14 - int8_drop}}}}


def test_budget_margins_compare_the_best_of_each_side_within_each_budget():
    from tinysr.pareto import budget_margins, budgets_markdown

    result = {"data": ["Set5", "Set14"], "precisions": ["fp32", "int8"], "rows": [
        _row("xlsr", 50, 29.3, 26.7), _row("qsr_m", 100, 30.0, 27.2), _row("tpsr", 150, 29.5, 26.8),
        _row("found_a", 45, 29.5, 26.75), _row("found_b", 99, 30.05, 27.4, int8_drop=0.3),
        {"model": "broken", "error": "x"}]}
    m = budget_margins(result, ["xlsr", "qsr_m", "tpsr"], ["found_a", "found_b"])
    assert [(e["budget_ms"], e["searched"], e["hand"]) for e in m] == [
        (50, "found_a", "xlsr"), (100, "found_b", "qsr_m"), (150, "found_b", "qsr_m")]
    assert m[0]["margins"] == {"Set5_fp32": 0.2, "Set5_int8": 0.2, "Set14_fp32": 0.05, "Set14_int8": 0.05}
    assert not m[0]["met"]  # Set14 only 0.05 dB ahead
    assert m[1]["margins"]["Set5_fp32"] == 0.05 and not m[1]["met"]
    assert m[1]["margins"]["Set14_int8"] == pytest.approx(27.1 - 27.15)
    assert budget_margins(result, ["broken"], ["found_a"])[0]["budget_ms"] is None
    assert "| xlsr | 50 | found_a | xlsr |" in budgets_markdown(m)
    only_hand = budget_margins(result, ["xlsr"], ["found_b"])[0]  # nothing searched fits in 50 ms
    assert only_hand["searched"] is None and only_hand["met"] is False


def test_a_searched_network_is_predicted_with_its_own_skeleton(tmp_path):
    """A tpsr_plus network (anchor skeleton, width 24, two cells) is priced as that network, not as its cell
    in the paper's skeleton; a linear network as its collapsed form."""
    from test_search_space_plus import fake_plus_table

    from tinysr.genotype import parse_genotype
    from tinysr.models.tpsr import CellSR
    from tinysr.pareto import _predict
    from tinysr.profile.lut import LatencyTable

    table = tmp_path / "plus.json"
    table.write_text(json.dumps(fake_plus_table()))
    lut = LatencyTable(json.loads(table.read_text()))
    net = parse_genotype("w24 d2 anchor clip linear | conv3@in dsep3@0 identity@in")
    model = CellSR(net, 4)
    ms, why = _predict(model, str(table), (12, 16))
    assert why is None and ms == pytest.approx(lut.predict(net.deployed()))
    assert ms != pytest.approx(lut.predict(net.cell))
    ms_cell, _ = _predict(CellSR(net.cell, 4), str(table), (12, 16))  # a bare cell: the paper's skeleton
    assert ms_cell == pytest.approx(lut.predict(net.cell))


def test_a_qat_model_is_an_int8_point_with_its_learnt_ranges(photo_dir, tmp_path):
    """A network with quantization-aware training's ranges: int8 only (its float network is tuned for int8)."""
    opts = ParetoOptions(data=(str(photo_dir),), precisions=("fp32", "int8"), threads=1, input_size=(16, 24),
                         runs=2, rounds=1, warmup=1)
    with pytest.warns(UserWarning, match="leaves no room for an overlap"):
        result = run_pareto(["quicksrnet_s_x4_qat", "quicksrnet_s_x4"], opts, progress=False)
    qat, ptq = result["rows"]
    assert qat["qat"] and not ptq["qat"] and qat["error"] is None
    assert qat.get("fp32_ms") is None and "fp32" not in qat["scores"][photo_dir.name] and qat["int8_ms"] > 0
    assert ptq["fp32_ms"] > 0 and ptq["int8_ms"] > 0
    assert "| quicksrnet_s_x4_qat |" in to_markdown(result)
