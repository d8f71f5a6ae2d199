"""Published TPSR checkpoints load through import-weights and reproduce the paper's Table 1."""
import json

import pytest
import torch

from tinysr.cli.main import main
from tinysr.foreign import WeightImportError, import_state_dict
from tinysr.genotype import TPSR_GENOTYPE


def _sd(official, name):
    return torch.load(official / f"TPSR_{name}X4.pt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", ["D2", "ESRGAN", "NOGAN"])
def test_official_checkpoints_load_strictly_as_the_tpsr_genotype(official, name):
    imp = import_state_dict(_sd(official, name))
    assert imp.architecture == "tpsr_x4"
    assert imp.model.genotype == TPSR_GENOTYPE


def test_mismatch_is_a_clear_error(official):
    sd = _sd(official, "NOGAN")
    del sd["middle_side_layers.Node_8_Operation_0_type_Conv2d_3x3.model.1.weight"]
    sd["up_mod.0.extend.bias"] = torch.zeros(5)
    with pytest.raises(WeightImportError, match=r"missing 1 key\(s\): cell\.nodes\.8\.act\.weight.*shape mismatch: up\.0\.conv\.bias"):
        import_state_dict(sd)
    with pytest.raises(WeightImportError, match="unrecognised checkpoint format"):
        import_state_dict({"foo.weight": torch.zeros(1)})


@pytest.mark.parametrize("name, set5, set14", [("D2", 29.60, 26.88), ("NOGAN", 31.10, 27.95)])
def test_tinysr_eval_reproduces_published_scores(official, bench, tmp_path, capsys, name, set5, set14):
    ckpt = tmp_path / f"{name}.pt"
    assert main(["import-weights", str(official / f"TPSR_{name}X4.pt"), "-o", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(ckpt), "--data", str(bench / "Set5"), str(bench / "Set14"),
                 "--lpips", "off", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)["datasets"]
    assert res["Set5"]["mean"]["psnr"] == pytest.approx(set5, abs=0.02)
    assert res["Set14"]["mean"]["psnr"] == pytest.approx(set14, abs=0.02)
    assert len(res["Set5"]["images"]) == 5 and len(res["Set14"]["images"]) == 14


def test_import_weights_cli_rejects_unknown_files(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["import-weights", str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    assert "bad.pt" in capsys.readouterr().err
