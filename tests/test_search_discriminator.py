"""The discriminator search (TPSR Sec. 3.3) on the generator search's machinery: its space, its
reward (best of the last three LPIPS), a run end to end, kill -9 and resume, the process pool, the CLI."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tinysr.models.discriminators import DEFAULT_D_GENOTYPE, DECISION_SIZES, DiscriminatorGenotype
from tinysr.search.core import run_store
from tinysr.search.discriminator.config import DiscriminatorSearchConfig
from tinysr.search.discriminator.proxy import reward_of_history
from tinysr.search.core.space import TPSR_D_SPACE, TPSR_SPACE, space_from_identity
from tinysr.search.core.registry import make_strategy
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ no data needed
def test_the_space_round_trips_through_decisions_and_params():
    space = TPSR_D_SPACE
    assert space.num_decisions == 10 and space.cardinalities == DECISION_SIZES
    assert space.size() == (16 * 7) ** 5
    assert list(space.param_choices()) == ["op_0", "rop_0", "op_1", "rop_1", "op_2", "rop_2", "op_3", "rop_3",
                                           "op_4", "rop_4"]
    for v in space.sample(np.random.default_rng(0), 50):
        g = space.decode(v)
        assert isinstance(g, DiscriminatorGenotype) and g.encode() == v == space.encode(str(g))
        assert space.from_params(space.to_params(v)).encode() == v
        assert space.to_params(g) == space.to_params(v)
    assert space.encode(DEFAULT_D_GENOTYPE) == DEFAULT_D_GENOTYPE.encode()
    with pytest.raises(ValueError, match="decision 1"):
        space.validate([0, 7] + [0] * 8)
    with pytest.raises(ValueError, match="rop_0"):
        space.params_to_decisions({"op_0": "conv3"})
    assert space_from_identity(space.identity()) == space and space_from_identity(TPSR_SPACE.identity()) == TPSR_SPACE


def test_strategies_run_on_the_discriminator_space_and_check_the_space_on_load():
    for name in ("random", "reinforce"):
        s = make_strategy(name, TPSR_D_SPACE, seed=0)
        asked = s.ask(4)
        s.tell([(TPSR_D_SPACE.decode(asked[0]), -0.3), (asked[1], -0.2), (asked[2], None), (asked[3], -0.25)])
        assert s.best_genotype == TPSR_D_SPACE.decode(asked[1])
        state = s.state_dict()
        assert state["space"] == TPSR_D_SPACE.identity()
        again = make_strategy(name, TPSR_D_SPACE, seed=5)
        again.load_state_dict(state)
        assert again.ask(3) == s.ask(3)
        with pytest.raises(ValueError, match="discriminator space, not a 10-node generator space"):
            make_strategy(name, TPSR_SPACE, seed=0).load_state_dict(state)
    # a generator strategy's state keeps its stored form
    assert make_strategy("random", TPSR_SPACE).state_dict()["space"].keys() == {"num_nodes", "ops"}


def test_the_reward_is_minus_the_best_of_the_last_three_lpips():
    assert reward_of_history([0.5]) == (-0.5, 0)
    assert reward_of_history([0.5, 0.4]) == (-0.4, 1)
    assert reward_of_history([0.1, 0.3, 0.25, 0.35]) == (-0.25, 2)  # 0.1 is older than the last three
    assert reward_of_history([0.3, 0.2, 0.2, 0.4]) == (-0.2, 1)  # ties: the earliest
    with pytest.raises(ValueError, match="no LPIPS"):
        reward_of_history([])


def _data(train, run_dir, **over) -> dict:
    cfg = {"run_dir": str(run_dir), "seed": 1, "evaluations": 4, "round_size": 2, "workers": 0, "threads": 1,
           "eval_every": 2,
           "proxy": {"train_data": [str(t) for t in train], "val_images": 1, "val_size": 12, "patch_size": 8,
                     "batch_size": 2, "steps": 4, "lr": 1e-4, "lr_min": 1e-5, "seed": 0}}
    cfg.update(over)
    return cfg


@pytest.mark.parametrize("over, message", [
    ({"latency": []}, "latency belong to a generator search"),
    ({"max_mult_adds": 3e9}, "max_mult_adds belong to a generator search"),
    ({"strategy": "nsga2"}, "strategy must be reinforce or random"),
    ({"gan": {"discriminator": "vgg_d128"}}, "discriminator cannot be set"),
    ({"eval_every": 0}, "eval_every must be at least 1"),
])
def test_config_errors_are_one_line(tmp_path, over, message):
    with pytest.raises(ValueError, match=message) as e:
        DiscriminatorSearchConfig.from_dict(_data([tmp_path], tmp_path / "run", **over))
    assert "\n" not in str(e.value)
    bad = _data([tmp_path], tmp_path / "run")
    bad["proxy"]["patch_size"] = 12
    with pytest.raises(ValueError, match="48 px.*multiple of 32"):
        DiscriminatorSearchConfig.from_dict(bad)


# ------------------------------------------------------------------ runs (need the LPIPS / VGG16 weights)
@pytest.fixture(scope="module")
def train_dirs(tmp_path_factory):
    """Two small folders of natural-looking images (as conftest's photo_dir), shared by the runs below."""
    from PIL import Image

    from tinysr.bundled import sample_image

    src = Image.open(sample_image()).convert("RGB")
    root = tmp_path_factory.mktemp("dsearch")
    dirs = []
    for k in range(2):
        d = root / f"photos{k}"
        d.mkdir()
        for i, (angle, size) in enumerate([(0, 96), (90, 80), (180, 72)]):
            src.rotate(angle + 45 * k).resize((size, size + 8 * i), Image.BICUBIC).save(d / f"img{i}.png")
        dirs.append(d)
    return dirs


@pytest.fixture(scope="module")
def reference(train_dirs, tmp_path_factory):
    """An uninterrupted in-process run of 4 evaluations (the other runs are compared with it)."""
    from tinysr.search.discriminator.proxy import _perceptual, lpips_model
    from tinysr.search.discriminator.search import run_discriminator_search
    from tinysr.train.config import GanConfig

    try:  # conftest points TINYSR_WEIGHTS at the shared weights when they are there
        lpips_model("vgg")
        _perceptual(GanConfig.from_dict({}))
    except FileNotFoundError as e:
        pytest.skip(f"LPIPS / VGG16 weights not available ({e})")

    run = tmp_path_factory.mktemp("dref") / "run"
    summary = run_discriminator_search(DiscriminatorSearchConfig.from_dict(_data(train_dirs, run)), progress=False)
    return run, summary


def finished(run_dir) -> list[tuple]:
    """Every finished trial as comparable data, by candidate (no trial numbers, no timings)."""
    _, study = run_store.open_run(run_dir)
    return sorted((r.candidate, r.state, tuple(sorted(r.params.items())), r.values, r.genotype, r.psnr, r.reward,
                   r.user_attrs.get("lpips"), str(r.user_attrs.get("lpips_history")))
                  for r in run_store.trial_records(study) if r.state in ("complete", "rejected"))


_main = run_cli  # tinysr ARGS in this process


def test_a_run_records_complete_trials_with_lpips_and_discriminator_weights(reference):
    from tinysr.checkpoint import load_model
    from tinysr.models.discriminators import SearchedDiscriminator

    run, summary = reference
    assert summary["evaluated"] == 4 and summary["rejected"] == 0 and summary["failed"] == 0
    _, study = run_store.open_run(run)
    assert study.user_attrs["tinysr"]["kind"] == "discriminator"
    recs = run_store.trial_records(study)
    assert [r.state for r in recs] == ["complete"] * 4 and [r.candidate for r in recs] == [0, 1, 2, 3]
    for r in recs:
        hist = r.user_attrs["lpips_history"]
        assert [h["step"] for h in hist] == [2, 4]  # every eval_every steps and at the end
        assert r.reward == reward_of_history([h["lpips"] for h in hist])[0] == -r.user_attrs["lpips"]
        assert r.values == [r.reward] and 0 < r.user_attrs["lpips"] < 1 and r.psnr > 10
        d = load_model(str(run / r.weights), kind="discriminator")
        assert isinstance(d, SearchedDiscriminator) and str(d.genotype) == r.genotype and d.input_size == 32
    best = min(recs, key=lambda r: (-r.reward, r.candidate))
    assert summary["best"]["candidate"] == best.candidate and summary["best"]["lpips"] == -best.reward


def test_cli_show_and_export_the_best_discriminator(reference, tmp_path, capsys):
    """The commands in this process (tinysr as a process of its own: the kill -9 test below)."""
    from tinysr.checkpoint import load_model
    from tinysr.train.config import GanConfig
    from tinysr.train.gan import build_discriminator

    run, summary = reference
    code, out, err = _main(capsys, "search", "show", run, "--top", "2", "--plots", tmp_path)
    assert code == 0, err
    assert "LPIPS" in out and summary["best"]["genotype"] in out and "(2 more evaluated" in out
    assert (tmp_path / "reward.png").is_file() and not (tmp_path / "pareto.png").exists()
    ckpt = tmp_path / "d.pt"
    code, out, err = _main(capsys, "search", "export", run, "--best", "-o", ckpt)
    assert code == 0, err
    assert "fine-tuned discriminator" in out
    d = load_model(str(ckpt), kind="discriminator")
    assert str(d.genotype) == summary["best"]["genotype"]
    assert build_discriminator(GanConfig.from_dict({"discriminator": str(ckpt)}), 32).input_size == 32
    code, out, err = _main(capsys, "search", "export", run, "--best", "--weights", "store", "-o", tmp_path / "s.pt")
    assert code == 2 and err.count("\n") == 1 and "no weight store" in err


def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(reference, train_dirs, tmp_path, capsys):
    ref, _ = reference
    cfg_path = tmp_path / "kill.yaml"
    cfg_path.write_text(yaml.safe_dump(_data(train_dirs, tmp_path / "run")))
    cmd = [sys.executable, "-m", "tinysr.cli.main", "search", "discriminator", "--config", str(cfg_path), "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = tmp_path / "run" / "trials" / "c000000.pt"
    deadline = time.monotonic() + 300
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()
    os.kill(proc.pid, signal.SIGKILL)  # candidate 0 finished, candidate 1 (same round) running or finished
    proc.communicate()
    code, out, err = _main(capsys, "search", "discriminator", "--config", cfg_path, "-q", "--resume")  # here
    assert code == 0, err
    got = finished(tmp_path / "run")
    assert len({c[0] for c in got}) == len(got) == 4
    assert got == finished(ref)
    _, study = run_store.open_run(tmp_path / "run")
    assert "running" not in [r.state for r in run_store.trial_records(study)]
    code, out, err = _main(capsys, "search", "discriminator", "--config", cfg_path, "-q")
    assert code == 2 and err.count("\n") == 1 and "--resume" in err


def test_the_process_pool_gives_the_same_trials(reference, train_dirs, tmp_path):
    from tinysr.search.discriminator.search import run_discriminator_search

    ref, _ = reference
    cfg = DiscriminatorSearchConfig.from_dict(_data(train_dirs, tmp_path / "pool", workers=2))
    run_discriminator_search(cfg, progress=False)
    assert finished(tmp_path / "pool") == finished(ref)
