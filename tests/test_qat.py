"""Quantization-aware training: fake quantization where the int8 TFLite quantizes, the learnt ranges in the
export, kill -9 resume, clear errors."""
import json

import numpy as np
import pytest
import torch
import yaml

from tinysr.bundled import sample_photo
from tinysr.checkpoint import load_model
from tinysr.cli.main import main
from tinysr.export.qat import QATError, QATModel, _convert, learnt_tensor_params
from tinysr.export.quantize import int8_tensor_plan, tflite_int8
from tinysr.imageio import load_rgb_uint8
from tinysr.train.config import TrainConfig
from tinysr.train.trainer import train

from conftest import PReLUNet, killed_and_resumed


def _photo_crops(n=4, size=(40, 56), seed=0):
    """LR-sized crops of the bundled photo, NCHW float in [0, 1] (8-bit values)."""
    img = load_rgb_uint8(sample_photo())
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y = int(rng.integers(0, img.shape[0] - size[0]))
        x = int(rng.integers(0, img.shape[1] - size[1]))
        crop = img[y:y + size[0], x:x + size[1]].astype(np.float32) / 255.0
        out.append(torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous())
    return out


def _observed(name, crops):
    q = QATModel(load_model(name))
    q.train()
    with torch.no_grad():
        for c in crops:
            q(c)
    q.freeze()
    return q.eval()


def _int8_output(flat: bytes, x: torch.Tensor) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flat)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(i["index"], x.permute(0, 2, 3, 1).numpy().copy())
    it.invoke()
    return it.get_tensor(o["index"])


def _grey(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0, 1) * 255.0)


@pytest.mark.parametrize("name", ["quicksrnet_s_x4", "espcn_x4", "xlsr_x4"])
def test_int8_tflite_equals_the_fake_quant_forward(name):
    """The learnt ranges exported unchanged: the int8 TFLite computes what the training's forward computed (to
    within 1 grey level on >= 99.9% of output pixels; the rest is the integer kernels' rounding)."""
    crops = _photo_crops(6)
    q = _observed(name, crops[:4])
    close = []
    for x in crops[4:]:
        with torch.no_grad():
            ref = q(x).permute(0, 2, 3, 1).numpy()
        flat = _convert(q.net, tuple(x.shape[-2:]))
        got = _int8_output(tflite_int8(flat, [], learnt=learnt_tensor_params(q, flat)), x)
        close.append((np.abs(_grey(ref) - _grey(got)) <= 1).ravel())
    share = float(np.concatenate(close).mean())  # of all output pixels
    assert share >= 0.999, share
    # and the fake quantization is not a no-op: it moves the output away from the float network's
    with torch.no_grad():
        fp = q.net(crops[4]).permute(0, 2, 3, 1).numpy()
        fq = q(crops[4]).permute(0, 2, 3, 1).numpy()
    assert np.mean(_grey(fp) != _grey(fq)) > 0.01


def test_per_channel_prelu_trains_as_the_int8_graph_computes_it():
    """A per-channel PReLU is exported as x + (slopes - 1) * MINIMUM(x, 0) in int8 ops (slopes here below 0, in
    [0, 1] and above 1): the fake-quant forward rounds the product where the int8 graph does, so the int8 TFLite
    with the learnt ranges computes exactly what it computes (measured: max difference 0.000 of 255; rounding the
    PReLU as a plain PReLU of int8 slopes instead: mean 0.10, max 1.0)."""
    from tinysr.export.flatbuffer import op_histogram

    crops = _photo_crops(6)
    q = QATModel(PReLUNet([list(np.linspace(-0.3, 1.4, 8)), list(np.linspace(0.1, 0.6, 8))]))
    q.train()
    with torch.no_grad():
        for c in crops[:4]:
            q(c)
    q.freeze()
    q.eval()
    close = []
    for x in crops[4:]:
        with torch.no_grad():
            ref = q(x).permute(0, 2, 3, 1).numpy()
        flat = _convert(q.net, tuple(x.shape[-2:]))
        int8 = tflite_int8(flat, [], learnt=learnt_tensor_params(q, flat))
        assert op_histogram(int8)["MINIMUM"] == 2 and "PRELU" not in op_histogram(int8)
        close.append(float(np.abs(ref - _int8_output(int8, x)).max()) * 255)
    assert max(close) < 0.01, close


