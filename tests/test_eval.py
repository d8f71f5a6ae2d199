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
