"""utils/denoise.py and the --denoise option: exact identity when off, less noise on a flat noisy patch when on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics import noise_sigma
from utils.denoise import CHROMA, LUMA, denoise_8bit, denoise_tensor


def _noisy_patch(sigma: float, seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([140.0, 110.0, 90.0])  # a flat, coloured surface
    return np.clip(base + rng.normal(0, sigma, (size, size, 3)), 0, 255).astype(np.uint8)


def test_off_is_the_image_itself():
    x = _noisy_patch(8)
    assert denoise_8bit(x, 0.0) is x
    y = torch.rand(2, 3, 16, 16)
    assert denoise_tensor(y, 0.0) is y


def test_lowers_noise_on_a_flat_noisy_patch_and_more_with_strength():
    x = _noisy_patch(8)
    s0, s1, s2 = noise_sigma(x), noise_sigma(denoise_8bit(x, 1.0)), noise_sigma(denoise_8bit(x, 2.0))
    assert s1 < 0.6 * s0 and s2 < s1
    # chroma: each pixel's distance from the patch's mean colour proportions shrinks much more than luminance
    def chroma_spread(a):
        p = a.astype(np.float64) / a.sum(axis=2, keepdims=True).clip(1)
        return float(np.abs(p - p.mean((0, 1))).mean())
    assert chroma_spread(denoise_8bit(x, 1.0)) < 0.3 * chroma_spread(x)


def test_strengths_come_from_the_image_noise(monkeypatch):
    """Y with LUMA·S·σ, Cr/Cb together with CHROMA·S·σ (σ measured on the image unless given)."""
    import cv2

    seen = {}

    def fake(img, dst, h, t, s):
        seen[img.shape[2] if img.ndim == 3 else 1] = h
        return img

    monkeypatch.setattr(cv2, "fastNlMeansDenoising", fake)
    x = _noisy_patch(8)
    assert np.array_equal(denoise_8bit(x, 1.5, sigma=4.0), cv2.cvtColor(cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb),
                                                                        cv2.COLOR_YCrCb2RGB))
    assert seen == {1: pytest.approx(LUMA * 1.5 * 4.0), 2: pytest.approx(CHROMA * 1.5 * 4.0)}
    denoise_8bit(x, 1.0)
    assert seen[1] == pytest.approx(LUMA * noise_sigma(x))


def test_chroma_smoothing_keeps_luma():
    """Only Cr/Cb smoothed (LUMA weight 0): the BT.601 luma of a dark saturated noisy patch stays within the
    YCrCb round trip's rounding."""
    import cv2

    import utils.denoise as D

    rng = np.random.default_rng(5)
    x = np.clip(np.array([60.0, 25.0, 20.0]) + rng.normal(0, 7, (48, 48, 3)), 0, 255).astype(np.uint8)
    old = D.LUMA
    try:
        D.LUMA = 0.0
        out = denoise_8bit(x, 1.0)
    finally:
        D.LUMA = old
    y_in = cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb)[..., 0].astype(int)
    y_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)[..., 0].astype(int)
    assert np.abs(y_in - y_out).max() <= 2 and np.abs(y_in - y_out).mean() < 0.6


def test_tensor_path_matches_8bit_path_and_keeps_device_dtype():
    from utils.image_io import to_uint8

    y = torch.from_numpy(_noisy_patch(6, 1).transpose(2, 0, 1).copy()).float()[None] / 255
    out = denoise_tensor(y, 1.0)
    assert out.shape == y.shape and out.dtype == y.dtype
    want = denoise_8bit(to_uint8(y[0]), 1.0)
    assert np.array_equal(np.rint(out[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8), want)


def test_enhance_denoise_zero_is_bit_identical():
    from helpers import random_dce
    from lowlight_model import enhance

    torch.manual_seed(0)
    model, x = random_dce(), torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(enhance(model, x), enhance(model, x, denoise=0.0))
        d = enhance(model, x, denoise=1.0)
    assert d.min() >= 0 and d.max() <= 1 and not torch.equal(d, enhance(model, x).clamp(0, 1))


def test_negative_strength_is_refused():
    with pytest.raises(ValueError, match="must be >= 0"):
        denoise_8bit(_noisy_patch(4), -1)
