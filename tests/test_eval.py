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


# --- several models, comparison figures -------------------------------------------------------

@pytest.fixture
def tiny_bench(tmp_path):
    """An HR-only benchmark folder of two small images (LR made by the MATLAB bicubic)."""
    from conftest import rng_image

    d = tmp_path / "tiny"
    d.mkdir()
    Image.fromarray(rng_image(96, 128, seed=1)).save(d / "a.png")
    Image.fromarray(rng_image(112, 96, seed=2)).save(d / "b.png")
    return d


@pytest.fixture
def random_ckpt(tmp_path):
    import torch

    from tinysr.checkpoint import save_checkpoint
    from tinysr.models import create_model

    torch.manual_seed(0)
    out = tmp_path / "rand.pt"
    save_checkpoint(out, create_model("tpsr_x4"))
    return out


def test_compare_two_models_one_figure_per_image(tmp_path, tiny_bench, random_ckpt, capsys, monkeypatch):
    import numpy as np

    import tinysr.evaluate as ev

    calls = []
    upscale = ev.upscale_array
    monkeypatch.setattr(ev, "upscale_array", lambda *a, **k: calls.append(1) or upscale(*a, **k))
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["eval", "--model", "tpsr_x4", str(random_ckpt), "--data", str(tiny_bench), "--save", str(out),
                 "--compare", "--crop-size", "48", "--crop-at", "10,20", "--lpips", "off", "--json", "-q"]) == 0
    assert len(calls) == 2 * 2  # each model ran once per image: the figures reuse the scored outputs
    res = json.loads(capsys.readouterr().out)["models"]
    assert list(res) == ["tpsr_x4", "rand"]  # keyed by label: the model names by default
    assert res["rand"]["model"] == str(random_ckpt) and res["tpsr_x4"]["scale"] == 4
    assert res["tpsr_x4"]["datasets"]["tiny"]["mean"]["psnr"] > res["rand"]["datasets"]["tiny"]["mean"]["psnr"]
    folder = out / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["a_compare.png", "b_compare.png", "rand", "tpsr_x4"]
    assert sorted(p.name for p in (folder / "rand").iterdir()) == ["a.png", "b.png"]

    fig = np.asarray(Image.open(folder / "a_compare.png").convert("RGB"))
    k = -(-256 // 48)  # nearest-neighbour zoom to at least 256 px
    side, gap = 48 * k, 4
    assert fig.shape[1] == 4 * side + 3 * gap and fig.shape[0] > side  # 4 panels, a label strip under them
    strip = fig[side:]
    assert (strip < 128).any() and (strip == 255).mean() > 0.8  # dark text on white
    hr = np.asarray(Image.open(tiny_bench / "a.png").convert("RGB"))
    crop_hr = hr[10:58, 20:68].repeat(k, 0).repeat(k, 1)
    np.testing.assert_array_equal(fig[:side, 3 * (side + gap):], crop_hr)  # ground truth at --crop-at
    sr = np.asarray(Image.open(folder / "tpsr_x4" / "a.png").convert("RGB"))
    np.testing.assert_array_equal(fig[:side, side + gap:2 * side + gap], sr[10:58, 20:68].repeat(k, 0).repeat(k, 1))

    # another --crop-at moves the crop; one past the edge is clipped to the image
    assert main(["eval", "--model", "tpsr_x4", "tpsr_x4", "--labels", "L1,GAN", "--data", str(tiny_bench),
                 "--save", str(tmp_path / "moved"), "--compare", "--crop-size", "48", "--crop-at", "500,500",
                 "--lpips", "off", "-q"]) == 0
    table = capsys.readouterr().out
    assert "tiny, L1 (x4" in table and "tiny, GAN (x4" in table
    moved = np.asarray(Image.open(tmp_path / "moved" / "tiny" / "a_compare.png").convert("RGB"))
    assert moved.shape == fig.shape and not np.array_equal(moved, fig)
    np.testing.assert_array_equal(moved[:side, 3 * (side + gap):], hr[-48:, -48:].repeat(k, 0).repeat(k, 1))
    assert sorted(p.name for p in (tmp_path / "moved" / "tiny").iterdir() if p.is_dir()) == ["GAN", "L1"]


def test_one_model_compare_keeps_the_layout(tmp_path, tiny_bench, capsys):
    out = tmp_path / "out"
    assert main(["eval", "--model", "tpsr_x4", "--data", str(tiny_bench), "--save", str(out), "--compare",
                 "--lpips", "off", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"] == "tpsr_x4" and set(res["datasets"]) == {"tiny"}  # JSON as before
    assert sorted(p.name for p in (out / "tiny").iterdir()) == ["a.png", "a_compare.png", "b.png", "b_compare.png"]
    fig = Image.open(out / "tiny" / "b_compare.png")
    side = 96 * 3  # default crop: 48 LR pixels (192 HR), clipped to the 96-pixel side, zoomed x3 -> 288
    assert fig.size[0] == 3 * side + 2 * 4 and fig.size[1] > side


def test_crop_box_defaults_and_clipping():
    from tinysr.evaluate import Crop

    assert Crop().box(400, 600, 4) == (104, 204, 192)  # centred, 48 LR pixels
    assert Crop(size=100).box(400, 600, 2) == (150, 250, 100)
    assert Crop(64, (10, 20)).box(400, 600, 4) == (10, 20, 64)
    assert Crop(64, (390, 590)).box(400, 600, 4) == (336, 536, 64)  # clipped to the image
    assert Crop(1000, (5, 5)).box(400, 600, 4) == (0, 5, 400)
    with pytest.raises(ValueError, match="at least 1"):
        Crop(0)


def test_comparison_figure_labels_and_sizes(tmp_path):
    import numpy as np

    from tinysr.evaluate import Row, comparison_figure, score_label

    assert score_label("GAN", Row("x", 27.8149, lpips=0.1212)) == "GAN  27.81 dB / 0.121"
    assert score_label("GAN", Row("x", 27.8149, lpips_alex=0.2)) == "GAN  27.81 dB / 0.200"
    assert score_label("L1", Row("x", 30.0)) == "L1  30.00 dB"
    img = np.zeros((40, 40, 3), np.uint8)
    comparison_figure(tmp_path / "short.png", img, [("A  1.00 dB", img)], img)
    comparison_figure(tmp_path / "long.png", img, [("a very long model name that cannot fit  12.34 dB / 0.567", img)],
                      img)
    short, long_ = Image.open(tmp_path / "short.png"), Image.open(tmp_path / "long.png")
    assert short.size[0] == long_.size[0] == 3 * 280 + 2 * 4  # 40 px zoomed x7
    assert long_.size[1] > short.size[1] > 280  # the long label takes two lines
    with pytest.raises(ValueError, match="'B' is 20x40"):
        comparison_figure(tmp_path / "bad.png", img, [("B", img[:, :20])], img)
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("extra, words", [
    (["--labels", "L1"], ["--labels 'L1'", "1 label(s) for 2 model(s)"]),
    (["--labels", "A,A"], ["'A' is given twice"]),
    (["--labels", "A,B", "--compare", "--save", "out", "--crop-at", "12"], ["--crop-at '12'", "Y,X", "e.g. 100,200"]),
    (["--labels", "A,B", "--compare", "--save", "out", "--crop-at", "a,b"], ["--crop-at 'a,b'", "Y,X"]),
    (["--labels", "A,B", "--compare", "--save", "out", "--crop-size", "0"], ["--crop-size 0", "at least 1"]),
    (["--labels", "A,B", "--crop-at", "1,2"], ["add --compare"]),
    (["--labels", "A,B", "--compare"], ["give --save"]),
    ([], ["both called 'tpsr_x4'", "--labels"]),
])
def test_eval_option_errors_are_one_line(extra, words, tmp_path, capsys):
    capsys.readouterr()
    rc = main(["eval", "--model", "tpsr_x4", "tpsr-x4", "--data", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("tinysr: error: "), err
    assert all(w in err for w in words), err
