"""``tinysr bench --train-step``: forward and forward+backward time by batch size (structure only,
never speed)."""
import json
import math

import pytest
import torch

from tinysr import bench
from tinysr.bench import format_train_bench, run_train_bench
from tinysr.cli.main import main

MODELS, BATCHES = ("tpsr_x4", "srresnet_x4"), (1, 2)


@pytest.fixture(scope="module")
def result():
    mp = pytest.MonkeyPatch()
    mp.setattr(bench, "TRAIN_RATIO", MODELS)  # the ratio lines, on models small enough for a unit test
    try:
        # 1 thread: on a busy 2-core machine, 2 threads make each call wait on a core (and the test slow)
        yield run_train_bench(MODELS, BATCHES, patch=8, threads=1, rounds=2, warmup=1, progress=False)
    finally:
        mp.undo()


def test_every_model_and_batch_is_timed(result):
    assert [(r["model"], r["batch"]) for r in result["rows"]] == [(m, b) for m in MODELS for b in BATCHES]
    for r in result["rows"]:
        for key in ("forward", "fwd_bwd"):
            assert len(r[f"{key}_runs_ms"]) == 2
            assert math.isfinite(r[f"{key}_ms"]) and r[f"{key}_ms"] > 0
            assert r[f"{key}_ms_per_image"] == pytest.approx(r[f"{key}_ms"] / r["batch"])
    assert result["threads"] == 1 and result["torch"] == torch.__version__
    assert result["cpu"] and result["patch"] == 8
    info = result["model_info"]["srresnet_x4"]
    assert info["scale"] == 4 and info["params"] > 1e6 and info["mult_adds_per_image"] > 0


def test_ratios_and_markdown(result):
    by = {(r["model"], r["batch"]): r for r in result["rows"]}
    assert [r["batch"] for r in result["ratios"]] == list(BATCHES)
    for r in result["ratios"]:
        assert r["forward"] == pytest.approx(by["tpsr_x4", r["batch"]]["forward_ms"]
                                             / by["srresnet_x4", r["batch"]]["forward_ms"])
    text = format_train_bench(result)
    assert "| model | batch | forward ms | fwd+bwd ms | forward ms/image | fwd+bwd ms/image |" in text
    for m in MODELS:
        for b in BATCHES:
            assert f"| {m} | {b} | " in text
    assert "tpsr_x4 / srresnet_x4 at batch 2: forward" in text and result["cpu"] in text


@pytest.mark.parametrize("kwargs, match", [
    (dict(models=("esrgan_x5",)), "unknown model 'esrgan_x5'"),
    (dict(models=("tpsr_d",)), "not a generator"),
    (dict(batches=(1, 0)), "batch sizes must be positive integers"),
    (dict(patch=0), "patch must be a positive integer"),
    (dict(models=("tpsr_x4", "tpsr-x4")), "each model and batch size once"),
])
def test_bad_arguments_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_train_bench(**{"models": ("tpsr_x4",), "batches": (1,), "patch": 4, "progress": False, **kwargs})


def test_cli_train_step_writes_json(tmp_path, capsys):
    out = tmp_path / "t.json"
    before = torch.get_num_threads()
    assert main(["bench", "--train-step", "--model", "tpsr-x4", "--batches", "1,2", "--patch", "8", "--rounds", "1",
                 "--threads", "1", "-q", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["models"] == ["tpsr_x4"] and result["batches"] == [1, 2] and result["threads"] == 1
    assert torch.get_num_threads() == before  # restored
    assert "| tpsr_x4 | 2 | " in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--batches", "1,x"], ["--batches 1,x", "e.g. 1,4,16"]),
    (["--threads", "1,2"], ["one thread count"]),
    (["--model", "tpsr_x4,esrgan-x5"], ["'esrgan-x5'", "did you mean"]),
])
def test_cli_errors_are_one_line(argv, words, capsys):
    assert main(["bench", "--train-step", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
