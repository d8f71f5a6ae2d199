"""GAN stage: recipes in the config, the losses, real training steps of both adversarial losses,
best.pt by validation LPIPS, and kill -9 + resume to the same state (G, D, optimisers, schedules)."""
import csv
import math

import pytest
import torch
import yaml

from tinysr.checkpoint import load_model, read_checkpoint
from tinysr.cli.main import main
from tinysr.train.config import RECIPES, GanConfig, TrainConfig
from tinysr.train.losses import VGG16_LAYERS, discriminator_loss, generator_adversarial_loss
from tinysr.train.trainer import train

from conftest import SHARED, killed_and_resumed


def test_recipe_defaults_fill_the_config_and_explicit_keys_win():
    cfg = TrainConfig.from_dict({"model": "tpsr_x4", "gan": {"recipe": "esrgan", "adversarial_weight": 1e-3}})
    assert cfg.lr == 1e-4 and cfg.betas == (0.9, 0.99) and cfg.scheduler == "multistep"
    assert cfg.lr_milestones == [50_000, 100_000, 200_000, 300_000]
    assert cfg.gan.pixel_weight == 1e-2 and cfg.gan.perceptual_weight == 1.0 and cfg.gan.ema == 0.999
    assert cfg.gan.adversarial_weight == 1e-3 and cfg.gan.adversarial_loss == "relativistic"
    assert "BasicSR" in cfg.gan.source
    mes = TrainConfig.from_dict({"lr": 3e-4, "gan": {"recipe": "mesrgan"}})
    assert mes.lr == 3e-4 and mes.lr_step == 50_000 and mes.gan.pixel_loss == "mse"
    assert (mes.gan.perceptual_weight, mes.gan.adversarial_weight) == (6e-3, 1e-3)
    for name, recipe in RECIPES.items():
        g = GanConfig.from_dict({"recipe": name})
        assert g.source == recipe["source"] and g.adversarial_loss == recipe["gan"]["adversarial_loss"]
    over = cfg.override(["gan.perceptual_layer=relu3_3", "steps=9"])
    assert over.gan.perceptual_layer == "relu3_3" and over.steps == 9 and over.gan.recipe == "esrgan"
    l1 = TrainConfig.from_dict({"model": "tpsr_x4"})
    assert l1.gan is None and l1.lr == 1e-3


@pytest.mark.parametrize("data, match", [
    ({"gan": {"recipe": "wgan"}}, "recipe must be one of"),
    ({"gan": {"perceptual_layer": "relu9_9"}}, "perceptual_layer"),
    ({"gan": {"adversarial_loss": "hinge"}}, "adversarial_loss"),
    ({"gan": {"ema": 1.0}}, "ema"),
    ({"gan": {"pixel_weight": -1}}, "pixel_weight"),
    ({"gan": {"bogus": 1}}, "unknown key"),
    ({"scheduler": "multistep", "lr_milestones": [5, 3]}, "lr_milestones"),
])
def test_bad_gan_config_is_one_line(data, match):
    with pytest.raises(ValueError, match=match) as e:
        TrainConfig.from_dict(data)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no gan: section"):
        TrainConfig().override(["gan.ema=0.5"])


def test_adversarial_losses_match_their_definitions():
    real, fake = torch.tensor([[2.0], [1.0]]), torch.tensor([[-1.0], [0.5]])
    sp = torch.nn.functional.softplus  # BCE-with-logits: target 1 -> softplus(-x), target 0 -> softplus(x)
    assert torch.isclose(discriminator_loss(real, fake, "standard"), sp(-real).mean() + sp(fake).mean())
    assert torch.isclose(generator_adversarial_loss(real, fake, "standard"), sp(-fake).mean())
    ra_d = 0.5 * (sp(-(real - fake.mean())).mean() + sp(fake - real.mean()).mean())
    ra_g = 0.5 * (sp(real - fake.mean()).mean() + sp(-(fake - real.mean())).mean())
    assert torch.isclose(discriminator_loss(real, fake, "relativistic"), ra_d)
    assert torch.isclose(generator_adversarial_loss(real, fake, "relativistic"), ra_g)
    assert VGG16_LAYERS["relu1_2"] == 3 and VGG16_LAYERS["relu2_2"] == 8 and VGG16_LAYERS["relu5_3"] == 29
    assert VGG16_LAYERS["conv5_3"] == 28


def _train_data():
    folder = SHARED / "data" / "train" / "T91"
    if not folder.is_dir():
        pytest.skip(f"shared training images not available: {folder} is absent")
    return [str(folder)]


