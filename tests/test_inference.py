"""inference.py: the memory plan (batch split, automatic tiles)."""
from __future__ import annotations

import torch

from network.registry import get_spec


def test_plan_keeps_the_estimate_under_the_budget():
    from inference import _plan
    from lowlight_model import enhance_net_nopool

    m = enhance_net_nopool()
    bpp = get_spec("dce").bytes_per_pixel[torch.float32]
    assert _plan(m, 4, 400, 600, torch.float32, 1e9, 0) == (3, 0)       # 3 x 288 MB fit in 1 GB: batch split
    per_pass, tile = _plan(m, 1, 3000, 4000, torch.float32, 1e9, 0)     # 14 GB whole: tiles
    assert per_pass == 1 and (tile + 16) ** 2 * bpp <= 1e9 < (tile + 18) ** 2 * bpp
    assert _plan(m, 1, 3000, 4000, torch.float32, 1e9, 512) == (2, 512)  # explicit tile: 2 x 335 MB per pass
