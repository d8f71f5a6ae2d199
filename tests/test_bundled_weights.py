"""The bundled weights: trained by this project's pipeline, with their recipe, and good enough."""
import json

import pytest

from tinysr.checkpoint import bundled_weights_path, has_bundled_weights, load_model
from tinysr.provenance import file_sha256
from tinysr.evaluate import evaluate, mean_row
from tinysr.runtimes import TorchRunner


@pytest.mark.parametrize("name, trained_as", [("tpsr_x4", "tpsr_x4"), ("tpsr_x2", "tpsr_x2"),
                                              ("tpsr_x4_gan", "tpsr_x4")])
def test_bundled_weights_ship_with_their_recipe(name, trained_as):
    assert has_bundled_weights(name)
    recipe = json.loads(bundled_weights_path(f"{name}.json").read_text())
    assert recipe["sha256"] == file_sha256(bundled_weights_path(f"{name}.pt"))
    cfg = recipe["train_config"]
    assert cfg["model"] == trained_as and cfg["seed"] is not None and cfg["steps"] >= recipe["step"] > 0
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


def test_bundled_gan_weights_reproduce_their_perceptual_scores(bench, weights_dir):
    """tpsr_x4_gan: the recipe's PSNR and LPIPS (both nets) are what ``tinysr eval`` measures now, and
    it is the perceptual model of the two: lower LPIPS-Alex than the L1 model it was fine-tuned from."""
    recipe = json.loads(bundled_weights_path("tpsr_x4_gan.json").read_text())
    assert recipe["train_config"]["gan"]["recipe"] == "tpsr" and recipe["train_config"]["init_from"] == "tpsr_x4"
    runner = TorchRunner(load_model("tpsr_x4_gan"))
    for ds in ("Set5", "Set14"):
        want = recipe["final_metrics"][ds]
        mean = mean_row(evaluate(runner, bench / ds, lpips=True, progress=False, lpips_net="both"))
        print(f"bundled tpsr_x4_gan {ds}: Y-PSNR {mean.psnr:.4f} dB, LPIPS-VGG {mean.lpips:.4f}, "
              f"LPIPS-Alex {mean.lpips_alex:.4f}")
        assert mean.psnr == pytest.approx(want["psnr_y"], abs=5e-4)
        assert mean.lpips == pytest.approx(want["lpips"], abs=5e-4)
        assert mean.lpips_alex == pytest.approx(want["lpips_alex"], abs=5e-4)
    l1 = mean_row(evaluate(TorchRunner(load_model("tpsr_x4")), bench / "Set5", lpips=True, progress=False,
                           lpips_net="alex"))
    assert recipe["final_metrics"]["Set5"]["lpips_alex"] < l1.lpips_alex - 0.02


# The Pareto comparison's networks: every one trained by the one recipe (tinysr/configs/pareto_x4.yaml),
# only the model differing, and bundled from the run's last step (no checkpoint chosen on a test set).
PARETO = ["xlsr_x4", "quicksrnet_m_x4", "tpsr_pareto_x4", "quicksrnet_s_x4", "abpn_x4", "espcn_x4", "sesr_m5_x4",
          "fsrcnn_x4", "search_demo_x4", "trilevel_demo_x4", "searched_at_quicksrnet_s_x4", "searched_at_xlsr_x4",
          "searched_at_quicksrnet_m_x4", "edsr_f32b5_x4", "quicksrnet_l_x4", "trilevel_at_quicksrnet_s_x4",
          "trilevel_at_xlsr_x4", "trilevel_at_quicksrnet_m_x4"]


def _common_recipe() -> dict:
    import yaml

    from conftest import ROOT

    return yaml.safe_load((ROOT / "tinysr" / "configs" / "pareto_x4.yaml").read_text())


@pytest.mark.parametrize("name", PARETO)
def test_pareto_networks_share_one_recipe_and_reproduce_their_scores(bench, name):
    recipe = json.loads(bundled_weights_path(f"{name}.json").read_text())
    assert recipe["sha256"] == file_sha256(bundled_weights_path(f"{name}.pt"))
    cfg, common = recipe["train_config"], _common_recipe()
    differs = {k for k in common if k not in ("model", "out_dir") and cfg.get(k) != common[k]}
    assert not differs, f"{name} was not trained with the common recipe: {sorted(differs)}"
    assert recipe["step"] == common["steps"] and recipe["checkpoint_used"].startswith("last")
    assert "pareto_x4.yaml" in recipe["reproduce"]
    runner = TorchRunner(load_model(name))
    for ds in ("Set5", "Set14"):
        mean = mean_row(evaluate(runner, bench / ds, lpips=False, progress=False))
        assert mean.psnr == pytest.approx(recipe["final_metrics"][ds]["psnr_y"], abs=5e-4)


# Quantization-aware trained networks (tinysr/configs/qat_x4.yaml from the common-recipe weights): their int8
# export takes the learnt ranges, and beats the post-training quantization of the network they started from.
QAT = {"quicksrnet_s_x4_qat": "quicksrnet_s_x4", "quicksrnet_m_x4_qat": "quicksrnet_m_x4",
       "trilevel_demo_x4_qat": "trilevel_demo_x4"}
# Set5 gain over PTQ measured when bundled (README "Quantization-aware training"), less 0.01 dB
QAT_GAIN = {"quicksrnet_s_x4_qat": 0.10, "quicksrnet_m_x4_qat": 0.06, "trilevel_demo_x4_qat": 0.02}


@pytest.mark.parametrize("name", QAT)
def test_qat_networks_export_their_learnt_ranges_and_beat_ptq(bench, name, tmp_path):
    """The int8 export takes the learnt ranges (no calibration) and scores what the recipe recorded, above the
    started-from network's PTQ int8 score measured by the Pareto run (the same export and evaluation)."""
    import yaml

    from conftest import ROOT
    from tinysr.checkpoint import qat_record
    from tinysr.export.pipeline import ExportOptions, export_model
    from tinysr.runtimes import LiteRTRunner

    recipe = json.loads(bundled_weights_path(f"{name}.json").read_text())
    assert recipe["sha256"] == file_sha256(bundled_weights_path(f"{name}.pt")) and qat_record(name)
    qat_cfg = yaml.safe_load((ROOT / "tinysr" / "configs" / "qat_x4.yaml").read_text())
    cfg = recipe["train_config"]
    assert cfg["init_from"] == QAT[name] and cfg["steps"] == qat_cfg["steps"] and cfg["qat"] == qat_cfg["qat"]
    art = tmp_path / "qat.tflite"
    card = export_model(name, art, ExportOptions(target="tflite", precision="int8", max_loss_db=99.0), progress=False)
    assert card["calibration"]["method"] == "qat"
    qat = mean_row(evaluate(LiteRTRunner(art), bench / "Set5", lpips=False, progress=False)).psnr
    assert qat == pytest.approx(recipe["final_metrics"]["Set5"]["int8_psnr_y"], abs=5e-4)
    pareto = json.loads(bundled_weights_path("pareto_x4.json").read_text())
    ptq = next(r for r in pareto["rows"] if r["model"] == QAT[name])["scores"]["Set5"]["int8"]["psnr"]
    assert qat > ptq + QAT_GAIN[name], (qat, ptq)
