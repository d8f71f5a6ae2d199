"""L1 training: config + overrides, checkpoints, kill-and-resume to the same step, x2 -> x4 init."""

import pytest
import torch
import yaml

from tinysr.checkpoint import load_model, read_checkpoint
from tinysr.cli.main import main
from tinysr.train.config import TrainConfig
from tinysr.train.trainer import train

from conftest import killed_and_resumed


def _config(tmp_path, photo_dir, name, **kw):
    cfg = {"model": "tpsr_x2", "train_data": [str(photo_dir)], "val_data": str(photo_dir),
           "out_dir": str(tmp_path / name), "patch_size": 16, "batch_size": 4, "steps": 30, "lr": 1e-3,
           "val_every": 10, "ckpt_every": 5, "seed": 3, "workers": 0, "threads": 1, **kw}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_file_and_overrides(tmp_path, photo_dir):
    cfg = TrainConfig.from_file(_config(tmp_path, photo_dir, "a")).override(["steps=7", "scheduler=step"])
    assert cfg.steps == 7 and cfg.scheduler == "step" and cfg.model == "tpsr_x2"
    (tmp_path / "c.toml").write_text('model = "tpsr_x4"\nsteps = 5\n')
    assert TrainConfig.from_file(tmp_path / "c.toml").model == "tpsr_x4"
    with pytest.raises(ValueError, match="unknown key"):
        cfg.override(["stepz=3"])
    with pytest.raises(ValueError, match="scheduler"):
        cfg.override(["scheduler=linear"])


def test_killed_run_resumes_to_the_same_weights(tmp_path, photo_dir):
    ref_cfg = TrainConfig.from_file(_config(tmp_path, photo_dir, "ref"))
    ref = train(ref_cfg, progress=False)
    assert ref.step == 30 and ref.best_psnr is not None

    cfg_path = _config(tmp_path, photo_dir, "run")
    out = tmp_path / "run"
    killed_and_resumed(cfg_path, out, tmp_path / "ref", 10, 30, timeout=120)
    rows = (out / "log.csv").read_text().splitlines()
    steps = [int(r.split(",")[0]) for r in rows[1:]]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    assert (out / "best.pt").is_file() and (out / "curves.png").is_file()
    assert load_model(str(out / "best.pt")).scale == 2


def test_init_x4_from_x2_checkpoint(tmp_path, photo_dir):
    x2 = train(TrainConfig.from_file(_config(tmp_path, photo_dir, "x2", steps=5)), progress=False)
    cfg = TrainConfig.from_file(_config(tmp_path, photo_dir, "x4", model="tpsr_x4", steps=1, val_data=None,
                                        init_from=str(x2.out_dir / "last.pt"), lr=1e-12))
    train(cfg, progress=False)
    src = read_checkpoint(x2.out_dir / "last.pt")["state_dict"]
    dst = read_checkpoint(tmp_path / "x4" / "last.pt")["state_dict"]
    assert torch.allclose(src["cell.nodes.0.op.dw.weight"], dst["cell.nodes.0.op.dw.weight"], atol=1e-6)
    assert torch.allclose(src["up.0.conv.weight"], dst["up.0.conv.weight"], atol=1e-6)
    assert "up.1.conv.weight" in dst and "up.1.conv.weight" not in src


def test_train_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--model", "tpsr_x4", "--out-dir", str(tmp_path / "o"), "--steps", "1", "-q"]) == 2
    assert "no train_data" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_of_another_wiring(tmp_path, photo_dir, capsys):
    # same ops, node 2 reads node 0 instead of node 1: every tensor has the same name and shape
    a, b = "conv3@in conv3@0 conv3@1", "conv3@in conv3@0 conv3@0"
    cfg_path = _config(tmp_path, photo_dir, "w", genotype=a, steps=4, val_data=None)
    train(TrainConfig.from_file(cfg_path), progress=False)
    before = read_checkpoint(tmp_path / "w" / "last.pt")
    with pytest.raises(ValueError, match=r"genotype 'conv3@in conv3@0 conv3@1' vs 'conv3@in conv3@0 conv3@0'"):
        train(TrainConfig.from_file(cfg_path).override([f"genotype={b}", "steps=8"]), progress=False)
    capsys.readouterr()
    assert main(["train", str(cfg_path), "--genotype", b, "--steps", "8", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another architecture" in err[0] and "Traceback" not in err[0]
    after = read_checkpoint(tmp_path / "w" / "last.pt")
    assert after["meta"]["step"] == before["meta"]["step"] == 4 and after["config"]["genotype"] == a
    # the same architecture still resumes
    assert train(TrainConfig.from_file(cfg_path).override(["steps=6"]), progress=False).step == 6


def test_training_validation_is_the_eval_loop(tmp_path, photo_dir):
    from tinysr.data.datasets import benchmark_dataset
    from tinysr.evaluate import evaluate, mean_psnr, mean_row
    from tinysr.runtimes import TorchRunner

    res = train(TrainConfig.from_file(_config(tmp_path, photo_dir, "v", steps=10, val_every=10)), progress=False)
    model = load_model(str(res.out_dir / "last.pt"))
    ours = mean_row(evaluate(TorchRunner(model), photo_dir, lpips=False, progress=False)).psnr
    assert res.last_psnr == pytest.approx(ours, abs=1e-9)
    model.train()
    assert mean_psnr(model, benchmark_dataset(photo_dir, 2)) == pytest.approx(ours, abs=1e-9)
    assert model.training, "validation must hand the model back in training mode"
