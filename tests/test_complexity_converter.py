"""The Mult-Adds counter agrees with LiteRT's converter ("Estimated count of arithmetic ops")."""
import os
import re
import subprocess
import sys

import pytest

SCRIPT = """
import torch, litert_torch
from tinysr.models import create_model
m = create_model('tpsr_x4').eval()
litert_torch.convert(m, (torch.rand(1, 3, 180, 320),)).export(sys.argv[1])
"""


def test_counter_agrees_with_litert_converter_within_1_percent(tmp_path):
    pytest.importorskip("litert_torch")
    from tinysr.complexity import measure
    from tinysr.models import create_model

    # the converter prints its estimate from native code to stderr: run it in a child process
    out = subprocess.run([sys.executable, "-c", "import sys\n" + SCRIPT, str(tmp_path / "m.tflite")],
                         capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    m = re.search(r"equivalently ([\d.]+) G\s+MACs", out.stderr + out.stdout)
    assert m, "converter did not print its arithmetic estimate"
    converter = float(m.group(1)) * 1e9
    ours = measure(create_model("tpsr_x4"), (180, 320)).mult_adds
    assert abs(ours - converter) / converter < 0.01, (ours, converter)