def _cfg(tmp_path, name, l1_ckpt, **gan):
    return {"model": "tpsr_x2", "init_from": str(l1_ckpt), "train_data": _train_data(), "out_dir": str(tmp_path / name),
            "patch_size": 16, "batch_size": 2, "steps": 8, "val_every": 4, "ckpt_every": 1, "seed": 5,
            "threads": 1, "gan": {"recipe": "tpsr", "val_images": 2, "val_size": 24, "perceptual_layer": "relu1_2",
                                  "adversarial_weight": 0.1, "d_lr": 1e-3, **gan}}


@pytest.fixture
def l1_checkpoint(tmp_path):
    from tinysr.checkpoint import save_checkpoint
    from tinysr.models import create_model

    torch.manual_seed(0)
    path = tmp_path / "l1.pt"
    save_checkpoint(path, create_model("tpsr_x2"), meta={"step": 0})
    return path


@pytest.mark.parametrize("loss, disc, patch", [("standard", "tpsr_d", 16), ("relativistic", "vgg_d128", 64)])
def test_both_gan_losses_train_on_real_images(tmp_path, weights_dir, l1_checkpoint, loss, disc, patch):
    data = _cfg(tmp_path, loss, l1_checkpoint, adversarial_loss=loss, discriminator=disc, ema=0.9)
    data.update(patch_size=patch, steps=6, val_every=3)
    cfg = TrainConfig.from_dict(data)
    if patch * 2 > 78:  # T91's smallest images are smaller than the HR patch: skipped, and said so
        with pytest.warns(UserWarning, match=r"skipping \d+ of \d+ images: .*smaller than an HR patch"):
            result = train(cfg, progress=False)
    else:
        result = train(cfg, progress=False)
    assert result.step == 6 and result.lpips_net == "alex" and math.isfinite(result.best_lpips)
    rows = list(csv.DictReader(open(tmp_path / loss / "log.csv")))
    for key in ("g_loss", "d_loss", "pixel", "perceptual", "adversarial"):
        values = [float(r[key]) for r in rows]
        assert all(math.isfinite(v) for v in values), key
        assert len(set(values)) > 1, f"{key} did not move: {values}"
    state = read_checkpoint(tmp_path / loss / "last.pt")
    g0 = read_checkpoint(l1_checkpoint)["state_dict"]
    assert any(not torch.equal(state["state_dict"][k], g0[k]) for k in g0), "G did not train"
    assert state["gan_state"]["discriminator"]["family"] == ("searched_discriminator" if disc == "tpsr_d"
                                                            else "vgg_discriminator")
    val = [r for r in rows if r["val_lpips_alex"]]
    best = min(float(r["val_lpips_alex"]) for r in val)
    best_ckpt = read_checkpoint(tmp_path / loss / "best.pt")
    assert best_ckpt["meta"]["best_lpips"] == pytest.approx(best, abs=1e-4)
    assert load_model(str(tmp_path / loss / "best.pt")).scale == 2
    assert (tmp_path / loss / "curves.png").is_file()


def test_killed_gan_run_resumes_to_the_same_state(tmp_path, weights_dir, l1_checkpoint):
    steps = 12
    ref_cfg = TrainConfig.from_dict({**_cfg(tmp_path, "ref", l1_checkpoint, ema=0.9, spectral_norm=True), "steps": steps})
    train(ref_cfg, progress=False)

    run = _cfg(tmp_path, "run", l1_checkpoint, ema=0.9, spectral_norm=True)
    run["steps"] = steps
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(run))
    out = tmp_path / "run"
    a, b = killed_and_resumed(cfg_path, out, tmp_path / "ref", 5, steps, timeout=180)
    ga, gb = a["gan_state"], b["gan_state"]
    for k in gb["d_state"]:
        assert torch.equal(ga["d_state"][k], gb["d_state"][k]), k
    for k in gb["ema"]:
        assert torch.equal(ga["ema"][k], gb["ema"][k]), k
    for opt in ("opt_g", "opt_d"):
        for pid, st in gb[opt]["state"].items():
            assert torch.equal(ga[opt]["state"][pid]["exp_avg"], st["exp_avg"]), (opt, pid)
    assert ga["sched_g"] == gb["sched_g"] and ga["sched_d"] == gb["sched_d"]
    assert a["meta"]["best_lpips"] == b["meta"]["best_lpips"]
    steps_logged = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps_logged == sorted(set(steps_logged))