def test_points_are_where_the_int8_graph_has_its_own_ranges():
    q = QATModel(load_model("quicksrnet_s_x4"))
    flat = _convert(q.net, (24, 32))
    plan = int8_tensor_plan(flat)
    kinds = [e[0] for e in plan.values()]
    assert kinds.count("same") == 1  # the depth-to-space shares its input's range: no point of its own
    assert len(q.points) == sum(k != "same" for k in kinds)
    nodes = {n.name: n for n in q.graph.nodes}
    assert not any(nodes[p].op == "call_module" and isinstance(q.net.get_submodule(nodes[p].target),
                                                               torch.nn.PixelShuffle) for p in q.points)
    x = next(n.name for n in q.graph.nodes if n.op == "placeholder")
    assert x in q.points  # the input: the fixed [0, 1] range, 8-bit values exact
    fq_in = q.fq[q.points[x]]
    assert float(fq_in.scale) == pytest.approx(1 / 255) and int(fq_in.zero_point) == -128


def test_qat_errors_are_one_line():
    with pytest.raises(QATError, match="ConvTranspose2d"):
        QATModel(load_model("fsrcnn_x4"))
    with pytest.raises(ValueError, match="qat: needs init_from"):
        TrainConfig.from_dict({"model": "quicksrnet_s_x4", "qat": {}})
    with pytest.raises(ValueError, match="freeze_after"):
        TrainConfig.from_dict({"model": "quicksrnet_s_x4", "init_from": "quicksrnet_s_x4", "qat": {"freeze_after": -1}})
    q = QATModel(load_model("quicksrnet_s_x4"))
    rec = q.record()
    rec["points"] = {"head": "p0"}
    with pytest.raises(QATError, match="points do not match"):
        q.load_record(rec)


def _config(tmp_path, photo_dir, name, **kw):
    cfg = {"model": "quicksrnet_s_x4", "init_from": "quicksrnet_s_x4", "train_data": [str(photo_dir)],
           "val_data": str(photo_dir), "out_dir": str(tmp_path / name), "patch_size": 16, "batch_size": 4, "steps": 24,
           "lr": 1e-4, "val_every": 8, "ckpt_every": 4, "seed": 1, "workers": 0, "threads": 1,
           "qat": {"freeze_after": 12}, **kw}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_killed_qat_run_resumes_exactly_and_exports_its_ranges(tmp_path, photo_dir):
    ref = train(TrainConfig.from_file(_config(tmp_path, photo_dir, "ref")), progress=False)
    assert ref.step == 24
    cfg_path, out = _config(tmp_path, photo_dir, "run"), tmp_path / "run"
    a, b = killed_and_resumed(cfg_path, out, tmp_path / "ref", 8, 24, timeout=240)
    for k in b["qat"]["fq"]:
        assert torch.equal(a["qat"]["fq"][k], b["qat"]["fq"][k]), k
    assert bool(b["qat"]["fq"]["frozen"])  # frozen at step 12
    assert a["state_dict"].keys() == load_model("quicksrnet_s_x4").state_dict().keys()  # the plain network

    # the checkpoint is a plain network for eval / upscale; export takes its ranges, with no calibration
    assert load_model(str(out / "last.pt")).scale == 4
    art = tmp_path / "q.tflite"
    assert main(["export", "--model", str(out / "last.pt"), "--target", "tflite", "--precision", "int8",
                 "--input-size", "24x32", "-o", str(art)]) == 0
    card = json.loads(art.with_suffix(".json").read_text())
    assert card["calibration"]["method"] == "qat" and card["calibration"]["crops"] == 0
    q = QATModel(load_model(str(out / "last.pt")))
    q.load_record(a["qat"])
    learnt = sorted(round(s, 9) for s, _ in q.qparams().values())
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(art))
    scales = {round(float(d["quantization"][0]), 9) for d in it.get_tensor_details()
              if d["dtype"] == np.int8 and d["quantization"][0] > 0}
    assert set(learnt) <= scales


def test_frozen_ranges_stay_and_eval_never_moves_them():
    crops = _photo_crops(3)
    q = QATModel(load_model("quicksrnet_s_x4")).train()
    with torch.no_grad():
        q(crops[0])
        before = q.qparams()
        q.eval()
        q(crops[1] * 0.2)  # validation: the observers are off
        assert q.qparams() == before
        q.train()
        q(crops[1] * 0.2)  # training: they move
        moved = q.qparams()
        assert moved != before
        q.freeze()
        q.train()
        q(crops[2])
        assert q.qparams() == moved


def test_a_qat_run_refuses_another_network_and_an_fp32_checkpoint(tmp_path, photo_dir, capsys):
    cfg = _config(tmp_path, photo_dir, "bad", init_from="espcn_x4")
    assert main(["train", str(cfg), "-q"]) == 2
    assert "is not the config's network" in capsys.readouterr().err
    fp32 = _config(tmp_path, photo_dir, "fp32", qat=None, init_from=None, steps=4, ckpt_every=4)
    assert main(["train", str(fp32), "-q"]) == 0
    cfg = _config(tmp_path, photo_dir, "fp32")
    assert main(["train", str(cfg), "-q"]) == 2
    assert "from an fp32 run" in capsys.readouterr().err
