"""Shared fixtures. ``../shared`` (benchmark data and third-party weights) is optional:
tests that need it skip with the reason when it is absent."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

# Idle OpenMP threads sleep instead of spinning (set before torch loads its OpenMP runtime; the CLI
# subprocesses of the tests inherit it). On a busy 2-core machine a spinning thread waits for one
# that is not scheduled: on such a machine a TPSR forward on a 32x32 tile took 266 ms with torch's
# 2 threads against 10 ms with PASSIVE (13 ms with 1 thread), and a 256x256 one still gains from both
# threads (383 ms; 424 ms with 1 thread).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TINYSR_SHARED", ROOT.parent / "shared"))
BENCH = SHARED / "data" / "bench"
WEIGHTS = SHARED / "weights"
OFFICIAL = WEIGHTS / "tpsr_official"

if WEIGHTS.is_dir():
    os.environ.setdefault("TINYSR_WEIGHTS", str(WEIGHTS))


def need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not available: {path} is absent (the shared data kit is not next to this checkout)")
    return path


@pytest.fixture
def bench():
    return need(BENCH, "benchmark images (Set5/Set14)")


@pytest.fixture
def official():
    return need(OFFICIAL, "published TPSR checkpoints")


@pytest.fixture
def weights_dir():
    return need(WEIGHTS, "third-party weights (VGG16, LPIPS, NIQE)")


@pytest.fixture
def photo_dir(tmp_path):
    """A small folder of natural-looking images (from the bundled sample) for training/IO tests."""
    from PIL import Image

    from tinysr.bundled import sample_image

    src = Image.open(sample_image()).convert("RGB")
    d = tmp_path / "photos"
    d.mkdir()
    for i, (angle, size) in enumerate([(0, 160), (90, 144), (180, 128), (270, 150)]):
        src.rotate(angle).resize((size, size + 8 * i), Image.BICUBIC).save(d / f"img{i}.png")
    return d


@pytest.fixture(scope="session")
def tpsr_int8io(tmp_path_factory) -> Path:
    """tpsr_x4 exported to an int8 .tflite with int8 I/O at 32x32 (default calibration, 8 crops) and its
    card: one export for the tests of model cards and of the runners (read-only: copy to change it)."""
    from tinysr.export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("int8io") / "int8io.tflite"
    # the quality check's tiles at this small size leave no room for the default overlap: said so
    with pytest.warns(UserWarning, match=r"fixed input 32x32 leaves no room for an overlap of 16"):
        export_model("tpsr_x4", out, ExportOptions(target="tflite", precision="int8", int8_io=True,
                                                   input_size=(32, 32), calib_count=8), progress=False)
    return out


def rng_image(h, w, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, channels)).astype(np.float64)
    from tinysr.data.bicubic import imresize

    return np.clip(imresize(base, output_shape=(h, w)), 0, 255).astype(np.uint8)


def elf_header(path: Path, machine: int) -> Path:
    """A file whose ELF header says ``machine`` (183 = aarch64): all the adb path checks of a binary."""
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + (3).to_bytes(2, "little") + machine.to_bytes(2, "little")
                     + bytes(64))
    return path


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """``$ADB`` pointing at the adb test double (tests/doubles/fake_adb.py), whose "device" lives in tmp_path."""
    wrapper = tmp_path / "bin" / "adb"
    wrapper.parent.mkdir()
    double = Path(__file__).resolve().parent / "doubles" / "fake_adb.py"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{double}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("ADB", str(wrapper))
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "adbroot"))
    monkeypatch.setenv("TINYSR_ADB_CACHE", str(tmp_path / "cache"))
    for var in ("FAKE_ADB_SCENARIO", "FAKE_ADB_SERIALS", "FAKE_ADB_ABI", "FAKE_ADB_DISCONNECT_AT", "FAKE_ADB_PROFILER_OVERHEAD"):
        monkeypatch.delenv(var, raising=False)
    model = tmp_path / "tpsr.tflite"
    model.write_bytes(b"TFL3" + bytes(100))
    calls = tmp_path / "adbroot" / "calls.log"
    return SimpleNamespace(tmp=tmp_path, model=model, out=tmp_path / "profiles",
                           binary=elf_header(tmp_path / "benchmark_model", 183),
                           calls=lambda: [json.loads(line) for line in calls.read_text().splitlines()])


def train_and_kill(cfg_path: Path, out: Path, at_step: int, timeout: float = 180.0) -> int | None:
    """Start ``tinysr train CFG -q`` in a subprocess and SIGKILL it once ``OUT/last.pt`` records at
    least ``at_step`` steps; returns the step it was killed at (None: it finished or timed out first)."""
    from tinysr.checkpoint import read_checkpoint

    proc = subprocess.Popen([sys.executable, "-m", "tinysr.cli.main", "train", str(cfg_path), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, killed_at = time.time() + timeout, None
    while time.time() < deadline and proc.poll() is None:
        if (out / "last.pt").is_file():
            try:
                step = read_checkpoint(out / "last.pt")["meta"]["step"]
            except Exception:  # caught mid-write: not yet readable
                step = 0
            if step >= at_step:
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.02)
    proc.wait()
    return killed_at


def killed_and_resumed(cfg_path: Path, out: Path, reference: Path, at_step: int, steps: int,
                       timeout: float = 180.0) -> tuple[dict, dict]:
    """SIGKILL ``tinysr train CFG`` once it has checkpointed ``at_step`` steps (:func:`train_and_kill`), resume it
    in this process, and check that it ends at ``steps`` with exactly the weights of the uninterrupted run in
    ``reference``; returns both ``last.pt`` checkpoints (resumed, reference) for the caller's own checks."""
    from tinysr.checkpoint import read_checkpoint
    from tinysr.cli.main import main

    killed_at = train_and_kill(cfg_path, out, at_step, timeout=timeout)
    assert killed_at is not None and killed_at < steps, "the run finished before it could be killed"
    assert main(["train", str(cfg_path), "-q"]) == 0
    a, b = read_checkpoint(out / "last.pt"), read_checkpoint(Path(reference) / "last.pt")
    assert a["meta"]["step"] == b["meta"]["step"] == steps
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    return a, b


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``tinysr ARGS`` in this process, where a process of its own is not what is tested: (exit code,
    stdout, stderr)."""
    from tinysr.cli.main import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


class PReLUNet(nn.Module):
    """conv -> PReLU -> ... with the slopes given per PReLU (one value: a scalar PReLU), x2 sub-pixel output."""

    def __init__(self, slopes):
        super().__init__()
        torch.manual_seed(0)
        c = 8
        self.convs = nn.ModuleList([nn.Conv2d(3, c, 3, padding=1)] + [nn.Conv2d(c, c, 3, padding=1) for _ in slopes[1:]])
        self.acts = nn.ModuleList(nn.PReLU(len(s)) for s in slopes)
        with torch.no_grad():
            for a, s in zip(self.acts, slopes):
                a.weight.copy_(torch.tensor(s))
        self.tail = nn.Conv2d(c, 12, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        for conv, act in zip(self.convs, self.acts):
            x = act(conv(x))
        return self.up(self.tail(x))
