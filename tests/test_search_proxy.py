"""The search's proxy task: held-out split, deterministic batches, short training, scoring."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import rng_image
from tinysr.data.bicubic import downscale, imresize
from tinysr.evaluate import mean_psnr
from tinysr.imageio import load_rgb_uint8
from tinysr.metrics.psnr_ssim import psnr_y
from tinysr.models.tpsr import CellSR
from tinysr.search.generator.proxy import (ProxyData, ProxyResult, ProxyTask, bicubic_psnr, evaluate_candidate, train_steps,
                                 validation_psnr)

SMALL = "conv3@in conv3@0"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``clean``: 8 smooth images; ``mixed``: 3 smooth images and a corrupt file; ``blocks``: 8 images
    of 2x2 HR blocks (sharp edges: bicubic blurs them, a network quickly learns to restore them)."""
    root = tmp_path_factory.mktemp("proxy")
    clean, mixed, blocks = root / "clean", root / "mixed", root / "blocks"
    for d in (clean, mixed, blocks):
        d.mkdir()
    for i in range(8):
        h, w = 64 + 8 * i, 128 - 8 * i
        Image.fromarray(rng_image(h, w, seed=i)).save(clean / f"c{i}.png")
        block = np.random.default_rng(100 + i).integers(0, 256, (h // 2, w // 2, 3)).astype(np.uint8)
        Image.fromarray(block.repeat(2, 0).repeat(2, 1)).save(blocks / f"b{i}.png")
    for i in range(3):
        Image.fromarray(rng_image(80, 96, seed=50 + i)).save(mixed / f"m{i}.png")
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return {"clean": str(clean), "mixed": str(mixed), "blocks": str(blocks)}


def _task(folders, **kw):
    args = dict(train_data=[folders["clean"]], scale=2, val_images=2, val_size=12, patch_size=8, batch_size=4,
                steps=6, lr=5e-3)
    args.update(kw)
    return ProxyTask(**args)


def _quiet_load(task):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ProxyData.load(task)


# ------------------------------------------------------------------------------ the split
def test_split_disjoint_deterministic_and_seed_independent(folders):
    task = _task(folders, val_images=3)
    a, b = ProxyData.load(task), ProxyData.load(task)
    assert a.val_names == b.val_names and a.train_names == b.train_names
    assert len(a.val_names) == 3 and len(a.train_names) == 5
    assert not set(a.val_names) & set(a.train_names)
    assert sorted(a.val_names + a.train_names) == sorted(str(p) for p in Path(folders["clean"]).iterdir())
    other_seed = ProxyData.load(_task(folders, val_images=3, seed=7, patch_size=10))
    assert other_seed.val_names == a.val_names
    assert sorted(other_seed.train_names) == sorted(a.train_names)
    assert a.fingerprint() == b.fingerprint() != other_seed.fingerprint()
    # the hold-out is a fixed permutation of the file list, not simply its first or last files
    names = sorted(str(p) for p in Path(folders["clean"]).iterdir())
    assert a.val_names not in (names[:3], names[-3:])
    assert len(ProxyData.load(_task(folders, val_images=3, max_train_images=2)).train_names) == 2


def test_validation_pairs_are_centre_crops_with_matlab_bicubic_lr(folders):
    data = ProxyData.load(_task(folders, val_images=2, val_size=12))
    for name, (lr, hr) in zip(data.val_names, data.val):
        assert lr.shape == (3, 12, 12) and hr.shape == (3, 24, 24)
        img = load_rgb_uint8(name)
        h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
        y, x = (h - 24) // 2, (w - 24) // 2
        crop = img[y:y + 24, x:x + 24]
        assert np.array_equal(np.round(hr.numpy().transpose(1, 2, 0) * 255).astype(np.uint8), crop)
        assert np.array_equal(np.round(lr.numpy().transpose(1, 2, 0) * 255).astype(np.uint8), downscale(crop, 2))
    whole = ProxyData.load(_task(folders, val_images=1, val_size=0))
    img = load_rgb_uint8(whole.val_names[0])
    assert whole.val[0][1].shape == (3, img.shape[0] // 2 * 2, img.shape[1] // 2 * 2)


@pytest.mark.parametrize("val_images", [4, 8])  # the corrupt file falls on the training / validation side
def test_corrupt_file_skipped_with_warning(folders, val_images):
    task = _task(folders, train_data=[folders["clean"], folders["mixed"]], val_images=val_images)
    with pytest.warns(UserWarning, match="broken.png") as record:
        data = ProxyData.load(task)
    assert len(record) == 1
    everything = data.val_names + data.train_names
    assert len(data.val_names) == val_images and len(everything) == 11 == len(set(everything))
    assert not any(n.endswith("broken.png") for n in everything)


def test_too_many_validation_images_is_one_line_error(folders):
    with pytest.raises(ValueError, match="val_images=8 leaves no training image") as e:
        ProxyData.load(_task(folders, val_images=8))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="twice"):
        ProxyData.load(_task(folders, train_data=[folders["clean"], folders["clean"]]))


# ---------------------------------------------------------------------------- batches
def test_batches_deterministic_per_seed_and_step(folders):
    data = ProxyData.load(_task(folders))
    first, again = list(data.batches(3)), list(data.batches(3))
    assert len(first) == 3
    for (lr, hr), (lr2, hr2) in zip(first, again):
        assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 16, 16)
        assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    resumed = list(data.batches(3, start=2))
    assert len(resumed) == 1 and torch.equal(resumed[0][0], first[2][0])
    other = list(data.batches(3, seed=1))
    assert not torch.equal(other[0][1], first[0][1])
    assert not torch.equal(first[0][1], first[1][1])
    # the task's seed is the default
    seeded = ProxyData.load(_task(folders, seed=1))
    assert torch.equal(next(seeded.batches(1))[1], other[0][1])


# ----------------------------------------------------------------------------- training
def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))


