"""The ``tinysr`` command line: every help page renders, user errors are one line, bench --upscale."""
import argparse
import json

import numpy as np
import pytest
from PIL import Image

from conftest import rng_image
from tinysr.cli.main import build_parser, main


def _subcommands(parser: argparse.ArgumentParser, path=()):
    """Every command path of ``parser``, found by walking its subparsers: (), ("lut",), ("lut", "build"), ..."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, path + (name,))


def _parser_of(path):
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


COMMANDS = list(_subcommands(build_parser()))


def test_the_walk_finds_nested_subcommands():
    assert {("upscale",), ("bench",), ("lut",), ("lut", "build"), ("lut", "predict")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "tinysr")
def test_every_help_renders(path, capsys):
    text = _parser_of(path).format_help()
    assert text.startswith("usage: " + " ".join(("tinysr",) + path))
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == text


def _one_line_error(argv, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("tinysr: error: ")
    return err


@pytest.mark.parametrize("argv, words", [
    (["train", "--set", "steps=abc"], ["steps", "'abc'", "integer"]),
    (["train", "--set", "lr=fast"], ["lr", "'fast'", "number"]),
    (["upscale", "x.png", "--tile", "-1"], ["--tile -1", "at least 1"]),
    (["upscale", "x.png", "--tile-overlap", "-1"], ["--tile-overlap -1", "0 or more"]),
    (["upscale", "x.png", "--threads", "-2"], ["--threads -2", "0 (the runtime's default)"]),
    (["upscale", "x.png", "--model", "tpsr-x5"], ["'tpsr-x5'", "did you mean tpsr_x4"]),
    (["train", "--model", "tpsrx2"], ["did you mean tpsr_x2"]),
    (["models", "tpsr-x9"], ["did you mean tpsr_x4"]),
    (["bench", "--threads", "1,two"], ["--threads 1,two", "e.g. 1,2"]),
    (["bench", "--upscale", "1000"], ["'1000'", "WxH"]),
])
def test_user_errors_are_one_line(argv, words, capsys):
    err = _one_line_error(argv, capsys)
    assert all(w in err for w in words), err


def test_verbose_shows_the_trace():
    with pytest.raises(ValueError, match="steps must be an integer"):
        main(["-v", "train", "--set", "steps=abc"])


def test_model_names_with_dashes_are_accepted(tmp_path, capsys):
    from tinysr.train.config import TrainConfig

    Image.fromarray(rng_image(12, 16)).save(tmp_path / "p.png")
    assert main(["upscale", str(tmp_path / "p.png"), "-o", str(tmp_path / "p4.png"), "--model", "tpsr-x4", "-q"]) == 0
    assert Image.open(tmp_path / "p4.png").size == (64, 48)
    assert "model tpsr_x4 (x4" in capsys.readouterr().out
    assert main(["models", "TPSR-x2"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("tpsr_x2")
    assert TrainConfig().override(["model=tpsr-x2"]).model == "tpsr_x2"


def test_config_values_are_typed():
    from tinysr.train.config import TrainConfig

    cfg = TrainConfig().override(["steps=1e3", "lr=5e-4", "betas=[0.8, 0.9]", "out_dir=2024", "val_data=null"])
    assert (cfg.steps, cfg.lr, cfg.betas, cfg.out_dir, cfg.val_data) == (1000, 5e-4, (0.8, 0.9), "2024", None)
    with pytest.raises(ValueError, match=r"betas must be two numbers.*got \[0.9\]"):
        TrainConfig().override(["betas=[0.9]"])
    with pytest.raises(ValueError, match="c.yaml: steps must be an integer, got 2.5"):
        TrainConfig.from_dict({"steps": 2.5}, source="c.yaml")


def test_bench_upscale_reports_compute_png_jpeg_and_sizes(tmp_path, capsys):
    out = tmp_path / "b.json"
    import torch

    assert main(["bench", "--upscale", "72x40", "--rounds", "1", "-q", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["input_size"] == [72, 40] and result["output_size"] == [288, 160]
    assert result["runtime"] == "torch" and result["threads"] == torch.get_num_threads()
    assert [r["what"] for r in result["rows"]] == ["model compute (tiled, uint8, no I/O)",
                                                   "upscale -> PNG, before (Pillow, zlib 6)",
                                                   "upscale -> PNG", "upscale -> JPEG"]
    assert all(len(r["runs_s"]) == 1 and r["median_s"] > 0 for r in result["rows"])
    assert result["png_pixels_identical"] and result["png_bytes"] > 0 and result["jpeg_bytes"] > 0
    assert "x compute" in text and result["cpu"] in text and "pixels identical" in text


def test_bench_photo_covers_and_crops():
    from tinysr.bench import photo

    im = photo((100, 30))
    assert im.size == (100, 30) and im.mode == "RGB"
    assert np.asarray(im).std() > 10  # a photo, not a flat fill



def test_warnings_are_one_line_while_a_command_runs_and_the_format_is_restored_after(monkeypatch):
    import warnings

    from tinysr.cli import commands

    seen = []
    monkeypatch.setattr(commands, "cmd_models", lambda args: seen.append(
        warnings.formatwarning("a note for the user", UserWarning, "somewhere.py", 7)))
    before = warnings.formatwarning
    assert main(["models"]) == 0
    assert seen == ["tinysr: warning: a note for the user\n"]
    assert warnings.formatwarning is before  # tests and programs that call main() keep their own format
