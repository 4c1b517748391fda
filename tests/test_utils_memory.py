"""utils/memory.py: the peak memory of a run."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT
from utils.memory import memory_text


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_peak_rss_is_the_programs_own_not_its_parents(tmp_path):
    """A child started by a process holding 1.5 GB reports its own peak (torch imported: well under 1.5 GB);
    getrusage's ru_maxrss would give the parent's peak."""
    ballast = np.ones(1_500_000_000 // 8)  # touched: resident in this process
    code = "import torch; from utils.memory import peak_rss; print(peak_rss())"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-500:]
    assert 50e6 < int(r.stdout) < 1.2e9, int(r.stdout)
    del ballast


def test_memory_text():
    assert memory_text(1_234_000_000) == "1.23 GB RSS"
    assert memory_text(1_234_000_000, 800_000_000) == "1.23 GB RSS, 0.80 GB CUDA"
