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


@pytest.mark.parametrize("name", ["tpsr_x4", "tpsr_x2"])
def test_bundled_weights_reproduce_their_recorded_scores(bench, name):
    """The recipe's final metrics (quoted in the README) are what ``tinysr eval`` measures now."""
    recipe = json.loads(bundled_weights_path(f"{name}.json").read_text())["final_metrics"]
    runner = TorchRunner(load_model(name))
    for ds in ("Set5", "Set14"):
        mean = mean_row(evaluate(runner, bench / ds, lpips=False, progress=False))
        print(f"bundled {name} {ds}: Y-PSNR {mean.psnr:.4f} dB, SSIM {mean.ssim:.4f}")
        assert mean.psnr == pytest.approx(recipe[ds]["psnr_y"], abs=5e-4)
        assert mean.ssim == pytest.approx(recipe[ds]["ssim_y"], abs=5e-4)
    # the acceptance lines of the bundled weights: x4 >= 30.4 dB on Set5, x2 well above bicubic (33.67 dB)
    assert recipe["Set5"]["psnr_y"] >= {"tpsr_x4": 30.4, "tpsr_x2": 34.5}[name]
