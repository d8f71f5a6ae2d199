"""Runners take an artifact's I/O from its model card (tinysr.model-card/1): layout, value range,
dtype and int8 quantization, scale and input size; a card of another format, or not strict JSON,
is a one-line error naming it."""
import json
import shutil

import numpy as np
import pytest
import torch

from tinysr.bundled import sample_image
from tinysr.checkpoint import load_model
from tinysr.cli.main import main
from tinysr.imageio import load_rgb_uint8
from tinysr.runtimes import LiteRTRunner


@pytest.fixture(scope="module")
def int8io(tpsr_int8io):
    return tpsr_int8io


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def _crop():
    img = load_rgb_uint8(sample_image())[40:72, 60:92]
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255


def _copy_with_card(src, dst_dir, change):
    art = dst_dir / src.name
    shutil.copyfile(src, art)
    card = json.loads(src.with_suffix(".json").read_text())
    change(card)
    art.with_suffix(".json").write_text(json.dumps(card))
    return art


def test_runner_takes_io_from_the_card(int8io, tmp_path):
    r = LiteRTRunner(int8io)
    assert (r.scale, r.fixed_size, r.layout) == (4, (32, 32), "nhwc")
    x = _crop()
    with torch.no_grad():
        ref = load_model("tpsr_x4")(torch.from_numpy(x)).numpy()
    good = _psnr(r(x), ref)
    # the same artifact with a card that gives another input scale: the runner quantizes as the card says
    art = _copy_with_card(int8io, tmp_path, lambda c: c["input"]["quantization"].__setitem__(
        "scale", 2 * c["input"]["quantization"]["scale"]))
    bad = _psnr(LiteRTRunner(art)(x), ref)
    print(f"int8 vs fp32 PSNR: {good:.1f} dB with the card's quantization, {bad:.1f} dB with a wrong scale")
    assert good > 35 and bad < good - 10


@pytest.mark.parametrize("change, message", [
    (lambda c: c.__setitem__("format", "tinysr-model-card-v1"), "format 'tinysr-model-card-v1', this tinysr reads"),
    (lambda c: c["parity"].__setitem__("psnr_vs_torch_db", float("inf")), "invalid JSON: Infinity is not JSON"),
    (lambda c: c["input"].__setitem__("shape", ["N", 32, 32, 3]), "input.shape[0]: expected int, got a string"),
    (lambda c: c["input"].__setitem__("dtype", "float32"), "the card says float32 input, int8io.tflite has int8"),
])
def test_other_cards_are_one_line_errors(int8io, tmp_path, capsys, change, message):
    art = _copy_with_card(int8io, tmp_path, change)
    assert main(["upscale", str(sample_image()), "-o", str(tmp_path / "o.png"), "--model", str(art), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinysr: error: {art.with_suffix('.json')}: ") and err.count("\n") == 1
    assert message in err and not (tmp_path / "o.png").exists()
