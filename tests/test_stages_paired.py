"""stages/paired.py: validation scores on 8-bit images rounded as the reference's memory validation."""
import math

import pytest
import torch

from stages.paired import score


class _Pairs:
    """A validation set of one pair whose ground truth is black."""

    def __init__(self, h=8, w=9):
        self.gt = torch.zeros(3, h, w)

    def load(self, i):
        return self.gt.clone(), self.gt


def test_score_rounds_half_to_even_as_np_round():
    """0.5/255 is 0 with np.round (the reference) but 1 with save_image's rounding (PSNR 48.13 dB)."""
    data = _Pairs()
    tie = torch.full((1, 3, 8, 9), 0.5 / 255)
    psnr, ssim = score([tie], data)
    assert psnr == math.inf and ssim == pytest.approx(1.0)
    above = torch.full((1, 3, 8, 9), 1.5 / 255)  # rounds to 2: PSNR = 20·log10(255 / 2)
    assert score([above], data)[0] == pytest.approx(20 * math.log10(255 / 2), abs=1e-9)
    assert score([tie], data, float_psnr=True)[0] == pytest.approx(20 * math.log10(255 / 0.5), abs=1e-4)
