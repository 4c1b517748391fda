"""lowlight_test.py stopped by SIGTERM (a scheduler's time limit, `timeout`): the conventional status 143 and one
line, as train.py."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import ROOT, random_dce, write_rgb


@pytest.mark.slow
def test_sigterm_mid_folder_exits_143_with_one_line(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save(random_dce(std=0.05).state_dict(), weights)
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(60):
        write_rgb(src / f"{i:03d}.png", 192, 256, seed=i, scale=0.3)
    proc = subprocess.Popen([sys.executable, "lowlight_test.py", "--input_dir", str(src), "--output_dir", str(out),
                             "--weights", str(weights), "--device", "cpu"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (out.is_dir() and any(out.glob("*.png"))):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err[-800:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("stopped: SIGTERM")
    assert len(list(out.glob("*.png"))) < 60 and not list(out.glob(".tmp-*"))