def _memory_batches(n):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        hr = torch.nn.functional.interpolate(torch.rand(4, 3, 8, 8, generator=g), scale_factor=4, mode="bilinear")
        out.append((torch.nn.functional.avg_pool2d(hr, 2), hr))
    return out


def test_train_steps_lowers_loss_on_in_memory_batches():
    model = _tiny_model()
    losses = train_steps(model, _memory_batches(60), 60, lr=1e-2, lr_min=1e-4)
    assert len(losses) == 60 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert model.training


def test_train_steps_follows_the_trainers_cosine_schedule(monkeypatch):
    import tinysr.search.generator.proxy as proxy

    made, original = [], proxy.make_scheduler

    def recording(opt, cfg):
        made.append(original(opt, cfg))
        return made[-1]

    monkeypatch.setattr(proxy, "make_scheduler", recording)
    train_steps(_tiny_model(), _memory_batches(8), 8, lr=1e-2, lr_min=1e-4)
    (sched,) = made
    assert sched.last_epoch == 8 and sched.get_last_lr()[0] == pytest.approx(1e-4)
    assert sched.lr_lambdas[0](4) == pytest.approx((1e-2 + 1e-4) / 2 / 1e-2)


def test_train_steps_errors_clearly():
    with pytest.raises(ValueError, match="ran out after 3 of 5 steps") as e:
        train_steps(_tiny_model(), _memory_batches(3), 5)
    assert "\n" not in str(e.value)
    bad = _memory_batches(3)
    bad[1] = (bad[1][0], torch.full_like(bad[1][1], float("nan")))
    with pytest.raises(ValueError, match="at step 2 of 3"):
        train_steps(_tiny_model(), bad, 3)


# ------------------------------------------------------------------------------ scoring
class _Pairs:
    """A dataset view of in-memory pairs, as ``tinysr.evaluate`` scores datasets."""

    def __init__(self, pairs):
        self.pairs, self.names = pairs, [f"p{i}" for i in range(len(pairs))]

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]


