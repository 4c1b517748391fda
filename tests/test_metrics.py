"""Metrics (SPEC §7): 8-bit PSNR/SSIM as scikit-image, save_image rounding, LPIPS from cached AlexNet, SSIM loss."""
import math
import os

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import torch.nn.functional as F

from metrics import (MetricAccumulator, build_lpips, lpips_available, lpips_distance, psnr, psnr_float, quantise,
                     ssim, ssim_loss)
from utils.image_io import to_uint8
from utils.errors import UserError


def test_to_uint8_rounding_matches_save_image_formula():
    x = torch.tensor([0.0, 1 / 510 - 1e-4, 1 / 510 + 1e-4, 0.5, 0.998, 1.0, 1.2, -0.1]).view(1, 1, 8).expand(3, 1, 8)
    out = to_uint8(x)
    assert out.shape == (1, 8, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 0, 1, 128, 254, 255, 255, 0]
    torch.manual_seed(0)
    img = torch.rand(3, 5, 7)
    ref = img.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    assert np.array_equal(to_uint8(img), ref)
    assert np.array_equal(to_uint8(img.unsqueeze(0)), ref)


def test_psnr_ssim_equal_skimage():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == peak_signal_noise_ratio(a, b, data_range=255)
    assert ssim(a, b) == structural_similarity(a, b, channel_axis=-1, data_range=255)
    assert ssim(a, a) == pytest.approx(1.0)
    # float tensors are quantised first
    t = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    assert psnr(t, b) == psnr(a, b)


def test_psnr_hand_computed():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 30                                    # MSE = 900 / 300 = 3
    assert psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 3), abs=1e-10)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        psnr(a.astype(np.float32), b)


