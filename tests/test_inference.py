"""inference.py: the memory plan (batch split, automatic tiles) and the peak-RSS measure."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import ROOT


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_peak_rss_is_the_programs_own_not_its_parents(tmp_path):
    """A child started by a process holding 1.5 GB reports its own peak (torch imported: well under 1.5 GB);
    getrusage's ru_maxrss would give the parent's peak."""
    ballast = np.ones(1_500_000_000 // 8)  # touched: resident in this process
    code = "import torch, inference; print(inference.peak_rss())"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-500:]
    assert 50e6 < int(r.stdout) < 1.2e9, int(r.stdout)
    del ballast


def test_plan_keeps_the_estimate_under_the_budget():
    from inference import _plan
    from lowlight_model import enhance_net_nopool

    m = enhance_net_nopool()
    bpp = m.bytes_per_pixel[torch.float32]
    assert _plan(m, 4, 400, 600, torch.float32, 1e9, 0) == (3, 0)       # 3 x 288 MB fit in 1 GB: batch split
    per_pass, tile = _plan(m, 1, 3000, 4000, torch.float32, 1e9, 0)     # 14 GB whole: tiles
    assert per_pass == 1 and (tile + 16) ** 2 * bpp <= 1e9 < (tile + 18) ** 2 * bpp
    assert _plan(m, 1, 3000, 4000, torch.float32, 1e9, 512) == (2, 512)  # explicit tile: 2 x 335 MB per pass