def test_validation_psnr_matches_independent_reference(folders):
    data = ProxyData.load(_task(folders, val_images=2))
    torch.manual_seed(3)
    model = CellSR(SMALL, 2, 8)
    model.train()
    lr, hr = data.val[0]
    with torch.no_grad():
        out = model(lr[None])[0].numpy().transpose(1, 2, 0)
    sr8 = np.floor(np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    hr8 = np.floor(hr.numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    expected = psnr_y(sr8, hr8, 2)
    assert validation_psnr(model, data.val[:1]) == pytest.approx(expected, abs=1e-9)
    assert model.training  # put back in the mode it was in
    assert validation_psnr(model, data.val[:1], shave=4) == pytest.approx(psnr_y(sr8, hr8, 4), abs=1e-9)
    assert validation_psnr(model, data.val) == pytest.approx(mean_psnr(model, _Pairs(data.val)), abs=1e-9)
    model.eval()
    validation_psnr(model, data.val)
    assert not model.training


def test_bicubic_psnr_reference_and_below_trained_model(folders):
    data = ProxyData.load(_task(folders, train_data=[folders["blocks"]], val_images=2, batch_size=8, steps=80))
    lr, hr = data.val[0]
    lr8 = np.floor(lr.numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    hr8 = np.floor(hr.numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    assert bicubic_psnr(data.val[:1], 2) == pytest.approx(psnr_y(imresize(lr8, output_shape=hr8.shape[:2]), hr8, 2))
    bic = bicubic_psnr(data.val, 2)
    result = evaluate_candidate("conv3@in", None, data.task, data, n_feats=8)
    assert result.psnr > bic + 2.0


# -------------------------------------------------------------------------- candidates
def test_evaluate_candidate_deterministic_and_uses_init(folders):
    task = _task(folders, steps=5)
    data = ProxyData.load(task)
    threads = torch.get_num_threads()
    a = evaluate_candidate(SMALL, None, task, data, n_feats=8)
    b = evaluate_candidate(SMALL, None, task, data, n_feats=8)
    assert isinstance(a, ProxyResult) and np.isfinite(a.psnr) and np.isfinite(a.final_loss)
    assert a.psnr == b.psnr and a.final_loss == b.final_loss
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert a.train_s > 0 and a.val_s > 0
    assert torch.get_num_threads() == threads

    # the initial state is what the model starts from: the task seed's own weights give the same result ...
    torch.manual_seed(task.seed)
    own = CellSR(SMALL, 2, 8).state_dict()
    same = evaluate_candidate(SMALL, own, task, data, n_feats=8)
    assert same.psnr == a.psnr and all(torch.equal(same.state_dict[k], a.state_dict[k]) for k in a.state_dict)
    # ... other weights another one
    torch.manual_seed(99)
    other = evaluate_candidate(SMALL, CellSR(SMALL, 2, 8).state_dict(), task, data, n_feats=8)
    assert other.psnr != a.psnr
    assert not torch.equal(other.state_dict["head.weight"], a.state_dict["head.weight"])
    with pytest.raises(RuntimeError, match="Missing key"):
        evaluate_candidate(SMALL, {k: v for k, v in own.items() if k != "head.bias"}, task, data, n_feats=8)

    fresh = CellSR(SMALL, 2, 8)
    fresh.load_state_dict(a.state_dict, strict=True)
    assert all(v.device.type == "cpu" for v in a.state_dict.values())
    assert validation_psnr(fresh, data.val) == a.psnr


def test_evaluate_candidate_leaves_caller_rng_alone(folders):
    task = _task(folders, steps=2)
    data = ProxyData.load(task)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    evaluate_candidate(SMALL, None, task, data, n_feats=8)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------- the task
def test_task_from_dict_validates(folders):
    task = ProxyTask.from_dict({"train_data": folders["clean"], "steps": 100, "lr": 1e-3})
    assert task.train_data == [folders["clean"]] and task.steps == 100
    assert ProxyTask.from_dict(task.to_dict()) == task
    cases = [({"train_data": ["x"], "stepz": 3}, "stepz"),
             ({"train_data": ["x"], "steps": "many"}, r"steps must be an integer, got 'many'"),
             ({"train_data": ["x"], "batch_size": True}, r"batch_size must be an integer, got True"),
             ({"train_data": ["x"], "lr": "fast"}, r"lr must be a number, got 'fast'"),
             ({"train_data": [1, 2]}, r"train_data must be a list of strings"),
             ({"train_data": ["x"], "val_images": 0}, "val_images must be a positive integer"),
             ({"train_data": ["x"], "scale": 3}, "power of two"),
             ({"train_data": ["x"], "lr_min": 1.0}, "lr_min must be between"),
             ({"steps": 3}, "train_data .* is required")]
    for data, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            ProxyTask.from_dict(data, source="cfg: proxy")
        assert "\n" not in str(e.value) and str(e.value).startswith("cfg: proxy")
    with pytest.raises(FileNotFoundError, match=r"^cfg: proxy: train_data: nowhere/T92: no such folder"):
        ProxyTask.from_dict({"train_data": [folders["clean"], "nowhere/T92"]}, source="cfg: proxy")
