"""utils/colour.py: the sRGB transfer curve, one definition for numpy arrays (data synthesis) and tensors (losses)."""
import numpy as np
import pytest
import torch

from utils.colour import linear_to_srgb, srgb_to_linear


def test_srgb_curve_reference_values_and_round_trip():
    # IEC 61966-2-1: 0.5 -> 0.214041; the two pieces meet at (0.04045, 0.0031308); 1 -> 1
    assert srgb_to_linear(np.float32(0.5)) == pytest.approx(0.214041, abs=1e-6)
    assert srgb_to_linear(np.float32(0.04045)) == pytest.approx(0.0031308, abs=1e-7)
    assert linear_to_srgb(np.float32(0.0031308)) == pytest.approx(0.04045, abs=1e-6)
    assert linear_to_srgb(np.float32(1.0)) == pytest.approx(1.0, abs=1e-6)
    levels = np.arange(256, dtype=np.float32) / 255
    assert np.abs(linear_to_srgb(srgb_to_linear(levels)) - levels).max() < 1e-5


def test_srgb_to_linear_keeps_the_type_and_agrees_across_numpy_and_torch():
    """numpy in → float32 numpy out, tensor in → tensor out (dtype kept); the two agree, values outside
    [0, 1] are clamped, and the tensor's gradient is finite everywhere (the power's base stays positive)."""
    c = np.linspace(-0.2, 1.2, 1401, dtype=np.float32)
    lin = srgb_to_linear(c)
    assert isinstance(lin, np.ndarray) and lin.dtype == np.float32
    assert lin[0] == 0.0 and lin[-1] == pytest.approx(1.0, abs=1e-6)
    hand = np.where(c <= 0.04045, c / 12.92, ((np.clip(c, 0.04045, 1.0) + 0.055) / 1.055) ** 2.4)
    inside = (c >= 0) & (c <= 1)
    np.testing.assert_allclose(lin[inside], hand[inside], rtol=1e-6, atol=1e-9)
    assert isinstance(srgb_to_linear([0.5]), np.ndarray)
    t = torch.from_numpy(c).double().requires_grad_(True)
    out = srgb_to_linear(t)
    assert torch.is_tensor(out) and out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), lin, rtol=1e-6, atol=1e-8)
    out.sum().backward()
    assert torch.isfinite(t.grad).all() and float(t.grad[0]) == 0.0 and float(t.grad[-1]) == 0.0
    assert float(t.grad[220]) == pytest.approx(1 / 12.92)  # c = 0.02: the linear toe
    assert float(t.grad[700]) == pytest.approx(2.4 / 1.055 * (0.555 / 1.055) ** 1.4)  # c = 0.5: the power