def test_lpips_with_fake_alexnet(fake_torch_home):
    assert lpips_available()
    model = build_lpips("cpu", pretrained=True)
    state = torch.load(fake_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth", weights_only=True)
    trunk = model.net
    pairs = {"slice1.0": 0, "slice2.3": 3, "slice3.6": 6, "slice4.8": 8, "slice5.10": 10}
    for name, idx in pairs.items():
        for t in ("weight", "bias"):
            assert torch.equal(trunk.get_submodule(name).get_parameter(t), state[f"features.{idx}.{t}"])
    # calibrated linear layers from the lpips package's file
    import lpips
    shipped = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth"),
                         map_location="cpu", weights_only=True)
    assert torch.equal(model.lin0.model[1].weight, shipped["lin0.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters())
    torch.nn.Sequential(model).train()
    assert not model.training and all(not m.training for m in model.modules())

    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        d_same = lpips_distance(model, a, a)
        d_ab, d_ba = lpips_distance(model, a, b), lpips_distance(model, b, a)
        d_single = lpips_distance(model, a[0], b[0])
    assert d_same.shape == (2,) and torch.all(d_same.abs() < 1e-7)
    assert torch.allclose(d_ab, d_ba, atol=1e-6) and torch.all(d_ab > 0)
    assert torch.allclose(d_single, d_ab[:1], atol=1e-6)
    # usable as a loss: gradients reach the input
    x = a[:1].clone().requires_grad_(True)
    lpips_distance(model, x, b[:1]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lpips_missing_alexnet():
    assert not lpips_available()
    with pytest.raises(UserError, match="alexnet-owt-7be5be79.pth"):
        build_lpips("cpu")
    model = build_lpips("cpu", pretrained=False)           # random trunk needs no file
    assert not model.training


def test_ssim_loss():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    y = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = ssim_loss(x, y)
    assert loss.dim() == 0 and loss.item() > 0.5
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_metric_accumulator():
    acc = MetricAccumulator(["psnr", "ssim"])
    acc.add("1.png", psnr=20.0, ssim=0.5)
    acc.add("2.png", psnr=30.0, ssim=0.7, lpips=0.1)
    assert len(acc) == 2
    m = acc.mean()
    assert m["psnr"] == 25.0 and m["ssim"] == pytest.approx(0.6) and m["lpips"] == pytest.approx(0.1)
    assert math.isnan(acc.rows()[0]["lpips"])
    text = acc.format()
    assert text.splitlines()[-1].startswith("mean  psnr=25.0000 ssim=0.6000")


def _gaussian_ssim(x, y, pool):
    """SSIM from its definition: average-pool by ``pool``, 11x11 Gaussian σ 1.5, no padding, c1 = 0.01²,
    c2 = 0.03², mean over pixels and channels, then over the batch (the reference's piq formula)."""
    if pool > 1:
        x, y = F.avg_pool2d(x, pool), F.avg_pool2d(y, pool)
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-r ** 2 / (2 * 1.5 ** 2))
    k = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, 11, 11)
    x, y = x.double(), y.double()

    def blur(t):
        return F.conv2d(t, k, groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).mean()


@pytest.mark.parametrize("shape,pool", [((4, 3, 128, 128), 1), ((1, 3, 400, 600), 2)])
def test_ssim_loss_is_the_references_piq_ssim(shape, pool):
    """128 crops: no pooling; a 600x400 image: average-pooled by round(400/256) = 2 first (issue 6.2)."""
    torch.manual_seed(0)
    y = F.interpolate(torch.rand(shape[0], 3, shape[2] // 16, shape[3] // 16), size=shape[2:], mode="bilinear")
    x = (y + 0.1 * torch.randn(shape)).clamp(0, 1)  # smooth image + noise: pooling matters
    close = pytest.approx(1 - _gaussian_ssim(x, y, pool).item(), abs=1e-5)
    assert ssim_loss(x, y).item() == close
    if pool > 1:  # without the pooling the value is clearly different
        assert abs((1 - _gaussian_ssim(x, y, 1).item()) - ssim_loss(x, y).item()) > 1e-2


def test_quantise_truncates_or_rounds():
    y = torch.tensor([0.0, 0.5, 0.999, 1.2, -0.1, 3.5 / 255]).view(1, 1, 6).expand(3, 1, 6)
    assert quantise(y, "trunc")[0, :, 0].tolist() == [0, 127, 254, 255, 0, 3]
    assert quantise(y, "round")[0, :, 0].tolist() == [0, 128, 255, 255, 0, 4]
    torch.manual_seed(1)
    y = torch.rand(1, 3, 5, 7) * 1.2 - 0.1
    ref = (torch.clamp(y, 0, 1).numpy().squeeze().transpose((1, 2, 0)) * 255.0).astype(np.uint8)  # the reference
    assert np.array_equal(quantise(y, "trunc"), ref)


def test_quantise_round_half_even_as_numpy():
    """Issue 22.11: the reference's np.round(y·255) rounds ties to even; "round" (save_image) rounds them up."""
    ties = (torch.arange(255, dtype=torch.float32) + 0.5) / 255  # y·255 is exactly k + 0.5 in float32
    y = ties.view(1, 1, 255).expand(3, 1, 255)
    even = quantise(y, "round_half_even")[0, :, 0].tolist()
    assert even[:6] == [0, 2, 2, 4, 4, 6] and even[-2:] == [254, 254]  # 0.5→0, 1.5→2, 2.5→2, ..., 254.5→254
    assert quantise(y, "round")[0, :, 0].tolist()[:6] == [1, 2, 3, 4, 5, 6]
    torch.manual_seed(2)
    y = torch.rand(1, 3, 5, 7) * 1.2 - 0.1
    mem = torch.clamp(y, 0, 1).numpy().squeeze().transpose((1, 2, 0))
    assert np.array_equal(quantise(y, "round_half_even"), np.round(mem * 255.0).astype(np.uint8))  # the reference
    # 8-bit ground truth read as k/255 comes back exactly, whatever the mode (the reference truncates it)
    gt = (torch.arange(256, dtype=torch.float32) / 255).view(1, 1, 256).expand(3, 1, 256)
    for mode in ("round", "round_half_even", "trunc"):
        assert quantise(gt, mode)[0, :, 0].tolist() == list(range(256)), mode
    with pytest.raises(ValueError, match="round_half_even"):
        quantise(y, "nearest")


def test_psnr_float_hand_computed():
    a = torch.zeros(3, 4, 5)
    assert psnr_float(a, a + 0.1) == pytest.approx(20.0)
    assert psnr_float(a, a) == math.inf


def test_lpips_normalize_flag():
    model = build_lpips("cpu", pretrained=False)
    torch.manual_seed(2)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        raw = lpips_distance(model, a, b, normalize=False)
        assert torch.allclose(raw, model(a, b).reshape(2))                       # [0, 1] as they are
        assert torch.allclose(lpips_distance(model, a, b), model(2 * a - 1, 2 * b - 1).reshape(2), atol=1e-6)
        assert (raw - lpips_distance(model, a, b)).abs().max() > 1e-4


def test_ssim_loss_of_a_nonfinite_image_is_nan_not_an_assertion():
    """A diverging run's NaN output must reach the training NaN guard as a NaN term."""
    from metrics import ssim_loss

    x = torch.rand(1, 3, 16, 16)
    y = x.clone()
    y[0, 0, 0, 0] = float("nan")
    assert torch.isnan(ssim_loss(y, x)) and torch.isnan(ssim_loss(x, y))
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
