"""The bundled weights: trained by this project's pipeline, with their recipe, and good enough."""
import json

import pytest

from tinysr.checkpoint import bundled_weights_path, has_bundled_weights, load_model
from tinysr.provenance import file_sha256
from tinysr.evaluate import evaluate, mean_row
from tinysr.runtimes import TorchRunner


@pytest.mark.parametrize("name", ["tpsr_x4", "tpsr_x2"])
def test_bundled_weights_ship_with_their_recipe(name):
    assert has_bundled_weights(name)
    recipe = json.loads(bundled_weights_path(f"{name}.json").read_text())
    assert recipe["sha256"] == file_sha256(bundled_weights_path(f"{name}.pt"))
    cfg = recipe["train_config"]
    assert cfg["model"] == name and cfg["seed"] is not None and cfg["steps"] >= recipe["step"] > 0
    assert recipe["final_metrics"]
    assert bundled_weights_path(f"{name}.pt").stat().st_size < 400_000


def test_bundled_tpsr_x4_reaches_30_4_db_on_set5(bench):
    rows = evaluate(TorchRunner(load_model("tpsr_x4")), bench / "Set5", lpips=False, progress=False)
    psnr = mean_row(rows).psnr
    print(f"bundled tpsr_x4 Set5 Y-PSNR {psnr:.3f} dB")
    assert psnr >= 30.4


def test_bundled_tpsr_x2_beats_bicubic_on_set5(bench):
    rows = evaluate(TorchRunner(load_model("tpsr_x2")), bench / "Set5", lpips=False, progress=False)
    assert mean_row(rows).psnr > 34.5  # bicubic x2: 33.7 dB
