import json
import shutil

import pytest
from PIL import Image

from tinysr.cli.main import main


@pytest.fixture
def tpsr_ckpt(tmp_path, official):
    out = tmp_path / "nogan.pt"
    assert main(["import-weights", str(official / "TPSR_NOGANX4.pt"), "-o", str(out)]) == 0
    return out


def test_hr_only_folder_matches_the_benchmark_layout(tmp_path, bench, tpsr_ckpt, capsys):
    hr_only = tmp_path / "hr_only"
    shutil.copytree(bench / "Set5" / "HR", hr_only)
    capsys.readouterr()
    assert main(["eval", "--model", str(tpsr_ckpt), "--data", str(bench / "Set5"), str(hr_only),
                 "--lpips", "off", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)["datasets"]
    # LR made on the fly by the MATLAB-compatible bicubic == the benchmark's LR files
    assert res["hr_only"]["mean"]["psnr"] == pytest.approx(res["Set5"]["mean"]["psnr"], abs=1e-9)


def test_table_lpips_and_saved_images(tmp_path, bench, tpsr_ckpt, weights_dir, capsys):
    capsys.readouterr()
    assert main(["eval", "--model", str(tpsr_ckpt), "--data", str(bench / "Set5"), "--save", str(tmp_path / "sr"),
                 "--compare", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "LPIPS" in out[2] and out[-1].startswith("mean")
    assert len([line for line in out if line.startswith("img_")]) == 5
    saved = sorted(p.name for p in (tmp_path / "sr" / "Set5").iterdir())
    assert "img_001.png" in saved and "img_001_compare.png" in saved
    assert Image.open(tmp_path / "sr" / "Set5" / "img_001.png").size == (512, 512)


def test_table_and_json_with_both_lpips_trunks():
    from tinysr.evaluate import Row, as_json, format_table, mean_row

    rows = [Row("a", 30.0, 0.9, 0.2, 0.1), Row("b", 32.0, 0.8, 0.4, 0.3)]
    m = mean_row(rows)
    assert (m.psnr, m.lpips, m.lpips_alex) == pytest.approx((31.0, 0.3, 0.2))
    both = format_table(rows).splitlines()
    assert both[0].split() == ["image", "PSNR", "SSIM", "LPIPS-VGG", "LPIPS-Alex"]
    assert both[-1].split() == ["mean", "31.000", "0.8500", "0.3000", "0.2000"]
    assert len({len(line) for line in both}) == 1  # columns line up
    vgg_only = format_table([Row("a", 30.0, 0.9, 0.2)]).splitlines()
    assert vgg_only[0].split() == ["image", "PSNR", "SSIM", "LPIPS"]  # the table as before
    alex_only = format_table([Row("a", 30.0, 0.9, None, 0.1)]).splitlines()
    assert alex_only[0].split() == ["image", "PSNR", "SSIM", "LPIPS-Alex"] and alex_only[2].split()[-1] == "0.1000"
    assert as_json(rows)["mean"]["lpips_alex"] == pytest.approx(0.2)
    assert as_json([Row("a", 30.0, 0.9, 0.2)])["mean"]["lpips_alex"] is None


def test_auto_lpips_both_keeps_the_trunk_whose_weights_exist(tmp_path, weights_dir, monkeypatch):
    from tinysr.evaluate import _lpips_models

    (tmp_path / "lpips_v0.1").mkdir()
    for rel in ("vgg16_features_imagenet_torchvision.pth", "lpips_v0.1/vgg.pth"):
        (tmp_path / rel).symlink_to(weights_dir / rel)
    monkeypatch.setenv("TINYSR_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("tinysr.weights_store.importlib.util.find_spec", lambda name: None)
    with pytest.warns(UserWarning, match="LPIPS-alex skipped: alexnet weights not found"):
        models = _lpips_models(None, "both")
    assert [m.net for m in models] == ["vgg"]
    with pytest.raises(FileNotFoundError, match="alexnet_features_imagenet_torchvision.pth"):
        _lpips_models(True, "both")
    assert _lpips_models(False, "both") == []
    with pytest.raises(ValueError, match="vgg, alex, both"):
        _lpips_models(None, "squeeze")


def test_lpips_net_both_on_set5(bench, tpsr_ckpt, weights_dir, capsys):
    capsys.readouterr()
    assert main(["eval", "--model", str(tpsr_ckpt), "--data", str(bench / "Set5"), "--lpips", "on",
                 "--lpips-net", "both", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)["datasets"]["Set5"]
    assert len(res["images"]) == 5 and all(r["lpips_alex"] is not None for r in res["images"])
    mean = res["mean"]
    # TPSR_NOGAN x4 on Set5: LPIPS-Alex 0.199 from an independent computation; PSNR from
    # shared/weights/MANIFEST.md; LPIPS-VGG 0.2255 is the README's measured figure (the default trunk)
    assert mean["lpips_alex"] == pytest.approx(0.199, abs=1e-3)
    assert mean["psnr"] == pytest.approx(31.103, abs=1e-3)
    assert mean["lpips"] == pytest.approx(0.2255, abs=1e-4)