def test_gan_stage_refuses_what_it_cannot_use(tmp_path, weights_dir, l1_checkpoint, capsys):
    data = _cfg(tmp_path, "x", l1_checkpoint)
    del data["init_from"]
    cfg_path = tmp_path / "x.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg_path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "init_from" in err and len(err.splitlines()) == 1
    data = _cfg(tmp_path, "y", l1_checkpoint, discriminator="vgg_d128")  # 16 x 2 = 32-px patches
    cfg_path.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg_path), "-q"]) == 2
    assert "128 or 256" in capsys.readouterr().err
    data = _cfg(tmp_path, "z", l1_checkpoint, discriminator="tpsr_x4")
    cfg_path.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg_path), "-q"]) == 2
    assert "not a discriminator" in capsys.readouterr().err


def test_best_checkpoint_respects_the_psnr_guard(tmp_path, weights_dir, l1_checkpoint):
    """gan.max_psnr_drop: best.pt only among validations within that many dB of the initial generator."""
    data = _cfg(tmp_path, "guard", l1_checkpoint, max_psnr_drop=0.0, adversarial_weight=1.0)
    data.update(steps=4, val_every=2)
    train(TrainConfig.from_dict(data), progress=False)
    rows = [r for r in csv.DictReader(open(tmp_path / "guard" / "log.csv")) if r["val_psnr"]]
    initial = read_checkpoint(tmp_path / "guard" / "last.pt")["meta"]["initial"]
    assert initial["psnr"] > 0 and initial["lpips_alex"] > 0
    ok = [r for r in rows if float(r["val_psnr"]) >= initial["psnr"]]
    best = tmp_path / "guard" / "best.pt"
    assert best.is_file() == bool(ok)
    if ok:
        assert read_checkpoint(best)["meta"]["best"]["psnr"] >= initial["psnr"]


def test_ema_may_be_switched_on_resume_without_changing_g(tmp_path, weights_dir, l1_checkpoint):
    """The EMA is a shadow of G: a run resumed with it switched off (or on) trains G exactly as before."""
    ref = TrainConfig.from_dict({**_cfg(tmp_path, "ref", l1_checkpoint, ema=0.0), "steps": 6, "val_every": 3})
    train(ref, progress=False)
    first = TrainConfig.from_dict({**_cfg(tmp_path, "run", l1_checkpoint, ema=0.9), "steps": 6, "val_every": 3})
    train(first, progress=False, stop_after=3)
    assert read_checkpoint(tmp_path / "run" / "last.pt")["gan_state"]["ema"] is not None
    train(TrainConfig.from_dict({**_cfg(tmp_path, "run", l1_checkpoint, ema=0.0), "steps": 6, "val_every": 3}),
          progress=False)
    a, b = read_checkpoint(tmp_path / "run" / "last.pt"), read_checkpoint(tmp_path / "ref" / "last.pt")
    assert a["gan_state"]["ema"] is None and a["meta"]["step"] == 6
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


def test_best_refusal_by_psnr_drop_and_grid_ratio():
    from tinysr.train.gan import best_refusal

    initial = {"psnr": 30.0, "grid": 1.0}
    both = GanConfig.from_dict({"max_psnr_drop": 0.5, "max_grid_ratio": 1.3})
    assert best_refusal({"psnr": 29.6, "grid": 1.3}, initial, both) is None
    assert "dB below" in best_refusal({"psnr": 29.4, "grid": 1.0}, initial, both)
    assert "grid residual 1.3100 exceeds 1.3 x the initial 1.0000" in best_refusal({"psnr": 30.0, "grid": 1.31},
                                                                                   initial, both)
    off = GanConfig.from_dict({})
    assert off.max_grid_ratio is None and best_refusal({"psnr": 0.0, "grid": 99.0}, None, off) is None
    with pytest.raises(ValueError, match="max_grid_ratio"):
        GanConfig.from_dict({"max_grid_ratio": -1})


def test_grid_residual_logged_and_the_grid_guard_refuses_best(tmp_path, weights_dir, l1_checkpoint):
    """gan.max_grid_ratio = 0 refuses every validation (a trained generator's grid residual is > 0):
    no best.pt, the validation grid residual in log.csv and in last.pt's meta."""
    data = _cfg(tmp_path, "grid", l1_checkpoint, max_grid_ratio=0.0)
    data.update(steps=4, val_every=2)
    result = train(TrainConfig.from_dict(data), progress=False)
    rows = [r for r in csv.DictReader(open(tmp_path / "grid" / "log.csv")) if r["val_psnr"]]
    assert len(rows) == 2 and all(float(r["val_grid"]) > 0 for r in rows)
    meta = read_checkpoint(tmp_path / "grid" / "last.pt")["meta"]
    assert meta["initial"]["grid"] > 0 and meta["val"]["grid"] == pytest.approx(float(rows[-1]["val_grid"]), abs=1e-4)
    assert not (tmp_path / "grid" / "best.pt").exists() and result.best_lpips is None
    assert (tmp_path / "grid" / "curves.png").is_file()
